"""Benchmark and check of the README's first promise: a fresh clone, `make reproduce`, and nothing to
report afterwards.

Clones the repository's committed HEAD into a new folder, then times `make setup` (the pinned .venv)
and `make reproduce` (the whole default pipeline from an empty data/), records the peak resident
memory of any one process and the disk used (.venv, the rest), and checks the contract:

- `git status --porcelain` lists nothing (the committed results came back byte for byte, nothing new);
- `dvc status` reports nothing (the committed dvc.lock matches the code, params and outputs);
- `snakemake -n results/table1.csv` has nothing to do.

With ``--test`` it also times `make test` in the clone. Writes results/benchmarks/reproduce.json and
a Markdown summary beside it (reproduce.md, which the README includes). The times are the
machine's: the processor, its cores and the date are recorded with them.

Usage: python bench/bench_reproduce.py [--test] [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aahr.io import write_json, write_text
from aahr.provenance import provenance_of_file

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], cwd: Path, log: Path, check: bool = True) -> tuple[float, int]:
    """Run ``cmd`` with its output to ``log``: (wall seconds, exit status); with ``check`` a failure
    stops the benchmark, naming the log."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode and check:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): see {log}")
    return time.perf_counter() - t0, proc.returncode


def disk_gb(path: Path, exclude: str | None = None) -> float:
    args = ["du", "-s", "--block-size=1"] + ([f"--exclude={exclude}"] if exclude else []) + [str(path)]
    return round(int(subprocess.run(args, capture_output=True, text=True, check=True).stdout.split()[0]) / 1e9, 2)


def processor() -> str:
    info = Path("/proc/cpuinfo").read_text()
    isa = "AVX512" if " avx512f" in info else "AVX2" if " avx2" in info else "no AVX2"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), None)
    return f"{name} ({isa})" if name else "unknown"


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {int(round(seconds % 60))} s"


def markdown(r: dict) -> str:
    rows = [("`make setup` (the pinned .venv, once)", minutes(r["setup_seconds"])),
            ("`make reproduce` (the pipeline, from an empty data/)", minutes(r["reproduce_seconds"]))]
    if "test_seconds" in r:
        rows.append((f"`make test` ({'passed' if r['test_passed'] else 'FAILED'})", minutes(r["test_seconds"])))
    checks = [f"`git status --porcelain`: {len(r['git_status'])} files listed",
              f"`dvc status`: {'up to date' if r['dvc_status_clean'] else 'changes'}",
              f"`snakemake -n results/table1.csv`: {'nothing to do' if r['snakemake_nothing_to_do'] else 'jobs'}"]
    return "\n".join([
        f"Measured on {r['date']}, {r['processor']}, {r['cores']} cores, on a fresh clone of "
        f"`{r['commit'][:7]}` (bench/bench_reproduce.py):", "",
        "| step | wall time |", "|---|---|", *[f"| {a} | {b} |" for a, b in rows], "",
        f"Peak resident memory of one process: {r['peak_rss_gb']} GB. Disk: {r['disk_gb']['venv']} GB for "
        f".venv, {r['disk_gb']['rest']} GB for the rest (data, results, caches). Afterwards: "
        + "; ".join(checks) + "."]) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--test", action="store_true", help="also time `make test` in the clone")
    ap.add_argument("--workdir", default=None, help="where to clone (default: a new temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the clone afterwards")
    ap.add_argument("--out", default="results/benchmarks/reproduce.json")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="aahr-reproduce-"))
    if work.exists() and any(work.iterdir()):
        raise SystemExit(f"{work}: not empty (the clone must be fresh)")
    logs = Path(tempfile.mkdtemp(prefix="aahr-reproduce-logs-"))
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(work)], check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, capture_output=True, text=True).stdout.strip()
    env_path = f"{work / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"
    result = {"date": datetime.date.today().isoformat(), "processor": processor(), "cores": os.cpu_count(),
              "commit": commit}
    print(f"fresh clone of {commit[:7]} in {work}; logs in {logs}", flush=True)
    result["setup_seconds"] = round(timed(["make", "setup"], work, logs / "setup.log")[0], 1)
    result["reproduce_seconds"] = round(timed(["make", "reproduce"], work, logs / "reproduce.log")[0], 1)
    result["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6, 2)
    result["disk_gb"] = {"venv": disk_gb(work / ".venv"), "rest": disk_gb(work, exclude=".venv")}
    status = subprocess.run(["git", "status", "--porcelain"], cwd=work, capture_output=True,
                            text=True, check=True).stdout
    result["git_status"] = status.splitlines()
    dvc = subprocess.run(["dvc", "status", "--json"], cwd=work, capture_output=True, text=True,
                         env=dict(os.environ, PATH=env_path, DVC_NO_ANALYTICS="1"))
    result["dvc_status"] = json.loads(dvc.stdout or "{}") if dvc.returncode == 0 else dvc.stderr[-2000:]
    result["dvc_status_clean"] = dvc.returncode == 0 and result["dvc_status"] == {}
    dry = subprocess.run(["snakemake", "--cores", "2", "-n", "results/table1.csv"], cwd=work, capture_output=True,
                         text=True, env=dict(os.environ, PATH=env_path))
    result["snakemake_nothing_to_do"] = dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr
    if args.test:
        seconds, status = timed(["make", "test"], work, logs / "test.log", check=False)
        result["test_seconds"], result["test_passed"] = round(seconds, 1), status == 0
    result["provenance"] = provenance_of_file(ROOT / "params.yaml")
    out = ROOT / args.out
    write_json(out, result)
    write_text(out.with_suffix(".md"), markdown(result))
    print(markdown(result))
    if not args.keep:
        shutil.rmtree(work)
    ok = (not result["git_status"] and result["dvc_status_clean"] and result["snakemake_nothing_to_do"]
          and result.get("test_passed", True))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

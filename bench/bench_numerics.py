"""Benchmark: what pinning the CPU kernels costs (params.yaml's ``numerics``, aahr.numerics).

Runs bench/bench_train_step.py (synth sizes, the pipeline's thread count) alternately with the
kernels pinned as every pipeline job pins them and with the kernels left to the processor (ATen's,
MKL's and oneDNN's best), ``--rounds`` times each, and reports per variant the median seconds per
step of each setting and their ratio (pinned / native; above 1: pinning costs time). The two settings
alternate, so a change in the machine's speed during the run hits both alike. Needs the synth
features (make reproduce first).

Writes results/benchmarks/numerics.json (with the provenance of the code and params).

Usage: python bench/bench_numerics.py [--variants gpo aahr] [--steps 6] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from aahr.config import load_params
from aahr.io import write_json
from aahr.provenance import provenance

SETTINGS = {"pinned": [], "native": ["--native-kernels"]}


def one_run(args: argparse.Namespace, flags: list[str], out: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).with_name("bench_train_step.py")), "--params", args.params,
           "--variants", *args.variants, "--steps", str(args.steps), "--no-profile", "--out", str(out), *flags]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--variants", nargs="+", default=["gpo", "aahr"])
    ap.add_argument("--steps", type=int, default=6, help="timed steps per variant and run")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each setting, alternated")
    ap.add_argument("--out", default="results/benchmarks/numerics.json")
    args = ap.parse_args()
    params = load_params(args.params)
    seconds: dict[str, dict[str, list[float]]] = {s: {v: [] for v in args.variants} for s in SETTINGS}
    setup = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, flags in SETTINGS.items():
                result = one_run(args, flags, Path(tmp) / f"{name}{r}.json")
                setup[name] = result["setup"]["numerics"]
                for v in args.variants:
                    seconds[name][v].append(result[v])
                print(f"round {r + 1} {name}: " + ", ".join(f"{v} {result[v]:.3f} s/step" for v in args.variants))
    medians = {s: {v: statistics.median(t) for v, t in by.items()} for s, by in seconds.items()}
    ratio = {v: medians["pinned"][v] / medians["native"][v] for v in args.variants}
    for v in args.variants:
        print(f"{v}: pinned {medians['pinned'][v]:.3f} s/step, native {medians['native'][v]:.3f} s/step, "
              f"pinned / native = {ratio[v]:.3f}")
    write_json(args.out, {"seconds_per_step": medians, "runs": seconds, "pinned_over_native": ratio,
                          "settings": setup, "steps": args.steps, "rounds": args.rounds,
                          "provenance": provenance(params)})
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What `make study` cost on the machine that ran it: job-hours per part and wall time.

`make study` runs for longer than one session, so it is stopped and resumed; this reads what the
runs leave behind in the working copy that ran it (none of it is committed, being the machine's):

- training: each run's ``log.timing.json`` (the seconds of every epoch, kept across resumes, so a run
  stopped and resumed counts once, without the minutes lost when it was stopped);
- every other job (data generation, features, the global branch, evaluation, tables): Snakemake's
  benchmark files under ``results/**/logs/benchmarks/`` (their wall seconds; a resumed job's file
  holds its last attempt);
- wall time: Snakemake's own logs (``.snakemake/log/``) of the invocations that `make study` made
  (their command names ``configs/study*.yaml`` or ``configs/regime/``): the elapsed time each
  reports, or, for one stopped before the end, from its start to its last timestamp.

Job-hours are one-thread jobs as they ran, two side by side on two cores (each job's time includes
what sharing the machine cost it). The seed-0 runs of the main rows belong to `make reproduce`
(results/benchmarks/reproduce.md) and are reported apart.

Writes results/benchmarks/study_cost.json and a Markdown summary beside it (study_cost.md).

Usage: python bench/study_cost.py [--root DIR]
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import re
import sys
from pathlib import Path

import yaml

from aahr.io import write_json, write_text
from bench_reproduce import processor

ROOT = Path(__file__).resolve().parents[1]
STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
ELAPSED = re.compile(r"^Elapsed time: (?:(\d+) days?, )?(\d+):(\d\d):(\d\d(?:\.\d+)?)$")


def part_of(run: Path, root: Path, reproduced: set[tuple[str, int]]) -> str:
    """Which part of the study a training run (``.../runs/{variant}/seed{n}``) belongs to."""
    rel = run.relative_to(root).parts
    variant, seed = rel[-2], int(rel[-1].removeprefix("seed"))
    if rel[1] == "regime":
        return f"regime sweep: {rel[2]}"
    if rel[1] == "study":
        return f"data seed: {rel[2]}"
    return "make reproduce's runs (seed 0)" if (variant, seed) in reproduced else "training seeds and Table 5"


def training_seconds(root: Path, reproduced: set[tuple[str, int]]) -> dict[str, dict]:
    """{part: {"runs": n, "seconds": s}} from every finished or stopped run's per-epoch timings."""
    parts: dict[str, dict] = {}
    for timing in sorted(root.glob("data/**/runs/*/seed*/log.timing.json")):
        seconds = sum(e["seconds"] for e in json.loads(timing.read_text())["epochs"])
        part = parts.setdefault(part_of(timing.parent, root, reproduced), {"runs": 0, "seconds": 0.0})
        part["runs"] += 1
        part["seconds"] += seconds
    return parts


def other_seconds(root: Path) -> dict[str, float]:
    """{part: seconds} of the study's jobs other than training, from Snakemake's benchmark files."""
    parts: dict[str, float] = {}
    for tsv in sorted(root.glob("results/**/logs/benchmarks/*.tsv")):
        if tsv.name.startswith("train_"):
            continue
        rel = tsv.relative_to(root).parts
        if rel[1] == "regime":
            part = f"regime sweep: {rel[2]}"
        elif rel[1] == "study" and rel[2].startswith("data"):
            part = f"data seed: {rel[2]}"
        elif rel[1] == "study":
            part = "training seeds and Table 5"
        else:
            continue    # make reproduce's own jobs (results/logs/)
        with open(tsv) as f:
            parts[part] = parts.get(part, 0.0) + float(next(csv.DictReader(f, delimiter="\t"))["s"])
    return parts


def invocation_seconds(log: Path) -> float | None:
    """Wall seconds of one Snakemake invocation of `make study`, or None for another invocation."""
    lines = log.read_text(errors="replace").splitlines()
    command = next((line for line in lines if line.strip().startswith("Command:")), "")
    if "configs/study" not in command and "configs/regime/" not in command:
        return None
    for line in reversed(lines):
        m = ELAPSED.match(line.strip())
        if m:
            days, h, mnt, s = m.groups()
            return int(days or 0) * 86400 + int(h) * 3600 + int(mnt) * 60 + float(s)
    stamps = [datetime.datetime.strptime(" ".join(m.group(1).split()), "%a %b %d %H:%M:%S %Y")
              for line in lines if (m := STAMP.match(line.strip()))]
    start = next((line.split("Date:", 1)[1].strip() for line in lines if line.strip().startswith("Date:")), None)
    if not stamps or start is None:
        return 0.0
    return max((stamps[-1] - datetime.datetime.fromisoformat(start)).total_seconds(), 0.0)


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f}"


def markdown(r: dict) -> str:
    rows = [f"| {p} | {v['runs']} | {hours(v['train_seconds'])} | {hours(v['other_seconds'])} | "
            f"{hours(v['train_seconds'] + v['other_seconds'])} |" for p, v in r["parts"].items()]
    study = r["study_job_seconds"]
    return "\n".join([
        f"Measured on {r['processor']} ({r['cores']} cores; two one-thread jobs side by side), in the working copy "
        f"that ran `make study` (bench/study_cost.py):", "",
        "| part | training runs | training job-hours | other job-hours | job-hours |", "|---|---|---|---|---|",
        *rows, "",
        f"`make study` itself: {hours(study)} job-hours; {hours(r['wall_seconds'])} hours of wall time over "
        f"{r['invocations']} Snakemake invocations (it was stopped and resumed across sessions)."]) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=str(ROOT), help="the working copy that ran make study (default: this one)")
    ap.add_argument("--out", default="results/benchmarks/study_cost.json")
    args = ap.parse_args()
    root = Path(args.root).resolve()
    params = yaml.safe_load((root / "params.yaml").read_text())
    reproduced = {(v, s) for v in params["variants"] for s in params["seeds"]}
    train, other = training_seconds(root, reproduced), other_seconds(root)
    parts = {p: {"runs": train.get(p, {}).get("runs", 0), "train_seconds": round(train.get(p, {}).get("seconds", 0.0), 1),
                 "other_seconds": round(other.get(p, 0.0), 1)} for p in sorted(set(train) | set(other))}
    walls = [s for log in sorted((root / ".snakemake" / "log").glob("*.snakemake.log"))
             if (s := invocation_seconds(log)) is not None]
    result = {"date": datetime.date.today().isoformat(), "processor": processor(), "cores": os.cpu_count(), "parts": parts,
              "study_job_seconds": round(sum(v["train_seconds"] + v["other_seconds"] for p, v in parts.items()
                                             if not p.startswith("make reproduce")), 1),
              "wall_seconds": round(sum(walls), 1), "invocations": len(walls)}
    out = ROOT / args.out
    write_json(out, result)
    write_text(out.with_suffix(".md"), markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

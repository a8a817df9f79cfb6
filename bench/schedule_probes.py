"""Dev-only probes that choose the training schedule: runs held at a constant learning rate, read on
the dev split only, and their summary.

    python bench/schedule_probes.py run --workdir DIR --probe aahr:0.002 --probe gpo:0.001:mean --epochs 45
    python bench/schedule_probes.py run --workdir DIR --probe gpo:0.0002:hardest:5 --epochs 40
    python bench/schedule_probes.py summarise --workdir DIR --out results/probes

``run`` trains each probe (VARIANT:LR[:SAMPLING[:WARMUP]], SAMPLING one of losses.sampling's values;
``hardest`` warms up on the averaged hinge for WARMUP epochs, one by default, as VSE-infinity) with seed 0 and the learning rate held for ``--epochs`` (no drop) into
DIR/{variant}_lr{lr}[_{sampling}[{warmup}]]/, through ``aahr train`` with a params file written beside it (the
data of params.yaml's data_root; nothing else of the checkout is touched). ``--decay-from PROBE:EPOCH``
continues a finished probe at lr x0.1 from its last epoch into DIR/{probe}_decay{EPOCH}/ (its
checkpoint's recorded schedule is rewritten to the decayed one: a probe, never a committed run).

``summarise`` writes schedule_probes.csv (probe, variant, lr, sampling, epoch, lr of the epoch, dev
rsum, the convergence rule's reading at that epoch, code version) and schedule_probes.md (per probe:
its dev rsum every five epochs and its best) from every DIR/*/log.jsonl. Nothing reads the test split.
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from aahr.convergence import convergence
from aahr.io import write_text
from aahr.provenance import label

ROOT = Path(__file__).resolve().parents[1]


def probe_name(variant: str, lr: float, sampling: str | None, warmup: int | None = None) -> str:
    return f"{variant}_lr{lr:g}" + (f"_{sampling}" if sampling else "") + (f"{warmup}" if warmup else "")


def probe_params(params: dict, variant: str, lr: float, epochs: int, sampling: str | None,
                 warmup: int | None = None) -> dict:
    p = copy.deepcopy(params)
    p["data_root"] = str((ROOT / params["data_root"]).resolve())
    p["train"] |= {"lr": lr, "epochs": epochs, "lr_steps": [epochs + 1000]}
    if sampling:
        p["variants"][variant].setdefault("set", {})["losses.sampling"] = sampling
        p["variants"][variant]["set"]["losses.hardest_warmup_epochs"] = warmup or 1
    return p


def train(params_file: Path, variant: str, out: Path, resume: bool = False) -> None:
    cmd = ["aahr", "train", "--params", str(params_file), "--variant", variant, "--seed", "0", "--out", str(out),
           "--quiet"] + (["--resume"] if resume else [])
    subprocess.run(cmd, check=True)


def run(args: argparse.Namespace) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    for spec in args.probe or []:
        variant, lr, *rest = spec.split(":")
        sampling, warmup = (rest + [None, None])[:2]
        warmup = int(warmup) if warmup else None
        name = probe_name(variant, float(lr), sampling, warmup)
        path = work / f"{name}.yaml"
        path.write_text(yaml.safe_dump(probe_params(params, variant, float(lr), args.epochs, sampling, warmup)))
        train(path, variant, work / name, resume=(work / name / "last.pt").exists())
    for spec in args.decay_from or []:
        import torch

        name, epoch = spec.rsplit(":", 1)
        src, dst = work / name, work / f"{name}_decay{epoch}"
        p = yaml.safe_load((work / f"{name}.yaml").read_text())
        p["train"] |= {"lr_steps": [int(epoch)], "epochs": int(epoch) + args.decay_epochs}
        (work / f"{dst.name}.yaml").write_text(yaml.safe_dump(p))
        shutil.copytree(src, dst)
        ckpt = torch.load(dst / "last.pt", weights_only=True)
        ckpt["fingerprint"]["train"]["lr_steps"] = [int(epoch)]
        torch.save(ckpt, dst / "last.pt")
        train(work / f"{dst.name}.yaml", ckpt["variant"], dst, resume=True)


def summarise(args: argparse.Namespace) -> None:
    rows, lines = [], []
    for log in sorted(Path(args.workdir).glob("*/log.jsonl")):
        history = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        params = yaml.safe_load((log.parent.parent / f"{log.parent.name}.yaml").read_text())
        variant = log.parent.name.split("_lr")[0]
        switches = params["variants"][variant]
        sampling = switches.get("set", {}).get("losses.sampling", params["losses"]["sampling"])
        if sampling == "hardest":
            sampling += f" after {switches['set']['losses.hardest_warmup_epochs']} epoch(s) of mean"
        code = label(history[-1].get("provenance"))
        for i, r in enumerate(history):
            c = convergence(history[:i + 1])
            rows.append({"probe": log.parent.name, "variant": variant, "lr": params["train"]["lr"],
                         "sampling": sampling, "epoch": r["epoch"], "epoch_lr": r["lr"], "dev_rsum": round(r["dev_rsum"], 2),
                         "gain_last_quarter": round(c["gain"], 4) if c["full_lr_epochs"] > 1 else "",
                         "converged": c["converged"], "code": code})
        best = max(history, key=lambda r: r["dev_rsum"])
        every5 = ", ".join(f"{r['dev_rsum']:.0f}" for r in history if r["epoch"] % 5 == 0)
        lines.append(f"| {log.parent.name} | {variant} | {params['train']['lr']:g} | {sampling} | {len(history)} | "
                     f"{every5} | {best['dev_rsum']:.1f} (epoch {best['epoch']}) | {code} |")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    out = Path(args.out)
    write_text(out / "schedule_probes.csv", buf.getvalue())
    write_text(out / "schedule_probes.md", "\n".join([
        "### Schedule probes: dev rsum at a constant learning rate (seed 0, dev split only)", "",
        "| probe | variant | lr | sampling | epochs | dev rsum at epochs 5, 10, 15, ... | best | code |",
        "|---|---|---|---|---|---|---|---|", *lines]) + "\n")
    print(out / "schedule_probes.csv", f"({len(rows)} rows)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    r = sub.add_parser("run", help="train the probes")
    r.add_argument("--workdir", required=True)
    r.add_argument("--probe", action="append", help="VARIANT:LR[:SAMPLING], repeatable")
    r.add_argument("--epochs", type=int, default=45)
    r.add_argument("--decay-from", action="append", help="PROBE:EPOCH, continue a probe at lr x0.1")
    r.add_argument("--decay-epochs", type=int, default=10)
    s = sub.add_parser("summarise", help="write schedule_probes.{csv,md} from the probes' logs")
    s.add_argument("--workdir", required=True)
    s.add_argument("--out", default="results/probes")
    args = ap.parse_args()
    run(args) if args.what == "run" else summarise(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

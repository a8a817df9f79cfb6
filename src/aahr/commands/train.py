"""aahr train: train one AAHR variant on a dataset's precomp features; dev-split model selection.

    aahr train --params params.yaml --dataset synth --variant aahr --out results/synth/aahr

Variants are named in params.yaml (``variants``: aahr, no_gnn, no_proto, no_moco, no_global, gpo);
each is a set of module switches, so one table row is one command line. Writes to --out:
``last.pt`` / ``best.pt`` (state dicts, atomically, every epoch), ``log.jsonl`` (per epoch: every loss
term and the dev metrics) and ``metrics.json`` (the best epoch's dev metrics). ``--resume`` continues
from ``last.pt``. Threads and CPU kernels come from the params file's ``numerics``. With ``train.nproc`` > 1 (or ``--nproc``) the command relaunches itself under
torchrun (gloo on CPU, NCCL on GPU); the global batch is train.batch_size whatever the split.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HELP = "Train an AAHR variant (or the GPO baseline): checkpoints, per-epoch log, dev metrics."


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--dataset", default="synth", choices=("synth", "f30k", "coco"), help="dataset (default: synth)")
    p.add_argument("--variant", default="aahr",
                   help="a variant of params.yaml: aahr, no_gnn, no_proto, no_moco, no_global, gpo (default: aahr)")
    p.add_argument("--seed", type=int, default=None,
                   help="training seed (default: the first of the params file's seeds; the workflow runs each "
                        "of them). The data's own seed is data_seed")
    p.add_argument("--out", required=True, help="output folder: last.pt, best.pt, log.jsonl, metrics.json")
    p.add_argument("--features", default=None,
                   help="precomp folder with {split}_ims.npy (default: {data_root}/{dataset}/precomp)")
    p.add_argument("--captions", default=None,
                   help="folder with {split}_caps.txt (default: the features folder, else {data_root}/{dataset}/raw)")
    resume = p.add_mutually_exclusive_group()
    resume.add_argument("--resume", action="store_true", help="continue from --out/last.pt")
    resume.add_argument("--resume-matching", action="store_true",
                        help="continue from --out/last.pt if it was trained with these settings, else start "
                             "over (what the workflow passes: a killed run resumes, a changed one retrains)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:1 ... (default: train.device)")
    p.add_argument("--nproc", type=int, default=None, help="processes for data parallelism (default: train.nproc)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")


def _relaunch(args: argparse.Namespace, nproc: int) -> int:
    """Run this same command under torchrun with ``nproc`` processes on this machine."""
    argv = ["train", "--params", args.params, "--dataset", args.dataset, "--variant", args.variant,
            "--out", args.out]  # no --nproc: torchrun's parser would take it for its own --nproc-per-node
    for flag, value in (("--features", args.features), ("--captions", args.captions), ("--device", args.device),
                        ("--seed", None if args.seed is None else str(args.seed))):
        if value is not None:
            argv += [flag, value]
    argv += ["--resume"] * args.resume + ["--quiet"] * args.quiet
    argv += ["--resume-matching"] * args.resume_matching
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "aahr", *argv]
    return subprocess.call(cmd)


def run(args: argparse.Namespace) -> int:
    from aahr.config import ConfigError, load_params
    from aahr.download import with_downloaded_weights
    from aahr.training import distributed
    from aahr.training.loop import Options, train

    params = with_downloaded_weights(load_params(args.params), args.dataset)  # text.path null: downloaded BERT
    if args.seed is not None and args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    nproc = args.nproc if args.nproc is not None else params["train"]["nproc"]
    if nproc > 1 and not distributed.launched_by_torchrun():
        return _relaunch(args, nproc)
    metrics = train(Options(params=params, variant=args.variant, out=Path(args.out), dataset=args.dataset, seed=args.seed,
                            features=Path(args.features) if args.features else None,
                            captions=Path(args.captions) if args.captions else None,
                            resume=args.resume, resume_matching=args.resume_matching, device=args.device,
                            progress=not args.quiet))
    if distributed.launched_by_torchrun() and int(os.environ.get("RANK", "0")) != 0:
        return 0
    print(f"{args.variant}: best dev rsum {metrics.get('dev_rsum', float('nan')):.1f} at epoch "
          f"{metrics['best_epoch']}; outputs in {args.out}")
    return 0

"""Arguments and folder defaults shared by the feature-extraction commands (regions, global-branch)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

DATASETS = ("synth", "f30k", "coco")


def add_arguments(p: argparse.ArgumentParser, weights_help: str) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--dataset", default="synth", choices=DATASETS, help="dataset (default: synth)")
    p.add_argument("--input", default=None,
                   help="raw folder with {split}_ids.txt, {split}_caps.txt, id_mapping.json "
                        "(default: {data_root}/{dataset}/raw)")
    p.add_argument("--out", default=None, help="features folder (default: {data_root}/{dataset}/precomp)")
    p.add_argument("--models", default=None,
                   help="folder for trained extractor weights (default: {data_root}/{dataset}/models)")
    p.add_argument("--image-root", default=None,
                   help="real images: folder the file names of id_mapping.json are relative to (default: --input)")
    p.add_argument("--weights", default=None, help=weights_help)
    p.add_argument("--splits", nargs="+", default=None,
                   help="splits to write (default: every split with a {split}_ids.txt in --input)")
    p.add_argument("--retrain", action="store_true",
                   help="synth: train again even if matching weights are saved under --models")
    p.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda, cuda:1, ...")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


@dataclass
class Folders:
    input: Path
    out: Path
    models: Path
    image_root: Path


def folders(args: argparse.Namespace, params: dict) -> Folders:
    base = Path(params["data_root"]) / args.dataset
    inp = Path(args.input) if args.input else base / "raw"
    return Folders(input=inp,
                   out=Path(args.out) if args.out else base / "precomp",
                   models=Path(args.models) if args.models else base / "models",
                   image_root=Path(args.image_root) if args.image_root else inp)


def setup_torch(args: argparse.Namespace):
    """Resolve --device (threads and CPU kernels come from params.yaml's ``numerics``); returns the
    torch.device."""
    from aahr.features.common import pick_device

    return pick_device(args.device)


def resolve_splits(args: argparse.Namespace, folder: Path) -> list[str]:
    from aahr.data import DataError
    from aahr.features.images import available_splits

    if not folder.is_dir():
        hint = " (run `aahr generate` first)" if folder.name == "raw" and folder.parent.name == "synth" else ""
        raise DataError(f"{folder}: input folder not found{hint}")
    found = available_splits(folder)
    splits = args.splits or found
    missing = [s for s in splits if s not in found]
    if missing:
        raise DataError(f"{folder}: no {missing[0]}_ids.txt (splits found: {', '.join(found) or 'none'})")
    if not splits:
        raise DataError(f"{folder}: no {{split}}_ids.txt files")
    return splits


def run_stage(args: argparse.Namespace, summary_name: str, run_synth, run_real) -> tuple[dict, Folders]:
    """The common frame of a feature command: params, folders, splits, device; ``run_synth`` or
    ``run_real`` (args, params, dirs, splits, device) -> summary; timing; the summary JSON."""
    import time

    from aahr.config import load_params
    from aahr.io import write_output_json

    params = load_params(args.params)
    dirs = folders(args, params)
    splits = resolve_splits(args, dirs.input)
    device = setup_torch(args)
    t0 = time.perf_counter()
    summary = (run_synth if args.dataset == "synth" else run_real)(args, params, dirs, splits, device)
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    summary["device"] = str(device)
    write_output_json(dirs.out / summary_name, summary)  # its timings to {name}.timing.json
    return summary, dirs

"""aahr download: locate a real dataset or explain where to get it (it fetches nothing)."""

from __future__ import annotations

import argparse

HELP = ("Find a real dataset's precomp folder (linking {dataset}_precomp into {dataset}/precomp), "
        "or list the files needed and where they are published; exit 2 if absent.")


def configure(p: argparse.ArgumentParser) -> None:
    from aahr.realdata import DATASETS

    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--data-root", required=True,
                   help="folder that holds (or will hold) {dataset}/precomp or {dataset}_precomp")
    p.add_argument("--splits", nargs="+", default=None, metavar="SPLIT",
                   help="splits needed (default: f30k train dev test; coco train dev testall)")


def run(args: argparse.Namespace) -> int:
    from aahr.realdata import locate_or_link

    print(locate_or_link(args.data_root, args.dataset, args.splits))
    return 0

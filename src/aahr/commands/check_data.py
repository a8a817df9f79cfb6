"""aahr check-data: validate a real dataset (Flickr30K / MSCOCO) before the workflow spends hours on it."""

from __future__ import annotations

import argparse
import sys

HELP = "Check a real dataset's precomp folder (every file, every problem); exit 2 if anything is wrong."


def configure(p: argparse.ArgumentParser) -> None:
    from aahr.realdata import DATASETS, FEATURE_DIM

    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--data-root", required=True,
                   help="folder holding {dataset}/precomp or {dataset}_precomp (data_root in params.yaml)")
    p.add_argument("--feature-dim", type=int, default=FEATURE_DIM,
                   help=f"region feature width (default: {FEATURE_DIM})")
    p.add_argument("--splits", nargs="+", default=None, metavar="SPLIT",
                   help="splits to check (default: f30k train dev test; coco train dev testall)")
    p.add_argument("--image-root", default=None,
                   help="also check that every image file named by id_mapping.json exists here")
    p.add_argument("--skip-values", action="store_true",
                   help="do not scan the features for NaN / inf (the scan reads every byte)")
    p.add_argument("--json", default=None, metavar="OUT",
                   help="write the summary and the problems to OUT (JSON, written atomically)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (shown only on a terminal anyway)")


def run(args: argparse.Namespace) -> int:
    from aahr.errors import AahrError
    from aahr.io import write_json
    from aahr.realdata import validate_dataset

    if args.feature_dim < 1:
        raise AahrError(f"--feature-dim must be >= 1, got {args.feature_dim}")
    report = validate_dataset(args.data_root, args.dataset, splits=args.splits,
                              feature_dim=args.feature_dim, check_values=not args.skip_values,
                              progress=not args.quiet and sys.stderr.isatty(), image_root=args.image_root)
    if args.json:
        from aahr.provenance import provenance_of_file

        write_json(args.json, {**report.to_dict(), "provenance": provenance_of_file(None)})
    if report.problems:
        for problem in report.problems:
            print(problem, file=sys.stderr)
        n = len(report.problems)
        raise AahrError(f"{n} problem{'s' if n != 1 else ''} in {args.dataset} (listed above): "
                        f"{report.summary_line()}")
    print(report.summary_line())
    return 0

"""aahr tables: the paper's tables (CSV + Markdown) from the measured metrics.json files."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = ("Build results/table{1,2,3,4}.csv and regime.csv (+ .md) from the evaluated runs and the synth ceiling; "
        "with --table5, results/table5 from the sensitivity runs.")


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--out", default=None, help="folder for the tables (default: results_root from params)")
    p.add_argument("--table5", action="store_true",
                   help="build only Table 5, the sensitivity study (needs the runs of params.yaml: sensitivity)")
    p.add_argument("--dataset", default="synth", help="Table 5's and --variance's dataset (default: synth)")
    p.add_argument("--variance", nargs="+", metavar="RESULTS_ROOT", default=None,
                   help="build only variance.{csv,md}: the spread over training seeds (every seed under the "
                        "first root) against the spread over data seeds (seed 0 of each further root, a "
                        "whole pipeline rerun with another data seed), for aahr and gpo (make study)")
    p.add_argument("--allow-mixed-code", action="store_true",
                   help="build the tables even when their rows come from several code versions (each row's "
                        "`code` column names its own); without it that is an error")


def run(args: argparse.Namespace) -> int:
    from aahr.config import load_params
    from aahr.io import write_text
    from aahr.tables import (build_table5, build_tables, check_one_code_version, code_versions, regime_rows,
                             title_of, to_csv, to_markdown, variance_rows)

    params = load_params(args.params)
    results = Path(params["results_root"])
    out = Path(args.out) if args.out else results
    if args.variance:
        tables = {"variance": variance_rows([Path(r) for r in args.variance], args.dataset)}
    elif args.table5:
        tables = {"table5": build_table5(params, args.dataset, params["sensitivity_seeds"])}
    else:
        datasets = {d: (results / d / "ceiling.json" if d == "synth" else None) for d in params["datasets"]}
        tables = build_tables(results, datasets, list(params["variants"]), params["seeds"])
        tables["regime"] = regime_rows(tables)
    if not args.allow_mixed_code:
        check_one_code_version(tables)
    for name, rows in tables.items():  # all computed before anything is written
        write_text(out / f"{name}.csv", to_csv(rows))
        write_text(out / f"{name}.md", to_markdown(title_of(name), rows))
        print(f"{out / name}.csv ({len(rows)} rows)")
    print(f"code versions of the rows: {', '.join(code_versions(tables)) or 'none'}")
    return 0

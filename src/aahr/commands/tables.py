"""aahr tables: the paper's tables (CSV + Markdown) from the measured metrics.json files."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = ("Build results/table{1,2,3,4}.csv (test split) and regime.csv (dev split only) (+ .md) from the evaluated "
        "runs and the synth truth oracle; "
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
    p.add_argument("--regime-sweep", nargs="+", metavar="RESULTS_ROOT", default=None,
                   help="build only regime_sweep.{csv,md} and figures/regime_sweep.png: per results root of a "
                        "sweep point (the pipeline with another global branch), its global/local dev ratio and "
                        "the global module's effect (its aahr minus no_global under --local-root, paired by seed)")
    p.add_argument("--local-root", default=None, metavar="RESULTS_ROOT",
                   help="with --regime-sweep: the results root holding no_global's evaluated seeds "
                        "(default: results_root of --params)")
    p.add_argument("--allow-mixed-code", action="store_true",
                   help="build the tables even when their rows come from several code versions (each row's "
                        "`code` column names its own); without it that is an error")


def run(args: argparse.Namespace) -> int:
    from aahr.config import load_params
    from aahr.io import write_text
    from aahr.tables import (build_table5, build_tables, check_one_code_version, code_versions, regime_rows,
                             regime_sweep_rows, title_of, to_csv, to_markdown, variance_rows)

    params = load_params(args.params)
    results = Path(params["results_root"])
    out = Path(args.out) if args.out else results
    if args.variance:
        tables = {"variance": variance_rows([Path(r) for r in args.variance], args.dataset)}
    elif args.regime_sweep:
        tables = {"regime_sweep": regime_sweep_rows(params, args.regime_sweep, Path(args.local_root or results),
                                                    args.dataset)}
    elif args.table5:
        tables = {"table5": build_table5(params, args.dataset, params["sensitivity_seeds"])}
    else:
        datasets = {d: (results / d / "ceiling.json" if d == "synth" else None) for d in params["datasets"]}
        tables = build_tables(results, datasets, list(params["variants"]), params["seeds"])
        tables["regime"] = regime_rows(params, params["datasets"])
    if not args.allow_mixed_code:
        check_one_code_version(tables)
    if "regime_sweep" in tables:
        from aahr.figures import regime_sweep
        from aahr.io import atomic_path
        from aahr.tables import paper_regimes

        with atomic_path(out / "figures" / "regime_sweep.png") as tmp:
            regime_sweep(tables["regime_sweep"], tmp, paper_regimes())
    for name, rows in tables.items():  # all computed before anything is written
        write_text(out / f"{name}.csv", to_csv(rows))
        write_text(out / f"{name}.md", to_markdown(title_of(name), rows))
        print(f"{out / name}.csv ({len(rows)} rows)")
    print(f"code versions of the rows: {', '.join(code_versions(tables)) or 'none'}")
    return 0

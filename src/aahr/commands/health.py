"""aahr health: is each of AAHR's modules alive? results/module_health.csv (the last epoch of every
run) and results/figures/module_health.png (the health metrics over the epochs, first seed)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = ("Collect every run's module health (last epoch) into results/module_health.csv and draw "
        "results/figures/module_health.png; the inert rule is params.yaml: health.")


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--dataset", default="synth", help="dataset whose runs to read (default: synth)")
    p.add_argument("--out", default=None, help="folder for module_health.csv (default: results_root); "
                                               "the figure goes to its figures/ subfolder")


def run(args: argparse.Namespace) -> int:
    from aahr.config import load_params
    from aahr.figures import module_health, read_log
    from aahr.health import HEALTH_COLUMNS, health_rows
    from aahr.io import atomic_path, write_text
    from aahr.paths import run_dir
    from aahr.tables import to_csv

    params = load_params(args.params)
    out = Path(args.out) if args.out else Path(params["results_root"])
    logs = {(v, s): read_log(run_dir(params, args.dataset, v, s) / "log.jsonl")
            for v in params["variants"] for s in params["seeds"]}
    rows = [row for (v, s), log in logs.items() if log for row in health_rows(v, s, log[-1], params["health"])]
    text = to_csv(rows) if rows else ",".join(HEALTH_COLUMNS) + "\n"
    first = params["seeds"][0]
    with atomic_path(out / "figures" / "module_health.png") as tmp:
        module_health({v: logs[(v, first)] for v in params["variants"]}, tmp, params["health"])
    write_text(out / "module_health.csv", text)
    for v, s, m in sorted({(r["variant"], r["seed"], r["module"]) for r in rows if r["inert"]}):
        print(f"{v} seed {s}: the {m} module is inert")
    print(out / "module_health.csv", f"({len(rows)} rows)")
    print(out / "figures" / "module_health.png")
    return 0

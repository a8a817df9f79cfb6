"""aahr health: is each of AAHR's modules alive, and has each run converged? results/module_health.csv
(each module's status and health numbers at the end of every run), results/convergence.csv (the
convergence rule on the full-learning-rate epochs) and results/figures/module_health.png (the health
metrics over the epochs, first seed)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = ("Collect every run's module health into results/module_health.csv (alive, inert, untrained or "
        "undecided), the convergence rule into results/convergence.csv, and draw "
        "results/figures/module_health.png; the rules are params.yaml: health.")


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--dataset", default="synth", help="dataset whose runs to read (default: synth)")
    p.add_argument("--out", default=None, help="folder for module_health.csv (default: results_root); "
                                               "the figure goes to its figures/ subfolder")


def run(args: argparse.Namespace) -> int:
    from aahr.config import load_params
    from aahr.convergence import CONVERGENCE_COLUMNS, convergence_row
    from aahr.figures import module_health, read_log
    from aahr.health import HEALTH_COLUMNS, health_rows
    from aahr.io import atomic_path, write_text
    from aahr.paths import run_dir
    from aahr.tables import to_csv

    params = load_params(args.params)
    out = Path(args.out) if args.out else Path(params["results_root"])
    rule = params["health"]
    logs = {(v, s): read_log(run_dir(params, args.dataset, v, s) / "log.jsonl")
            for v in params["variants"] for s in params["seeds"]}
    rows = [row for (v, s), log in logs.items() if log for row in health_rows(v, s, log, rule)]
    converged = [convergence_row(v, s, log, rule) for (v, s), log in logs.items() if log]
    first = params["seeds"][0]
    with atomic_path(out / "figures" / "module_health.png") as tmp:
        module_health({v: logs[(v, first)] for v in params["variants"]}, tmp, rule)
    write_text(out / "module_health.csv", to_csv(rows) if rows else ",".join(HEALTH_COLUMNS) + "\n")
    write_text(out / "convergence.csv", to_csv(converged) if converged else ",".join(CONVERGENCE_COLUMNS) + "\n")
    for v, s, m, status in sorted({(r["variant"], r["seed"], r["module"], r["status"]) for r in rows
                                   if r["status"] not in ("alive", "")}):
        print(f"{v} seed {s}: the {m} module is {status}")
    for r in converged:
        if not r["converged"]:
            print(f"{r['variant']} seed {r['seed']}: not converged at full learning rate (dev rsum "
                  f"+{100 * r['gain']:.1f}% over its last {r['window_epochs']} of {r['full_lr_epochs']} epochs)")
    print(out / "module_health.csv", f"({len(rows)} rows)")
    print(out / "convergence.csv", f"({len(converged)} runs)")
    print(out / "figures" / "module_health.png")
    return 0

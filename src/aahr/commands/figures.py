"""aahr figures: training curves, R@K curves, the ablation chart and a qualitative grid under
results/figures/ (the grid: test captions with the full model's top-5 images, true and extended
positives marked; drawn by aahr.inspect_figures.qualitative_grid on the code of ``aahr search``)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Draw results/figures/*.png: training curves, R@K curves, the ablation chart, a qualitative grid."


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--dataset", default="synth", help="dataset whose runs to draw (default: synth)")
    p.add_argument("--out", default=None, help="folder for the PNGs (default: {results_root}/figures)")


def _oracle_curves(raw: Path, n_images: int):
    """The oracle's R@K curves (expectations under random tie-breaking; see aahr.synth.oracle)."""
    import numpy as np

    from aahr.data import load_positives
    from aahr.figures import MAX_K
    from aahr.synth.oracle import i2t_recall, t2i_recall

    indptr, indices = load_positives(raw, "test")
    m = np.diff(indptr)
    c = np.bincount(indices, minlength=n_images)
    ks = range(1, MAX_K + 1)
    return (np.array([100 * i2t_recall(c, 5, k).mean() for k in ks]),
            np.array([100 * t2i_recall(m, k).mean() for k in ks]))


def run(args: argparse.Namespace) -> int:
    import csv

    import numpy as np

    from aahr.config import load_params
    from aahr.figures import _need, ablations, read_log, recall_at_k, recall_curve, training_curves
    from aahr.io import atomic_path
    from aahr.paths import features_dir, raw_dir, result_dir, run_dir
    from aahr.inspect_figures import qualitative_grid

    params = load_params(args.params)
    results = Path(params["results_root"])
    out = Path(args.out) if args.out else results / "figures"
    variants, seed = list(params["variants"]), params["seeds"][0]   # curves: the first training seed
    raw = raw_dir(params, args.dataset) if args.dataset == "synth" else None

    logs = {v: read_log(run_dir(params, args.dataset, v, seed) / "log.jsonl") for v in variants}
    curves = {}
    for method in ["zeroshot", *variants]:
        folder = result_dir(params, args.dataset, method, None if method == "zeroshot" else seed)
        with np.load(_need(folder / "ranks.npz")) as ranked:
            i2t, t2i = ranked["i2t_rank"], ranked["t2i_rank"]
        curves[method] = (recall_curve(i2t), recall_curve(t2i))
        n_images = len(i2t)
    oracle = _oracle_curves(raw, n_images) if raw is not None else None
    with open(_need(results / "table4.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r["dataset"] == args.dataset and r["source"] == "measured"]
    ceiling = None
    if raw is not None:
        import json

        c = json.loads((raw / "ceiling.json").read_text())["test"]
        ceiling = c.get("1k_folds", c["full"])["rsum"]

    out.mkdir(parents=True, exist_ok=True)
    grid_run = "aahr" if "aahr" in variants else variants[0]
    grid = (run_dir(params, args.dataset, grid_run, seed), features_dir(params, args.dataset),
            raw_dir(params, args.dataset))
    for name, draw in (("training_curves.png", lambda p: training_curves(logs, p)),
                       ("recall_at_k.png", lambda p: recall_at_k(curves, p, oracle)),
                       ("ablations.png", lambda p: ablations(rows, p, ceiling)),
                       ("qualitative.png", lambda p: qualitative_grid(*grid, p, seed=params["data_seed"], cache=False))):
        with atomic_path(out / name) as tmp:
            draw(tmp)
        print(out / name)
    return 0

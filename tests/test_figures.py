"""Figures from measured outputs: real PNGs of the expected size, R@K by hand, missing inputs named."""

from __future__ import annotations

import numpy as np
import matplotlib.pyplot as plt
import pytest
from PIL import Image

from aahr.figures import FigureError, ablations, read_log, recall_at_k, recall_curve, training_curves


def test_recall_curve_by_hand():
    # ranks 0, 0, 3, 9: R@1 = 50%, R@4 = 75%, R@10 = 100%
    curve = recall_curve(np.array([0, 0, 3, 9]), max_k=10)
    assert curve[0] == 50.0 and curve[3] == 75.0 and curve[8] == 75.0 and curve[9] == 100.0
    assert np.all(np.diff(curve) >= 0)


def _png_size(path):
    with Image.open(path) as img:
        assert img.format == "PNG"
        return img.size


def test_every_figure_is_a_png_of_the_expected_size(tmp_path):
    logs = {v: [{"epoch": e, "dev_rsum": 10.0 * e, "triplet": 5.0 - e, "moco": 1.0} for e in (1, 2, 3)]
            for v in ("aahr", "gpo")}
    training_curves(logs, tmp_path / "t.png")
    assert _png_size(tmp_path / "t.png") == (2200, 374)  # 20 x 3.4 inches at 110 dpi
    ranks = np.arange(100) % 60
    recall_at_k({"aahr": (recall_curve(ranks), recall_curve(ranks))}, tmp_path / "r.png",
                oracle=(recall_curve(ranks // 2), recall_curve(ranks // 2)))
    assert _png_size(tmp_path / "r.png") == (1100, 418)
    rows = [{"method": "aahr", "rsum_1k": "250.5"}, {"method": "gpo", "rsum_1k": "270.0"}]
    ablations(rows, tmp_path / "a.png", ceiling=409.0)
    assert _png_size(tmp_path / "a.png") == (715, 396)
    with_std = [dict(r, rsum_1k_std="3.5", seeds="0 1 2") for r in rows]
    ablations(with_std, tmp_path / "b.png", ceiling=None)             # error bars over the seeds
    assert (tmp_path / "b.png").read_bytes() != (tmp_path / "a.png").read_bytes()


def test_the_module_health_figure_draws_every_panel_and_the_thresholds(tmp_path):
    from aahr.figures import module_health
    from aahr.health import key

    rule = {"max_code_entropy": 0.99, "min_top1_over_chance": 5, "min_grad_ratio": 0.01, "gate_min": 0.01,
            "gate_max": 0.99}
    log = [{"epoch": e, key("prototypes", "code_entropy"): 0.999, key("moco", "top1"): 0.01 * e,
            key("moco", "top1_chance"): 1 / 2049, key("relation", "grad_ratio"): 0.5,
            key("fusion", "gate_mean"): 0.5, key("fusion", "gate_q05"): 0.2, key("fusion", "gate_q95"): 0.8,
            key("triplet", "false_negatives"): 0.3, key("relation", "false_negatives"): 0.2} for e in (1, 2, 3)]
    drawn = []
    real = plt.Axes.plot
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plt.Axes, "plot", lambda self, *a, **k: drawn.append(self) or real(self, *a, **k))
        module_health({"aahr": log, "gpo": [{"epoch": 1}]}, tmp_path / "h.png", rule)
    drawn = {ax.get_title() for ax in drawn}
    assert _png_size(tmp_path / "h.png") == (2100, 680)                 # 21 x 6.8 inches at 100 dpi
    assert len(drawn) == 6                                               # every panel with a metric in the log
    assert any("false" not in t and "gate" in t for t in drawn) and sum("true matches" in t for t in drawn) == 2


def test_a_missing_log_is_named(tmp_path):
    with pytest.raises(FigureError, match="log.jsonl: file not found"):
        read_log(tmp_path / "log.jsonl")

"""The convergence rule: read on the full-learning-rate epochs only, it fails on a run still climbing
and passes on a plateau, whatever the epochs after the learning-rate drop do."""

from __future__ import annotations

import pytest

from aahr.convergence import convergence, convergence_row, full_lr_records

RULE = {"convergence_window": 0.25, "convergence_gain": 0.01}


def history(rsums_at_full_lr, rsums_after_drop=(), lr=5e-4):
    records = [{"epoch": i + 1, "lr": lr, "dev_rsum": r} for i, r in enumerate(rsums_at_full_lr)]
    n = len(records)
    return records + [{"epoch": n + i + 1, "lr": lr / 10, "dev_rsum": r} for i, r in enumerate(rsums_after_drop)]


def test_a_run_still_climbing_at_full_lr_is_not_converged_even_if_it_plateaus_after_the_drop():
    # the committed 12-epoch runs: climbing at epochs 4 -> 5, then flat at a tenth of the rate
    climbing = history([231, 266, 279, 288, 291], [300, 301, 301, 301, 301, 301, 301])
    c = convergence(climbing, **{"window": 0.25, "max_gain": 0.01})
    assert c["full_lr_epochs"] == 5 and c["window_epochs"] == 2
    assert c["best_before_window"] == 279 and c["best_full_lr"] == 291
    assert c["gain"] == pytest.approx(12 / 279) and not c["converged"]
    assert c["decay_gain"] == pytest.approx(10) and c["best_dev_rsum"] == 301 and c["best_epoch"] == 7


def test_a_plateau_at_full_lr_is_converged():
    # 40 epochs at constant lr, 415 by epoch 30, then 411-417.6: +0.6% over the last quarter
    rising = [300 + 115 * i / 29 for i in range(30)]
    plateau = history(rising + [413, 415, 417.6, 414, 412, 416, 413, 411, 412, 411], [420, 421])
    c = convergence(plateau, 0.25, 0.01)
    assert c["full_lr_epochs"] == 40 and c["window_epochs"] == 10
    assert c["gain"] == pytest.approx((417.6 - 415) / 415) and c["converged"]
    assert convergence_row("gpo", 0, plateau, RULE)["converged"] is True
    # the same run 2.6 lower at epoch 30 gains 1.2%: not yet
    late = history(rising[:-1] + [412.4] + [413, 415, 417.6, 414, 412, 416, 413, 411, 412, 411])
    assert convergence(late, 0.25, 0.01)["best_before_window"] == 412.4
    assert not convergence(late, 0.25, 0.01)["converged"]


def test_only_the_leading_full_lr_epochs_count_and_too_few_cannot_show_a_plateau():
    h = history([100, 200, 300], [310, 320])
    assert [r["epoch"] for r in full_lr_records(h)] == [1, 2, 3]
    assert not convergence(history([300]), 0.25, 0.01)["converged"]
    assert convergence([], 0.25, 0.01)["full_lr_epochs"] == 0

"""Has a run finished learning? The convergence rule, read on the full-learning-rate epochs only.

A run is converged when its dev rsum gained less than ``health.convergence_gain`` (a share, 1%)
over the last ``health.convergence_window`` (a quarter) of the epochs it trained at the full
learning rate: the best dev rsum of those epochs against the best before them. The epochs after the
first learning-rate drop do not count: at a tenth of the rate the parameters hardly move, so a
plateau there says nothing about whether the run had finished learning. What the drops added is
reported beside it (``decay_gain``).
"""

from __future__ import annotations

import math

CONVERGENCE_COLUMNS = ("variant", "seed", "full_lr_epochs", "window_epochs", "best_before_window",
                       "best_full_lr", "gain", "converged", "best_dev_rsum", "best_epoch", "decay_gain", "code")


def full_lr_records(history: list[dict]) -> list[dict]:
    """The leading epochs trained at the run's highest learning rate (before its first drop)."""
    if not history:
        return []
    top = max(r["lr"] for r in history)
    out = []
    for r in history:
        if not math.isclose(r["lr"], top, rel_tol=1e-9):
            break
        out.append(r)
    return out


def convergence(history: list[dict], window: float = 0.25, max_gain: float = 0.01) -> dict:
    """The rule on one run's per-epoch records (each with ``lr`` and ``dev_rsum``). ``gain`` is
    relative; fewer than two full-lr epochs cannot show a plateau (not converged)."""
    full = full_lr_records(history)
    n = len(full)
    q = max(1, math.ceil(window * n))
    best_all = max(history, key=lambda r: r["dev_rsum"]) if history else None
    out = {"full_lr_epochs": n, "window_epochs": q, "best_before_window": math.nan, "best_full_lr": math.nan,
           "gain": math.nan, "converged": False,
           "best_dev_rsum": best_all["dev_rsum"] if best_all else math.nan,
           "best_epoch": best_all["epoch"] if best_all else 0, "decay_gain": math.nan}
    if n < 2:
        return out
    q = min(q, n - 1)
    before = max(r["dev_rsum"] for r in full[:n - q])
    best_full = max(r["dev_rsum"] for r in full)
    gain = (best_full - before) / before if before > 0 else math.inf
    out |= {"window_epochs": q, "best_before_window": before, "best_full_lr": best_full, "gain": gain,
            "converged": gain < max_gain, "decay_gain": out["best_dev_rsum"] - best_full}
    return out


def convergence_row(variant: str, seed: int, history: list[dict], rule: dict) -> dict:
    """A row of results/convergence.csv (``rule``: params.yaml's health section)."""
    c = convergence(history, rule["convergence_window"], rule["convergence_gain"])
    code = history[-1].get("provenance", {}).get("code", {}).get("commit", "") if history else ""
    return {"variant": variant, "seed": seed, **c, "code": code}

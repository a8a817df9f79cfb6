"""The paper-style figures, drawn from measured outputs only (PNG, matplotlib's Agg backend).

- ``training_curves.png``: per variant, the dev rsum per epoch and every loss term per epoch;
- ``recall_at_k.png``: R@K for K = 1..50 in both directions on the test split (all its images),
  per method, beside the oracle's R@K where the dataset has exact positives;
- ``ablations.png``: the ablation table's rsum as bars, with the truth oracle as a line (not a
  ceiling: a model that learns the caption writer's priors passes it; aahr.tables).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import matplotlib.lines
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from aahr.errors import AahrError  # noqa: E402

LOSS_TERMS = ("triplet", "relation", "prototypes", "moco")
MAX_K = 50


class FigureError(AahrError):
    """An input a figure needs is missing; the message names it."""


def _need(path: Path) -> Path:
    if not path.is_file():
        raise FigureError(f"{path}: file not found (run the stages before the figures)")
    return path


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in _need(path).read_text().splitlines() if line.strip()]


def training_curves(logs: dict[str, list[dict]], out: Path) -> None:
    """logs: variant -> its per-epoch records (aahr train's log.jsonl)."""
    fig, axes = plt.subplots(1, 1 + len(LOSS_TERMS), figsize=(4 * (1 + len(LOSS_TERMS)), 3.4))
    for variant, log in logs.items():
        epochs = [r["epoch"] for r in log]
        axes[0].plot(epochs, [r["dev_rsum"] for r in log], marker="o", label=variant)
        for ax, term in zip(axes[1:], LOSS_TERMS):
            if all(term in r for r in log):
                ax.plot(epochs, [r[term] for r in log], marker=".", label=variant)
    axes[0].set_title("dev rsum (model selection)")
    for ax, term in zip(axes[1:], LOSS_TERMS):
        ax.set_title(f"{term} loss (epoch mean)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110, format="png")
    plt.close(fig)


def recall_curve(ranks: np.ndarray, max_k: int = MAX_K) -> np.ndarray:
    """(max_k,) percent of queries whose 0-based rank is < K, for K = 1..max_k."""
    return 100.0 * (ranks[None, :] < np.arange(1, max_k + 1)[:, None]).mean(1)


def recall_at_k(curves: dict[str, tuple[np.ndarray, np.ndarray]], out: Path,
                oracle: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """curves: method -> (i2t R@K, t2i R@K) for K = 1..MAX_K; oracle: the same for the oracle."""
    ks = np.arange(1, MAX_K + 1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for d, (ax, title) in enumerate(zip(axes, ("image-to-text", "text-to-image"))):
        for method, c in curves.items():
            ax.plot(ks, c[d], label=method)
        if oracle is not None:
            ax.plot(ks, oracle[d], "k--", label="truth oracle (no priors)")
        ax.set(title=f"{title}: R@K on the test split", xlabel="K", ylabel="R@K (%)", xscale="log", ylim=(0, 100))
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110, format="png")
    plt.close(fig)


def ablations(rows: list[dict], out: Path, ceiling: float | None, column: str = "rsum_1k") -> None:
    """rows: the ablation table's rows (one per variant); with several seeds, error bars of one
    standard deviation over the seeds."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    names = [r["method"] for r in rows]
    values = [float(r[column]) for r in rows]
    errors = [float(r[f"{column}_std"]) if r.get(f"{column}_std") not in (None, "") else 0.0 for r in rows]
    bars = ax.bar(names, values, yerr=errors if any(errors) else None, capsize=4,
                  color=["tab:red" if n == "aahr" else "tab:blue" for n in names])
    ax.bar_label(bars, fmt="%.1f", fontsize=8, label_type="center", color="white")
    if ceiling is not None:
        ax.axhline(ceiling, color="k", linestyle="--", label=f"truth oracle (no priors) {ceiling:.1f}")
        ax.legend(fontsize=8, loc="lower right")
    seeds = rows[0].get("seeds", "") if rows else ""
    bars_of = f", mean ± std over seeds {seeds}" if any(errors) else ""
    ax.set(title=f"Ablations: test rsum, 1K protocol{bars_of}", ylabel="rsum")
    fig.tight_layout()
    fig.savefig(out, dpi=110, format="png")
    plt.close(fig)


# module_health.png: one panel per metric that decides a module's life, over the epochs.
HEALTH_PANELS = (("prototypes", "code_entropy", "prototypes: code entropy / ln K", "max_code_entropy"),
                 ("prototypes", "code_agreement", "prototypes: image-text code agreement", None),
                 ("moco", "top1", "MoCo: top-1 of the paired key", None),
                 ("relation", "local_cosine", "relation: mean pairwise cosine of v_hat, t_hat", None),
                 ("fusion", "gate_mean", "fusion: gate, mean and q05-q95 band (1 = local only)", None),
                 ("triplet", "false_negatives", "share of used negatives that are true matches: triplet", None),
                 ("relation", "false_negatives", "share of used negatives that are true matches: relation", None),
                 ("relation", "grad_ratio", "encoder gradient / triplet's: relation", "min_grad_ratio"),
                 ("prototypes", "grad_ratio", "encoder gradient / triplet's: prototypes", "min_grad_ratio"),
                 ("moco", "grad_ratio", "encoder gradient / triplet's: MoCo", "min_grad_ratio"))


def module_health(logs: dict[str, list[dict]], out: Path, rule: dict) -> None:
    """logs: variant -> its per-epoch records; the inert thresholds drawn as dashed lines."""
    from aahr.health import key

    fig, axes = plt.subplots(2, 5, figsize=(21, 6.8))
    colour = {v: f"C{i}" for i, v in enumerate(logs)}                 # one colour per variant in every panel
    for ax, (module, metric, title, threshold) in zip(axes.flat, HEALTH_PANELS):
        name = key(module, metric)
        for variant, log in logs.items():
            pts = [(r["epoch"], r[name]) for r in log if name in r]
            if pts:
                ax.plot(*zip(*pts), marker=".", color=colour[variant])
            band = [(r["epoch"], r[key(module, "gate_q05")], r[key(module, "gate_q95")]) for r in log
                    if metric == "gate_mean" and key(module, "gate_q05") in r]
            if band:
                ax.fill_between(*zip(*band), color=colour[variant], alpha=0.15)
        if threshold is not None:
            ax.axhline(rule[threshold], color="k", linestyle="--", linewidth=0.8)
        if metric == "grad_ratio":
            ax.set_yscale("log")
        if metric == "top1":
            chance = [r[key("moco", "top1_chance")] for lg in logs.values() for r in lg if key("moco", "top1_chance") in r]
            if chance:
                ax.axhline(rule["min_top1_over_chance"] * chance[-1], color="k", linestyle="--", linewidth=0.8)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles = [matplotlib.lines.Line2D([], [], color=c, marker=".", label=v) for v, c in colour.items()]
    handles.append(matplotlib.lines.Line2D([], [], color="k", linestyle="--", linewidth=0.8, label="inert threshold"))
    axes.flat[0].legend(handles=handles, fontsize=7)
    for ax in axes.flat[len(HEALTH_PANELS):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=100, format="png")
    plt.close(fig)


def regime_sweep(rows: list[dict], out: Path, paper: dict[str, float]) -> None:
    """The global module's effect (aahr - no_global, test 1K rsum, with its 95% interval) against
    the global/local dev ratio of each sweep point; the paper's regimes as vertical lines."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    x = [r["ratio"] for r in rows]
    y = [r["effect_rsum_1k"] for r in rows]
    low = [r["effect_rsum_1k"] - r.get("effect_rsum_1k_ci95_low", r["effect_rsum_1k"]) for r in rows]
    high = [r.get("effect_rsum_1k_ci95_high", r["effect_rsum_1k"]) - r["effect_rsum_1k"] for r in rows]
    ax.errorbar(x, y, yerr=[low, high], marker="o", capsize=4, color="tab:red", label="synth (95% interval)")
    for r in rows:
        ax.annotate(r["point"], (r["ratio"], r["effect_rsum_1k"]), textcoords="offset points", xytext=(4, 6), fontsize=7)
    ax.axhline(0, color="k", linewidth=0.8)
    for i, (name, ratio) in enumerate(sorted(paper.items())):
        ax.axvline(ratio, color=f"C{i}", linestyle="--", linewidth=1, label=f"paper: {name} ({ratio:.3f})")
    ax.set(xlabel="global branch zero-shot / local model, dev rsum", ylabel="aahr - no_global, test 1K rsum",
           title="When does the global branch help?")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110, format="png")
    plt.close(fig)

"""Module health: each metric on a hand-built case, and the status rule (alive, inert, untrained,
undecided) on dead, live, untrained and borderline modules."""

from __future__ import annotations

import math

import pytest
import torch

from aahr.health import (code_health, contrast_health, gate_health, gradient_health, health_rows, judge_module, key,
                         mean_pairwise_cosine, pooled_ratio, rowwise_cosine, term_gradient_norms, verdicts)
from aahr.model.layers import l2n

RULE = {"grad_steps": 1, "window_epochs": 2, "max_code_entropy": 0.99, "min_top1_over_chance": 5,
        "min_grad_ratio": 0.01, "gate_min": 0.01, "gate_max": 0.99, "gate_untrained": 0.05}


def test_uniform_codes_have_entropy_ln_k_and_one_hot_codes_zero():
    k = 16
    uniform = torch.full((8, k), 1 / k)
    assert code_health(uniform, uniform)["code_entropy"] == pytest.approx(1.0)
    one_hot = torch.eye(k)[:8]
    h = code_health(one_hot, one_hot)
    assert h["code_entropy"] == pytest.approx(0.0, abs=1e-6)
    assert h["code_agreement"] == 1.0 and h["code_agreement_chance"] == 1 / k
    assert h["prototypes_in_use"] == 8 / k
    shifted = torch.eye(k)[1:9]
    assert code_health(one_hot, shifted)["code_agreement"] == 0.0


def test_a_perfectly_matched_key_ranks_first_and_a_worst_one_last():
    l_neg = torch.tensor([[0.1, 0.2, 0.3], [0.5, -torch.inf, 0.0]])
    best = contrast_health(torch.tensor([[0.9], [0.9]]), l_neg)
    assert best["positive_rank"] == 1.0 and best["top1"] == 1.0
    worst = contrast_health(torch.tensor([[0.0], [-1.0]]), l_neg)
    assert worst["positive_rank"] == pytest.approx((4 + 3) / 2)            # the masked negative does not count
    assert worst["top1"] == 0.0 and worst["top1_chance"] == pytest.approx(1 / 3.5)


def test_pairwise_and_rowwise_cosines():
    same = torch.ones(5, 3)
    assert mean_pairwise_cosine(same) == pytest.approx(1.0)
    assert mean_pairwise_cosine(torch.eye(4)) == pytest.approx(0.0, abs=1e-7)
    x = l2n(torch.randn(6, 4))
    assert rowwise_cosine(x, x) == pytest.approx(1.0) and rowwise_cosine(x, -x) == pytest.approx(-1.0)


def test_term_gradient_norms_are_each_terms_own_gradient():
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    terms = {"triplet": (w * torch.tensor([3.0, 4.0])).sum(), "moco": 0.001 * (w * w).sum(),
             "relation": torch.zeros(())}
    norms = term_gradient_norms(terms, [w])
    assert norms["triplet"] == pytest.approx(5.0)
    assert norms["moco"] == pytest.approx(0.002 * math.sqrt(5))
    assert norms["relation"] == 0.0
    h = gradient_health(norms)
    assert h[key("moco", "grad_ratio")] == pytest.approx(0.002 * math.sqrt(5) / 5)
    assert key("triplet", "grad_ratio") not in h


def test_the_inert_rule_fires_on_dead_modules_and_not_on_live_ones():
    dead = {key("prototypes", "code_entropy"): 0.9995, key("moco", "top1"): 0.001, key("moco", "top1_chance"): 1 / 2049,
            key("fusion", "gate_mean"): 0.995, key("relation", "grad_ratio"): 0.002,
            key("relation", "local_cosine"): 0.9}
    live = {key("prototypes", "code_entropy"): 0.85, key("moco", "top1"): 0.3, key("moco", "top1_chance"): 1 / 2049,
            key("fusion", "gate_mean"): 0.6, key("fusion", "gate_start"): 0.5, key("relation", "grad_ratio"): 0.5,
            key("relation", "local_cosine"): 0.9}
    assert {m: v[0] for m, v in verdicts([dead], RULE).items()} == dict.fromkeys(
        ("prototypes", "moco", "fusion", "relation"), "inert")
    assert {v[0] for v in verdicts([live], RULE).values()} == {"alive"}
    assert "code entropy" in judge_module("prototypes", [dead], RULE)[1][0]
    rows = health_rows("aahr", 0, [dead], RULE)
    assert {r["module"] for r in rows} == {"prototypes", "moco", "fusion", "relation"}
    assert {r["status"] for r in rows} == {"inert"}


def test_a_gate_left_at_its_start_is_untrained_and_one_that_moved_is_not():
    def run(start, end):
        return [{key("fusion", "gate_start"): start, key("fusion", "gate_mean"): end}]

    status, reasons = judge_module("fusion", run(0.50, 0.47), RULE)      # the committed 12-epoch runs' gate
    assert status == "untrained" and "within 0.05 of its start" in reasons[0]
    assert judge_module("fusion", run(0.50, 0.30), RULE)[0] == "alive"
    assert judge_module("fusion", run(0.50, 0.995), RULE)[0] == "inert"   # saturated: one view only


def test_the_gate_quantiles_and_saturated_share():
    z = torch.cat([torch.zeros(10), torch.full((80,), 0.5), torch.ones(10)])
    h = gate_health(z.reshape(10, 10))
    assert h["gate_mean"] == pytest.approx(0.5) and h["gate_q50"] == pytest.approx(0.5)
    assert h["gate_q05"] == pytest.approx(0.0) and h["gate_q95"] == pytest.approx(1.0)
    assert h["gate_saturated"] == pytest.approx(0.2)
    assert gate_health(torch.full((4, 4), 0.5))["gate_saturated"] == 0.0


def _ratios(mean_sd_n):
    return [{key("relation", "grad_ratio"): m, key("relation", "grad_ratio_sd"): sd, key("relation", "grad_ratio_n"): n}
            for m, sd, n in mean_sd_n]


def test_a_gradient_ratio_is_judged_by_its_interval_pooled_over_the_window():
    # two epochs of 6 steps each: the pooled mean and a 95% interval over the 12 steps
    mean, low, high, n = pooled_ratio(_ratios([(0.02, 0.001, 6), (0.04, 0.001, 6)]), "relation")
    assert n == 12 and mean == pytest.approx(0.03) and low < mean < high
    assert judge_module("relation", _ratios([(0.5, 0.01, 6), (0.5, 0.01, 6)]), RULE)[0] == "alive"
    assert judge_module("relation", _ratios([(0.002, 0.0005, 6), (0.002, 0.0005, 6)]), RULE)[0] == "inert"
    status, reasons = judge_module("relation", _ratios([(0.0104, 0.002, 6), (0.0096, 0.002, 6)]), RULE)
    assert status == "undecided" and "straddles 0.01" in reasons[0]     # eps_003's coin flip, now called one
    # only the window's epochs count: an early dead epoch does not make a live module undecided
    assert judge_module("relation", _ratios([(0.0, 0.0, 6), (0.5, 0.01, 6), (0.5, 0.01, 6)]), RULE)[0] == "alive"


def test_a_model_with_a_weightless_prototype_term_is_called_inert_and_the_full_one_is_not():
    from test_model import tiny_batch, tiny_model

    def health_of(model):
        health = {}
        out = model(tiny_batch())
        terms = model.loss_terms(out, iteration=10 ** 6, epoch=5, steps_per_epoch=10, health=health)
        shared = [p for enc in (model.image, model.text) for p in enc.parameters() if p.requires_grad]
        return health | gradient_health(term_gradient_norms(terms, shared))

    alive = health_of(tiny_model())
    model = tiny_model()
    model.loss_cfg = {**model.loss_cfg, "prototypes": {**model.loss_cfg["prototypes"], "weight": 0.0}}
    dead = health_of(model)
    assert dead[key("prototypes", "grad_ratio")] == 0.0
    assert any("gradient" in r for r in verdicts([dead], RULE)["prototypes"][1])
    assert alive[key("prototypes", "grad_ratio")] > RULE["min_grad_ratio"]
    assert not any("gradient" in r for r in verdicts([alive], RULE)["prototypes"][1])
    for module in ("relation", "fusion"):
        assert key(module, {"relation": "graph_density", "fusion": "gate_mean"}[module]) in alive

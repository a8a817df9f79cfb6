"""Evaluation library and `aahr evaluate`: hand-computed cases, the tie rule, the 5-fold slicing,
agreement with the eccv_caption package, bad input, the command's outputs.

Expected numbers are derived by hand in the comments (ranks are 0-based; medr = floor(median) + 1,
meanr = mean + 1); the reference implementations below are deliberately naive (one query at a time,
an explicit sort with the tie rule as sort key) and share no code with aahr.evaluation.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from aahr.cli import main
from aahr.data import load_positives, positive_lists
from aahr.errors import AahrError
from aahr.evaluation import (EvaluationError, eccv_metrics, eccv_test_ids, evaluate_protocols,
                             extended_metrics, fold5_metrics, retrieval_metrics, retrieval_ranks)

ALL_KEYS = ["i2t_r1", "i2t_r5", "i2t_r10", "i2t_medr", "i2t_meanr",
            "t2i_r1", "t2i_r5", "t2i_r10", "t2i_medr", "t2i_meanr", "rsum"]


def approx(expected: dict, got: dict, tol=1e-9):
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, abs=tol), k


# ---------------------------------------------------------------------------------------------
# Naive references (sort each query with key (-score, is_positive): negatives first among ties)


def naive_ranks(sims, cpi=5):
    n = sims.shape[0]
    i2t, t2i = [], []
    for i in range(n):
        own = np.zeros(sims.shape[1], bool)
        own[cpi * i:cpi * (i + 1)] = True
        order = np.lexsort((own, -sims[i]))
        i2t.append(int(np.flatnonzero(own[order])[0]))
    for j in range(sims.shape[1]):
        own = np.arange(n) == j // cpi
        order = np.lexsort((own, -sims[:, j]))
        t2i.append(int(np.flatnonzero(own[order])[0]))
    return np.array(i2t), np.array(t2i)


def naive_extended(scores, positives):
    """(mAP@R, R-P, R@1) in percent over queries (rows of scores) with positives."""
    ap = rp = r1 = n = 0
    for q, pos in enumerate(positives):
        pos = set(int(p) for p in pos)
        if not pos:
            continue
        n += 1
        is_pos = np.array([j in pos for j in range(scores.shape[1])])
        ranked = is_pos[np.lexsort((is_pos, -scores[q]))]
        top = ranked[:len(pos)]
        prec_at = np.cumsum(top) / np.arange(1, len(pos) + 1)
        ap += (prec_at * top).sum() / len(pos)
        rp += top.sum() / len(pos)
        r1 += ranked[0]
    return 100 * ap / n, 100 * rp / n, 100 * r1 / n


# ---------------------------------------------------------------------------------------------
# Standard recalls, by hand


def test_retrieval_metrics_2x10_by_hand():
    sims = np.array([
        [0.9, 0.1, 0.2, 0.3, 0.4, 0.8, 0.5, 0.05, 0.0, 0.6],
        [0.7, 0.6, 0.1, 0.2, 0.3, 0.5, 0.4, 0.0, 0.05, 0.15]])
    # i2t: image 0 owns captions 0-4, its best is caption 0 (0.9) and no other caption reaches 0.9:
    # rank 0. Image 1 owns 5-9, best 0.5 (caption 5); captions 0 (0.7) and 1 (0.6) beat it: rank 2.
    # t2i, caption j against the other image: c0 .9>.7 ->0, c1 .1<.6 ->1, c2 .2>.1 ->0,
    # c3 .3>.2 ->0, c4 .4>.3 ->0, c5 .5<.8 ->1, c6 .4<.5 ->1, c7 0<.05 ->1, c8 .05>0 ->0, c9 .15<.6 ->1.
    i2t, t2i = retrieval_ranks(sims)
    assert i2t.tolist() == [0, 2]
    assert t2i.tolist() == [0, 1, 0, 0, 0, 1, 1, 1, 0, 1]
    approx({"i2t_r1": 50, "i2t_r5": 100, "i2t_r10": 100,
            "i2t_medr": 2,      # median(0, 2) = 1 -> floor + 1 = 2
            "i2t_meanr": 2,     # mean 1 + 1
            "t2i_r1": 50, "t2i_r5": 100, "t2i_r10": 100,
            "t2i_medr": 1,      # median of five 0s and five 1s = 0.5 -> floor 0 + 1
            "t2i_meanr": 1.5,   # mean 0.5 + 1
            "rsum": 500}, retrieval_metrics(sims))
    assert list(retrieval_metrics(sims)) == ALL_KEYS


def test_i2t_recalls_at_5_and_10_by_hand():
    # 3 images x 15 captions; own captions score 1.0 .. 0.6. Image 0: no negative above (rank 0);
    # image 1: the 5 captions of image 0 score 2 (rank 5); image 2: all 10 other captions score 2
    # (rank 10). Ranks [0, 5, 10]: R@1 = R@5 = 1/3 (5 is not < 5), R@10 = 2/3, medr 6, meanr 6.
    sims = np.zeros((3, 15))
    own = [1.0, 0.9, 0.8, 0.7, 0.6]
    for i in range(3):
        sims[i, 5 * i:5 * i + 5] = own
    sims[1, 0:5] = 2.0
    sims[2, 0:10] = 2.0
    approx({"i2t_r1": 100 / 3, "i2t_r5": 100 / 3, "i2t_r10": 200 / 3, "i2t_medr": 6, "i2t_meanr": 6},
           retrieval_metrics(sims))


def test_t2i_recalls_by_hand():
    # 12 images x 60 captions. Caption j scores its own image 0.5, d_j = j % 12 other images 1.0 and
    # the rest 0, so its rank is exactly d_j. Each value 0..11 occurs 5 times among the 60 captions:
    # R@1 = 5/60, R@5 = 25/60, R@10 = 50/60; sorted ranks hold 5 at positions 25-29 and 6 at 30-34,
    # so median = (5 + 6) / 2 = 5.5 -> medr 6; mean rank 5.5 -> meanr 6.5.
    n = 12
    sims = np.zeros((n, 5 * n))
    for j in range(5 * n):
        g = j // 5
        sims[g, j] = 0.5
        for t in range(1, j % 12 + 1):
            sims[(g + t) % n, j] = 1.0
    approx({"t2i_r1": 500 / 60, "t2i_r5": 2500 / 60, "t2i_r10": 5000 / 60,
            "t2i_medr": 6, "t2i_meanr": 6.5}, retrieval_metrics(sims))


def test_ranks_match_a_naive_per_query_sort_with_many_ties():
    rng = np.random.default_rng(3)
    for n in (1, 2, 7, 13):
        sims = rng.integers(0, 4, size=(n, 5 * n)).astype(np.float32)  # small integers: many ties
        i2t, t2i = retrieval_ranks(sims)
        ref_i2t, ref_t2i = naive_ranks(sims)
        np.testing.assert_array_equal(i2t, ref_i2t)
        np.testing.assert_array_equal(t2i, ref_t2i)


# ---------------------------------------------------------------------------------------------
# Tie rule


def test_constant_matrix_scores_worst_not_best():
    m = retrieval_metrics(np.full((4, 20), 0.5, np.float32))
    # Every item ties: i2t rank = all 15 other captions, t2i rank = all 3 other images.
    approx({"i2t_r1": 0, "i2t_r5": 0, "i2t_r10": 0, "i2t_medr": 16, "i2t_meanr": 16,
            "t2i_r1": 0, "t2i_r5": 100, "t2i_r10": 100, "t2i_medr": 4, "t2i_meanr": 4,
            "rsum": 200}, m)


def test_a_tie_with_one_negative_costs_one_rank():
    sims = np.zeros((2, 10))
    sims[0, 0] = 1.0   # image 0's caption 0 ...
    sims[0, 7] = 1.0   # ... ties with image 1's caption 7: rank 1, not 0
    sims[1, 5] = 1.0   # image 1: caption 5 alone on top: rank 0
    i2t, t2i = retrieval_ranks(sims)
    assert i2t.tolist() == [1, 0]
    # t2i: caption 0: image 0 at 1 vs image 1 at 0 -> 0. Captions 1-4: both images 0 -> tie -> 1.
    # Caption 5: image 1 at 1 vs 0 -> 0. Caption 7: image 1 at 0 < image 0 at 1 -> 1. Others tie -> 1.
    assert t2i.tolist() == [0, 1, 1, 1, 1, 0, 1, 1, 1, 1]
    assert retrieval_metrics(sims)["i2t_r1"] == 50


def test_ties_among_own_captions_only_do_not_count():
    # Each image scores its 5 captions 1 and every other caption 0: nothing non-matching ties.
    sims = np.kron(np.eye(3), np.ones((1, 5)))
    m = retrieval_metrics(sims)
    assert m["i2t_r1"] == 100 and m["t2i_r1"] == 100 and m["rsum"] == 600


# ---------------------------------------------------------------------------------------------
# 5-fold (COCO 1K) slicing


def _fold_matrix(n_img, fold, own=1.0, in_fold=0.0, across=2.0, dtype=np.float64):
    img = np.arange(n_img)[:, None]
    cap_img = (np.arange(5 * n_img) // 5)[None, :]
    sims = np.where(img // fold == cap_img // fold, in_fold, across).astype(dtype)
    sims[img == cap_img] = own
    return sims


def test_fold5_reads_only_the_diagonal_blocks():
    # 4 images, folds of 2. Inside a fold the own pair scores 1 and fold-mates 0: perfect; across
    # folds everything scores 2. Folds: all recalls 100, medr = meanr = 1, rsum 600.
    sims = _fold_matrix(4, 2)
    approx({"i2t_r1": 100, "i2t_r5": 100, "i2t_r10": 100, "i2t_medr": 1, "i2t_meanr": 1,
            "t2i_r1": 100, "t2i_r5": 100, "t2i_r10": 100, "t2i_medr": 1, "t2i_meanr": 1,
            "rsum": 600}, fold5_metrics(sims, fold_images=2))
    # The whole matrix sees the other fold: i2t rank 10 (its 10 captions score 2), t2i rank 2.
    approx({"i2t_r1": 0, "i2t_r5": 0, "i2t_r10": 0, "i2t_medr": 11, "i2t_meanr": 11,
            "t2i_r1": 0, "t2i_r5": 100, "t2i_r10": 100, "t2i_medr": 3, "t2i_meanr": 3,
            "rsum": 200}, retrieval_metrics(sims))


def test_fold5_averages_every_metric_over_folds():
    # Fold 0 perfect (rsum 600, medr = meanr = 1). Fold 1 constant 0: i2t rank 5 (5 tied
    # negatives): R@1 = R@5 = 0, R@10 = 100, medr = meanr = 6; t2i rank 1: R@1 0, R@5 = R@10 = 100,
    # medr = meanr = 2; rsum 300. Cross-fold blocks (5.0) must be ignored.
    sims = _fold_matrix(4, 2, across=5.0)
    sims[2:, 10:] = 0.0
    approx({"i2t_r1": 50, "i2t_r5": 50, "i2t_r10": 100, "i2t_medr": 3.5, "i2t_meanr": 3.5,
            "t2i_r1": 50, "t2i_r5": 100, "t2i_r10": 100, "t2i_medr": 1.5, "t2i_meanr": 1.5,
            "rsum": 450}, fold5_metrics(sims, fold_images=2))


def test_fold5_default_folds_are_1000_images():
    sims = _fold_matrix(2000, 1000, dtype=np.float32)  # 2 folds of 1000 x 5000
    assert fold5_metrics(sims)["rsum"] == 600
    assert retrieval_metrics(sims)["i2t_r10"] == 0  # the whole matrix is wrong across folds
    with pytest.raises(EvaluationError, match="multiple of 1000"):
        fold5_metrics(sims[:1500, :7500])


# ---------------------------------------------------------------------------------------------
# Extended positives


def test_extended_metrics_by_hand():
    sims = np.array([
        [0.9, 0.8, 0.1, 0.7, 0.2, 0.3, 0.6, 0.0, 0.05, 0.4],
        [0.5, 0.8, 0.3, 0.2, 0.1, 0.4, 0.0, 0.45, 0.35, 0.25]])
    # i2t query 0, positives {0, 3, 6} (R = 3): ranking c0 (P) c1 (N) c3 (P) c6 (P) ...; top 3 = P N P.
    #   mAP@R = (1/1 + 2/3) / 3 = 5/9, R-P = 2/3, R@1 = 1.
    # i2t query 1, positive {5} at 0.4; c1 .8, c0 .5, c7 .45 above it: all 0.
    # t2i caption 0 -> {0}: column (.9, .5): 1, 1, 1. Caption 1 -> {1}: column (.8, .8), a tie, the
    #   negative goes first: 0, 0, 0. Caption 3 -> {0, 1}: every item is positive: 1, 1, 1.
    m = extended_metrics(sims, [[0, 3, 6], [5]], {0: [0], 1: [1], 3: [0, 1]})
    approx({"i2t_map_at_r": 100 * (5 / 9) / 2, "i2t_r_precision": 100 * (2 / 3) / 2, "i2t_r1": 50,
            "t2i_map_at_r": 200 / 3, "t2i_r_precision": 200 / 3, "t2i_r1": 200 / 3}, m)
    # The same positives as per-query lists (empty = not a query), with duplicates: same numbers.
    t2i_lists = [[0], [1, 1], [], [1, 0], [], [], [], [], [], []]
    assert extended_metrics(sims, [[6, 0, 3, 0], [5]], t2i_lists) == pytest.approx(m)


def test_extended_ties_put_negatives_first():
    # One image, 4 captions, scores (1, 1, 1, 0), positives {1, 2}: the tied negative c0 ranks
    # first, then c1, c2. Top R=2 = N P: mAP@R = (0 + 1/2) / 2 = 25, R-P = 50, R@1 = 0.
    m = extended_metrics(np.array([[1.0, 1.0, 1.0, 0.0]]), [[1, 2]], {0: [0]})
    approx({"i2t_map_at_r": 25, "i2t_r_precision": 50, "i2t_r1": 0}, m)
    # Positives tied only with each other: full marks.
    m = extended_metrics(np.array([[1.0, 1.0, 0.0, 0.0]]), [[0, 1]], {0: [0]})
    approx({"i2t_map_at_r": 100, "i2t_r_precision": 100, "i2t_r1": 100}, m)
    # A constant matrix with one positive per query scores 0 everywhere (not 100).
    c = np.zeros((3, 15))
    m = extended_metrics(c, [[5 * i] for i in range(3)], [[j // 5] for j in range(15)])
    assert max(m.values()) == 0


def test_extended_matches_naive_reference_and_standard_r1():
    rng = np.random.default_rng(5)
    n = 12
    sims = rng.integers(0, 5, size=(n, 5 * n)).astype(np.float32)
    i2t = [np.flatnonzero(rng.random(5 * n) < 0.2) for _ in range(n)]
    t2i = [np.flatnonzero(rng.random(n) < 0.3) for _ in range(5 * n)]
    m = extended_metrics(sims, i2t, t2i)
    got = [m[k] for k in ("i2t_map_at_r", "i2t_r_precision", "i2t_r1",
                          "t2i_map_at_r", "t2i_r_precision", "t2i_r1")]
    np.testing.assert_allclose(got, naive_extended(sims, i2t) + naive_extended(sims.T, t2i), atol=1e-9)
    # With the standard positives (own captions / own image) R@1 is the standard R@1.
    own_i2t = [range(5 * i, 5 * i + 5) for i in range(n)]
    own_t2i = [[j // 5] for j in range(5 * n)]
    e, r = extended_metrics(sims, own_i2t, own_t2i), retrieval_metrics(sims)
    assert e["i2t_r1"] == pytest.approx(r["i2t_r1"]) and e["t2i_r1"] == pytest.approx(r["t2i_r1"])


def test_oracle_on_tiny_synth(tiny_synth):
    indptr, indices = load_positives(tiny_synth, "test")
    n = 40
    t2i, i2t = positive_lists(indptr, indices, n)
    assert all(j // 5 in p for j, p in enumerate(t2i))  # own pairs are positives (premise below)
    sims = np.zeros((n, 5 * n))
    sims[np.concatenate(t2i), np.repeat(np.arange(5 * n), [len(p) for p in t2i])] = 1.0
    # Every positive scores 1 and every negative 0: all positives are strictly above all
    # negatives, ties occur only among positives (which the tie rule never breaks), so each query's
    # top R are exactly its R positives: mAP@R = R-P = R@1 = 100, whatever the tie rule.
    m = extended_metrics(sims, i2t, t2i)
    assert all(v == 100 for v in m.values())
    # The standard protocol on the same matrix: a caption true of m images ties its own image with
    # m - 1 other positives (negatives for the standard protocol), so under the tie rule its t2i rank
    # is m - 1; an image that c captions are true of has i2t rank c - 5.
    m_cap = np.diff(indptr)
    c_img = np.bincount(indices, minlength=n)
    r = retrieval_metrics(sims)
    assert r["t2i_r1"] == pytest.approx(100 * np.mean(m_cap == 1))
    assert r["t2i_r5"] == pytest.approx(100 * np.mean(m_cap <= 5))
    assert r["t2i_meanr"] == pytest.approx(np.mean(m_cap))
    assert r["i2t_r1"] == pytest.approx(100 * np.mean(c_img == 5))
    assert r["i2t_meanr"] == pytest.approx(np.mean(c_img - 5) + 1)
    assert r["t2i_r1"] < 100  # the synth positives are ambiguous: the standard R@1 cannot be 100


# ---------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("sims, message", [
    (np.zeros(10), "2-D"),
    (np.zeros((2, 5, 5)), "2-D"),
    (np.zeros((2, 11)), "not a multiple of 5"),
    (np.zeros((2, 15)), "15 captions for 2 images"),
    (np.zeros((10, 2)), "transposed"),
    (np.zeros((0, 0)), "empty"),
    (np.array([["a"] * 10] * 2), "real numbers"),
    (np.where(np.eye(2, 10) > 0, np.nan, 0.0), "2 NaN"),
    (np.where(np.eye(2, 10) > 0, -np.inf, 0.0), "2 infinite"),
])
def test_bad_sims_raise_naming_the_problem(sims, message):
    for fn in (retrieval_metrics, fold5_metrics):
        with pytest.raises(EvaluationError, match=message):
            fn(sims)
    assert issubclass(EvaluationError, AahrError)


def test_nan_position_is_reported():
    sims = np.zeros((3, 15), np.float32)
    sims[2, 7] = np.nan
    with pytest.raises(EvaluationError, match="row 2, column 7"):
        retrieval_metrics(sims)
    with pytest.raises(EvaluationError, match="NaN"):
        extended_metrics(sims, [[0]] * 3, [[0]] * 15)


@pytest.mark.parametrize("i2t, t2i, message", [
    ([[0]], [[0]] * 10, "1 positive lists for 2 queries"),
    ([[0], [10]], [[0]] * 10, "outside"),
    ([[0], [0.5]], [[0]] * 10, "not integer"),
    ([[], []], [[0]] * 10, "no query has a positive"),
    ([[0], [1]], {12: [0]}, "not a row index"),
    ([[0], [1]], "abc", "expected a list"),
])
def test_bad_positives_raise(i2t, t2i, message):
    with pytest.raises(EvaluationError, match=message):
        extended_metrics(np.zeros((2, 10)), i2t, t2i)


def test_eccv_ids_are_checked():
    img_ids, cap_ids = eccv_test_ids()
    assert len(img_ids) == 5000 and len(cap_ids) == 25000
    small = np.zeros((2, 10))
    bad = cap_ids.copy()
    bad[7] = 1
    with pytest.raises(EvaluationError, match=r"1 ids are not COCO 5K test caption ids \(first at position 7"):
        eccv_metrics(small, img_ids, bad)
    swapped = cap_ids.copy()
    swapped[[100, 200]] = swapped[[200, 100]]
    with pytest.raises(EvaluationError, match="order differs .* at 2 positions .*position 100"):
        eccv_metrics(small, img_ids, swapped)
    with pytest.raises(EvaluationError, match="24995 ids given"):
        eccv_metrics(small, img_ids, cap_ids[:-5])
    with pytest.raises(EvaluationError, match="image_ids.*order differs"):
        eccv_metrics(small, img_ids[::-1], cap_ids)
    with pytest.raises(EvaluationError, match=r"shape \(2, 10\)"):
        eccv_metrics(small, img_ids, cap_ids)


# ---------------------------------------------------------------------------------------------
# Agreement with the eccv_caption package on the COCO 5K layout


def _tie_free_coco5k(boost_rows, boost_cols, seed=0):
    """A random-looking (5000, 25000) float32 matrix with every value distinct (so that no tie rule
    matters): bit patterns 1.0 + a bijective hash of the position, plus 2^27 x level on the
    boosted pairs (level 0, 1, 2 with probability .8, .1, .1) so that recalls are far from 0."""
    rng = np.random.default_rng(seed)
    a1, a2 = (np.uint32(int(x) | 1) for x in rng.integers(1, 2 ** 27, 2))
    b, mask = np.uint32(rng.integers(0, 2 ** 27)), np.uint32(2 ** 27 - 1)
    bits = np.empty((5000, 25000), np.uint32)
    for r0 in range(0, 5000, 500):
        k = (np.arange(r0, r0 + 500, dtype=np.uint32)[:, None] * np.uint32(25000)
             + np.arange(25000, dtype=np.uint32)[None, :])     # distinct, < 2^27
        k = (k * a1 + b) & mask                                # odd multiplier: a bijection mod 2^27
        k ^= k >> np.uint32(13)
        bits[r0:r0 + 500] = (k * a2) & mask
    level = rng.choice(np.array([0, 1, 2], np.uint32), size=len(boost_rows), p=[0.8, 0.1, 0.1])
    bits[boost_rows, boost_cols] += level << np.uint32(27)
    bits += np.uint32(0x3F800000)                              # positive floats >= 1.0, increasing
    return bits.view(np.float32)


@pytest.mark.slow   # among the heaviest: kept out of the quick tier
def test_agreement_with_eccv_caption_on_coco5k():
    from eccv_caption import Metrics
    from eccv_caption._metrics import compute_eccv_metrics

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pkg = Metrics()
    cap_ids = np.asarray(pkg.coco_ids)
    img_ids = np.array([pkg.coco_gts["t2i"][int(c)][0] for c in cap_ids[::5]])
    col, row = {int(c): j for j, c in enumerate(cap_ids)}, {int(i): r for r, i in enumerate(img_ids)}
    pairs = [(r, j) for j, r in enumerate(np.arange(25000) // 5)]
    for gts in (pkg.eccv_gts, pkg.cxc_gts):
        pairs += [(row[i], col[c]) for i, cs in gts["i2t"].items() for c in cs if c in col]
        pairs += [(row[i], col[c]) for c, is_ in gts["t2i"].items() for i in is_]
    rows, cols = np.array(pairs).T
    sims = _tie_free_coco5k(rows, cols)

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no tie warning: the matrix has no ties
        got = evaluate_protocols(sims, ["auto"], image_ids=img_ids, caption_ids=cap_ids)
    assert {k.split("_")[0] for k in got} == {"5k", "5fold", "eccv"}
    # COCO 5K and COCO 1K recalls: the package (fed by eccv_metrics' ranked lists) = our ranks.
    for d in ("i2t", "t2i"):
        for k in (1, 5, 10):
            assert abs(got[f"eccv_coco5k_{d}_r{k}"] - got[f"5k_{d}_r{k}"]) < 1e-6
            assert abs(got[f"eccv_coco1k_{d}_r{k}"] - got[f"5fold_{d}_r{k}"]) < 1e-6
    for k in ("5k_i2t_r1", "5k_t2i_r1", "5fold_i2t_r1", "5fold_t2i_r10"):
        assert 5 < got[k] < 95, k  # a non-trivial matrix: recalls far from 0 and 100

    # ECCV Caption: the package's own function on lists from a full argsort per query (no
    # truncation logic of ours) must give what eccv_metrics reported.
    def full_lists(scores, queries, item_ids):
        order = np.argsort(-scores, axis=1)[:, :200]  # no ties; 200 > the largest R (48)
        return {q: item_ids[o].tolist() for q, o in zip(queries, order)}

    e_i2t_q = list(pkg.eccv_gts["i2t"])
    e_t2i_q = list(pkg.eccv_gts["t2i"])
    lists_i2t = full_lists(sims[[row[i] for i in e_i2t_q]], e_i2t_q, cap_ids)
    lists_t2i = full_lists(sims[:, [col[c] for c in e_t2i_q]].T, e_t2i_q, img_ids)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = {"i2t": compute_eccv_metrics(lists_i2t, pkg.eccv_gts["i2t"]),
               "t2i": compute_eccv_metrics(lists_t2i, pkg.eccv_gts["t2i"])}
    for d in ("i2t", "t2i"):
        assert abs(got[f"eccv_{d}_map_at_r"] - 100 * ref[d]["eccv_map_at_r"]) < 1e-6
        assert abs(got[f"eccv_{d}_r_precision"] - 100 * ref[d]["eccv_rprecision"]) < 1e-6
        assert abs(got[f"eccv_{d}_r1"] - 100 * ref[d]["eccv_r1"]) < 1e-6
    assert 5 < got["eccv_i2t_map_at_r"] < 95

    # extended_metrics against the package's metric function on the ECCV ground truth. Two ECCV
    # caption positives are not in the 5K test set (the package counts them in R but can never
    # retrieve them); index positives cannot name them, so both sides use the GT without them.
    gt_i2t = {i: [c for c in cs if c in col] for i, cs in pkg.eccv_gts["i2t"].items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_i2t = compute_eccv_metrics(lists_i2t, gt_i2t)
    ext = extended_metrics(sims, {row[i]: [col[c] for c in cs] for i, cs in gt_i2t.items()},
                           {col[c]: [row[i] for i in is_] for c, is_ in pkg.eccv_gts["t2i"].items()})
    assert abs(ext["i2t_map_at_r"] - 100 * ref_i2t["eccv_map_at_r"]) < 1e-6
    assert abs(ext["i2t_r_precision"] - 100 * ref_i2t["eccv_rprecision"]) < 1e-6
    assert abs(ext["i2t_r1"] - 100 * ref_i2t["eccv_r1"]) < 1e-6
    for k, rk in (("map_at_r", "eccv_map_at_r"), ("r_precision", "eccv_rprecision"), ("r1", "eccv_r1")):
        assert abs(ext[f"t2i_{k}"] - 100 * ref["t2i"][rk]) < 1e-6
    # CxC R@1 (the package's recall) = extended R@1 on the CxC positives.
    cxc = extended_metrics(sims, {row[i]: [col[c] for c in cs] for i, cs in pkg.cxc_gts["i2t"].items()},
                           {col[c]: [row[i] for i in is_] for c, is_ in pkg.cxc_gts["t2i"].items()})
    assert abs(cxc["i2t_r1"] - got["eccv_cxc_i2t_r1"]) < 1e-6
    assert abs(cxc["t2i_r1"] - got["eccv_cxc_t2i_r1"]) < 1e-6


# ---------------------------------------------------------------------------------------------
# The command


def _files(folder):
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def test_cli_writes_numeric_metrics_ranks_and_the_matrix(tiny_synth, tmp_path, capsys):
    rng = np.random.default_rng(1)
    sims = rng.standard_normal((40, 200)).astype(np.float32)
    np.save(tmp_path / "in.npy", sims)
    out = tmp_path / "eval"
    rc = main(["evaluate", "--sims", str(tmp_path / "in.npy"), "--positives", str(tiny_synth),
               "--split", "test", "--out", str(out), "--save-sims"])
    assert rc == 0
    assert _files(out) == ["metrics.json", "ranks.npz", "sims.npy"]
    metrics = json.loads((out / "metrics.json").read_text())
    provenance = metrics.pop("provenance")     # which code and params made the file
    assert metrics.pop("evaluated") == {"split": "test", "view": "given"}
    assert len(provenance["code"]["sources_sha256"]) == 64
    assert all(type(v) in (int, float) and np.isfinite(v) for v in metrics.values())
    # 40 images: the whole-matrix protocol is named "full"; positives add "ext".
    assert set(metrics) == {f"full_{k}" for k in ALL_KEYS} | {
        f"ext_{d}_{k}" for d in ("i2t", "t2i") for k in ("map_at_r", "r_precision", "r1")}
    assert metrics["full_rsum"] == pytest.approx(retrieval_metrics(sims)["rsum"])
    t2i, i2t = positive_lists(*load_positives(tiny_synth, "test"), 40)
    assert metrics["ext_t2i_map_at_r"] == pytest.approx(extended_metrics(sims, i2t, t2i)["t2i_map_at_r"])
    np.testing.assert_array_equal(np.load(out / "sims.npy"), sims)
    ranked = np.load(out / "ranks.npz")
    i2t, t2i = retrieval_ranks(sims)
    np.testing.assert_array_equal(ranked["i2t_rank"], i2t)
    np.testing.assert_array_equal(ranked["t2i_rank"], t2i)
    np.testing.assert_array_equal(ranked["i2t_top"], np.argsort(-sims, axis=1, kind="stable")[:, :10])
    np.testing.assert_array_equal(ranked["t2i_top"], np.argsort(-sims.T, axis=1, kind="stable")[:, :10])
    assert "rsum" in capsys.readouterr().out


def test_cli_auto_adds_5fold_for_whole_thousands(tmp_path):
    sims = _fold_matrix(2000, 1000, dtype=np.float32)
    np.save(tmp_path / "in.npy", sims)
    assert main(["evaluate", "--sims", str(tmp_path / "in.npy"), "--out", str(tmp_path / "o")]) == 0
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["5fold_rsum"] == 600 and metrics["full_i2t_r10"] == 0
    assert main(["evaluate", "--sims", str(tmp_path / "in.npy"), "--protocol", "5fold",
                 "--out", str(tmp_path / "p")]) == 0
    assert set(json.loads((tmp_path / "p" / "metrics.json").read_text())) == {f"5fold_{k}" for k in ALL_KEYS} | {
        "evaluated", "provenance"}


def _bad_inputs(tmp_path, tiny_synth):
    rng = np.random.default_rng(2)
    good = rng.standard_normal((40, 200)).astype(np.float32)
    nan = good.copy()
    nan[3, 4] = np.nan
    (tmp_path / "ids.txt").write_text("1\n2\n")
    cases = {
        "nan": (nan, [], "NaN"),
        "shape": (good[:, :199], [], "not a multiple of 5"),
        "transposed": (good.T, [], "transposed"),
        "1d": (good[0], [], "2-D"),
        "5fold": (good, ["--protocol", "5fold"], "multiple of 1000"),
        "1k": (good, ["--protocol", "1k"], "1,000-image"),
        "extended": (good, ["--protocol", "extended"], "needs positives"),
        "positives": (good[:20, :100], ["--positives", str(tiny_synth), "--split", "test"],
                      "positives for 200 captions, sims has 100"),
        "split": (good, ["--positives", str(tiny_synth), "--split", "nosuch"], "not found"),
        "ids": (good, ["--image-ids", str(tmp_path / "ids.txt"),
                       "--caption-ids", str(tmp_path / "ids.txt")], "ids given"),
        "half-ids": (good, ["--image-ids", str(tmp_path / "ids.txt")], "go together"),
    }
    return cases


@pytest.mark.parametrize("case", ["nan", "shape", "transposed", "1d", "5fold", "1k", "extended",
                                  "positives", "split", "ids", "half-ids", "missing", "not-npy"])
def test_cli_bad_input_writes_nothing(case, tmp_path, tiny_synth, capsys):
    path, out = tmp_path / "in.npy", tmp_path / "eval"
    extra = []
    if case == "missing":
        message = "file not found"
    elif case == "not-npy":
        path.write_text("not numpy")
        message = "not a readable .npy"
    else:
        sims, extra, message = _bad_inputs(tmp_path, tiny_synth)[case]
        np.save(path, sims)
    rc = main(["evaluate", "--sims", str(path), "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and "Traceback" not in err
    assert _files(out) == []


def test_cli_zeroshot_evaluates_the_global_branch_embeddings(tmp_path, capsys):
    # Image i's embedding is the unit vector e_i; caption j of image i gets e_i too, except that
    # caption 5 (image 1's first) points at image 0: t2i R@1 = 9/10 captions; for image 0 that caption
    # ties with its own (score 1), and ties count against the query: i2t R@1 = 1/2 images.
    n = 2
    img = np.eye(4, dtype=np.float32)[:n]
    txt = np.repeat(img, 5, axis=0)
    txt[5] = img[0]
    np.save(tmp_path / "test_global_img.npy", img)
    np.save(tmp_path / "test_global_txt.npy", txt)
    assert main(["evaluate", "--zeroshot", str(tmp_path), "--split", "test", "--protocol", "full",
                 "--out", str(tmp_path / "out")]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["full_t2i_r1"] == pytest.approx(90.0)
    assert metrics["full_i2t_r1"] == pytest.approx(50.0)
    assert _files(tmp_path / "out") == ["metrics.json", "ranks.npz"]
    assert np.load(tmp_path / "out" / "ranks.npz")["t2i_top"].shape == (10, 2)
    assert main(["evaluate", "--zeroshot", str(tmp_path), "--out", str(tmp_path / "o2")]) == 2
    assert "need --split" in capsys.readouterr().err

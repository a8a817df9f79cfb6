"""Benchmark: vectorised COCO 5K + 5-fold (COCO 1K) evaluation against a per-query loop.

Both implement the same protocol and the same tie rule (ties broken against the query). The loop is
the VSE-infinity code shape (one sort per query, then the position of the first true item) with the
tie rule in the sort key; it is timed on every ``--step``-th query and its time extrapolated to all
queries (``--step 1`` times it on every query). The ranks of the sampled queries must be identical
in both, and so must the metrics computed from them.

Usage: python bench/bench_evaluation.py [--images 5000] [--step 10] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import tracemalloc

import numpy as np

from aahr.evaluation import fold5_metrics, metrics_from_ranks, retrieval_metrics, retrieval_ranks

CPI = 5


def loop_ranks(sims: np.ndarray, img_q: np.ndarray, cap_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-query Python loop: sort each query's scores (negatives before positives among ties)."""
    n_img, n_cap = sims.shape
    i2t = np.empty(len(img_q), np.int64)
    for out, i in enumerate(img_q):
        own = np.zeros(n_cap, bool)
        own[CPI * i:CPI * (i + 1)] = True
        order = np.lexsort((own, -sims[i]))               # decreasing score, negatives first in ties
        i2t[out] = np.flatnonzero(own[order])[0]          # the best-ranked of the 5 own captions
    t2i = np.empty(len(cap_q), np.int64)
    for out, j in enumerate(cap_q):
        own = np.arange(n_img) == j // CPI
        order = np.lexsort((own, -sims[:, j]))
        t2i[out] = np.flatnonzero(own[order])[0]
    return i2t, t2i


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--step", type=int, default=10, help="loop on every STEP-th query (1 = all)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n, step = args.images, args.step
    folds = n // 1000
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    rng = np.random.default_rng(args.seed)
    sims = rng.standard_normal((n, CPI * n), dtype=np.float32)
    mb = sims.nbytes / 2 ** 20
    print(f"matrix: {n} x {CPI * n} float32 ({mb:.0f} MB), {folds} folds of 1000 images, "
          f"{cores} CPU cores")

    # Vectorised: the public functions, timed end to end (validation included).
    tracemalloc.start()
    t0 = time.perf_counter()
    m5k = retrieval_metrics(sims)
    m1k = fold5_metrics(sims)
    t_vec = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"vectorised whole-matrix (5K) + 5-fold: {t_vec:.2f} s, peak extra memory {peak / 2 ** 20:.0f} MB "
          f"({peak / sims.nbytes:.2f}x the matrix)")
    print(f"  5K rsum {m5k['rsum']:.3f}, 5-fold rsum {m1k['rsum']:.3f}")

    # Loop on a subset of queries: every step-th image and caption, in the 5K and in each fold.
    img_q = np.arange(0, n, step)
    cap_q = np.arange(0, CPI * n, step)
    t0 = time.perf_counter()
    loop5k = loop_ranks(sims, img_q, cap_q)
    loop1k = []
    for f in range(folds):
        block = sims[f * 1000:(f + 1) * 1000, f * 5000:(f + 1) * 5000]
        loop1k.append(loop_ranks(block, np.arange(0, 1000, step), np.arange(0, 5000, step)))
    t_loop_sub = time.perf_counter() - t0
    share = (len(img_q) + len(cap_q)) / (n + CPI * n)
    t_loop = t_loop_sub / share
    how = "all queries" if step == 1 else f"{share:.0%} of the queries ({t_loop_sub:.1f} s), extrapolated"
    print(f"per-query loop whole-matrix (5K) + 5-fold: {t_loop:.1f} s ({how})")

    # Same ranks, same metrics on the sampled queries.
    vec5k = retrieval_ranks(sims)
    same = all(np.array_equal(a[q], b) for a, q, b in ((vec5k[0], img_q, loop5k[0]), (vec5k[1], cap_q, loop5k[1])))
    same &= metrics_from_ranks(vec5k[0][img_q], vec5k[1][cap_q]) == metrics_from_ranks(*loop5k)
    for f in range(folds):
        v = retrieval_ranks(sims[f * 1000:(f + 1) * 1000, f * 5000:(f + 1) * 5000])
        qi, qc = np.arange(0, 1000, step), np.arange(0, 5000, step)
        same &= np.array_equal(v[0][qi], loop1k[f][0]) and np.array_equal(v[1][qc], loop1k[f][1])
        same &= metrics_from_ranks(v[0][qi], v[1][qc]) == metrics_from_ranks(*loop1k[f])
    print(f"identical ranks and metrics on the sampled queries: {'yes' if same else 'NO'}")

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ratio = t_loop / t_vec
    print(f"process peak RSS {rss:.0f} MB (matrix {mb:.0f} MB)")
    print(f"SUMMARY: COCO 5K + 5-fold on a {n:,} x {CPI * n:,} float32 matrix, {cores} CPU cores: "
          f"vectorised {t_vec:.2f} s vs per-query loop {t_loop:.0f} s"
          f"{'' if step == 1 else f' (extrapolated from {share:.0%} of queries)'} = {ratio:.0f}x faster; "
          f"peak extra memory {peak / 2 ** 20:.0f} MB ({peak / sims.nbytes:.2f}x the matrix); "
          f"metrics identical: {'yes' if same else 'NO'}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()

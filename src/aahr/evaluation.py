"""Image-text retrieval evaluation, number for number as the field reports it.

Protocols (``docs``: /shared/spec/EVALUATION.md):

- :func:`retrieval_metrics`: the whole (N, 5N) matrix, as VSE-infinity computes it (Flickr30K 1K,
  COCO 5K): image-to-text uses the rank of the best-ranked of the image's 5 captions, text-to-image
  the rank of the caption's image; R@1/5/10 in percent, medr = floor(median(rank)) + 1,
  meanr = mean(rank) + 1 (ranks 0-based), rsum = the six recalls added.
- :func:`fold5_metrics`: COCO 1K, fold i = images [1000 i, 1000 (i+1)) x captions
  [5000 i, 5000 (i+1)), every metric averaged over the N / 1000 folds.
- :func:`extended_metrics`: mAP@R, R-Precision and R@1 for arbitrary positive sets.
- :func:`eccv_metrics`: ECCV Caption, COCO 1K / 5K and CxC through the ``eccv_caption`` package.
- :func:`evaluate_protocols`: what ``aahr evaluate`` calls (for a trained model, a saved matrix or the
  zero-shot row): several protocols on one similarity matrix, one flat dict of numbers.

Tie rule (every function computed here): **ties are broken against the query**. Among items of equal
score, every non-matching item is ranked before every matching one, so an item's 0-based rank is the
number of *non-matching* items whose score is >= its own (for text-to-image, with one matching image,
this is "every other item scoring >= it"; for image-to-text, the rank of the best of the image's 5
captions is the number of other images' captions scoring >= that caption's score). This is the worst
case over all tie-breaking orders: a constant matrix scores R@1 = 0 (never 100), and ties cannot
inflate any number. Ties among matching items only are harmless and never counted (an image whose
5 captions all score 1 and all others 0 has rank 0). Only :func:`eccv_metrics` differs: the package
needs explicit ranked lists, which break ties by score order then column index; it warns when ties
occur in the lists it receives.

Ranks are computed vectorised over chunks of rows (counts of items scoring >= the true item's
score): no Python loop over queries, and peak memory stays a small multiple of one chunk
(``_CHUNK`` elements) beyond the similarity matrix itself.
"""

from __future__ import annotations

import contextlib
import functools
import io
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from aahr.data import CAPTIONS_PER_IMAGE
from aahr.errors import AahrError

KS = (1, 5, 10)
FOLD_IMAGES = 1000
RECALL_KEYS = tuple(f"{d}_r{k}" for d in ("i2t", "t2i") for k in KS)
RETRIEVAL_KEYS = ("i2t_r1", "i2t_r5", "i2t_r10", "i2t_medr", "i2t_meanr",
                  "t2i_r1", "t2i_r5", "t2i_r10", "t2i_medr", "t2i_meanr", "rsum")
EXTENDED_KEYS = ("i2t_map_at_r", "i2t_r_precision", "i2t_r1",
                 "t2i_map_at_r", "t2i_r_precision", "t2i_r1")

# Working-set size of one chunk, in matrix elements (8 Mi: 8 MB of booleans, 32 MB of float32).
_CHUNK = 1 << 23

# Protocol name -> metrics.json key prefix (see aahr.commands.evaluate).
PROTOCOLS = ("1k", "5k", "full", "5fold", "extended", "eccv")
PREFIXES = {"1k": "1k", "5k": "5k", "full": "full", "5fold": "5fold", "extended": "ext", "eccv": "eccv"}


class EvaluationError(AahrError):
    """Evaluation input is unusable (shape, NaN/inf, positives, ids); the message names the problem."""


# ----------------------------------------------------------------------------------------------
# Validation


def check_sims(sims, captions_per_image: int | None = CAPTIONS_PER_IMAGE, *,
               name: str = "sims") -> np.ndarray:
    """Validate a similarity matrix and return it as a floating-point array (no copy if possible).

    Parameters
    ----------
    sims : array_like, shape (n_images, n_captions)
        Rows are images, columns captions.
    captions_per_image : int or None
        When given, ``n_captions`` must equal ``captions_per_image * n_images`` (caption j belongs to
        image j // captions_per_image). ``None`` accepts any 2-D shape.
    name : str
        What to call the matrix in error messages.

    Raises
    ------
    EvaluationError
        Not 2-D, empty, not numeric, the wrong number of captions, or NaN / inf values.
    """
    arr = np.asarray(sims)
    if arr.ndim != 2:
        raise EvaluationError(f"{name} must be a 2-D (images x captions) matrix, got shape {arr.shape}")
    if arr.size == 0:
        raise EvaluationError(f"{name} is empty (shape {arr.shape})")
    if arr.dtype.kind in "biu":
        arr = arr.astype(np.float64)
    elif arr.dtype.kind != "f":
        raise EvaluationError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    elif arr.dtype.itemsize < 4:
        arr = arr.astype(np.float32)
    n_img, n_cap = arr.shape
    if captions_per_image is not None:
        cpi = captions_per_image
        if n_cap != cpi * n_img:
            if n_img == cpi * n_cap:
                raise EvaluationError(
                    f"{name} has shape {arr.shape}: it looks transposed (rows must be the images, "
                    f"columns their {cpi} captions each)")
            if n_cap % cpi:
                raise EvaluationError(
                    f"{name} has {n_cap} captions (columns), not a multiple of {cpi} captions per image")
            raise EvaluationError(
                f"{name} has shape {arr.shape}: {n_cap} captions for {n_img} images, expected "
                f"{cpi * n_img} ({cpi} per image)")
    _check_finite(arr, name)
    return arr


def _check_finite(arr: np.ndarray, name: str) -> None:
    # Fast path: a float64 sum of finite float32 values cannot overflow; for float64 input an overflow
    # only sends us to the exact check below.
    if np.isfinite(np.add.reduce(arr, axis=None, dtype=np.float64)):
        return
    n_nan = n_inf = 0
    first = None
    rows = max(1, _CHUNK // arr.shape[1])
    for r0 in range(0, arr.shape[0], rows):
        block = arr[r0:r0 + rows]
        nan, inf = np.isnan(block), np.isinf(block)
        n_nan += int(nan.sum())
        n_inf += int(inf.sum())
        if first is None and (nan.any() or inf.any()):
            r, c = np.argwhere(nan | inf)[0]
            first = (r0 + int(r), int(c), arr[r0 + r, c])
    if n_nan or n_inf:
        raise EvaluationError(
            f"{name} holds {n_nan} NaN and {n_inf} infinite values (first at row {first[0]}, "
            f"column {first[1]}: {first[2]}); a similarity matrix must be finite")


# ----------------------------------------------------------------------------------------------
# Standard recalls (Flickr30K 1K, COCO 5K, COCO 1K 5-fold)


def retrieval_ranks(sims, captions_per_image: int = CAPTIONS_PER_IMAGE) -> tuple[np.ndarray, np.ndarray]:
    """0-based ranks of the true items under the tie rule (ties broken against the query).

    Parameters
    ----------
    sims : array_like, shape (N, captions_per_image * N)

    Returns
    -------
    i2t : ndarray, shape (N,), int64
        Per image, the number of other images' captions scoring >= the best of its own captions.
    t2i : ndarray, shape (captions_per_image * N,), int64
        Per caption, the number of other images scoring >= its own image.
    """
    sims = check_sims(sims, captions_per_image)
    return _ranks(sims, captions_per_image)


def _ranks(sims: np.ndarray, cpi: int) -> tuple[np.ndarray, np.ndarray]:
    n_img, n_cap = sims.shape
    own = sims[np.repeat(np.arange(n_img), cpi), np.arange(n_cap)].reshape(n_img, cpi)  # (N, cpi)
    best = own.max(axis=1)                                   # (N,) best own caption per image
    own_at_best = np.count_nonzero(own >= best[:, None], axis=1)  # own captions tied at the best
    true_col = own.reshape(-1)                               # (cpi N,) score of each caption's image
    i2t = np.empty(n_img, np.int64)
    t2i_ge = np.zeros(n_cap, np.int64)                       # images scoring >= the true one
    rows = max(1, _CHUNK // n_cap)
    for r0 in range(0, n_img, rows):
        block = sims[r0:r0 + rows]                           # (rows, cpi N)
        i2t[r0:r0 + rows] = np.count_nonzero(block >= best[r0:r0 + rows, None], axis=1)
        t2i_ge += np.count_nonzero(block >= true_col[None, :], axis=0)
    i2t -= own_at_best
    return i2t, t2i_ge - 1                                   # the true image itself is >= itself


def metrics_from_ranks(i2t_ranks: np.ndarray, t2i_ranks: np.ndarray) -> dict:
    """The field's numbers from 0-based ranks: R@1/5/10 (percent), medr, meanr, rsum."""
    out = {}
    for d, r in (("i2t", np.asarray(i2t_ranks)), ("t2i", np.asarray(t2i_ranks))):
        for k in KS:
            out[f"{d}_r{k}"] = 100.0 * float(np.count_nonzero(r < k)) / len(r)
        out[f"{d}_medr"] = float(np.floor(np.median(r)) + 1)
        out[f"{d}_meanr"] = float(r.mean() + 1)
    out["rsum"] = float(sum(out[k] for k in RECALL_KEYS))
    return {k: out[k] for k in RETRIEVAL_KEYS}


def retrieval_metrics(sims, captions_per_image: int = CAPTIONS_PER_IMAGE) -> dict:
    """Whole-matrix recalls as the VSE-infinity lineage computes them (Flickr30K 1K, COCO 5K).

    Parameters
    ----------
    sims : array_like, shape (N, captions_per_image * N)
        Image rows, caption columns; caption j belongs to image j // captions_per_image.

    Returns
    -------
    dict
        ``i2t_r1, i2t_r5, i2t_r10, i2t_medr, i2t_meanr, t2i_r1, t2i_r5, t2i_r10, t2i_medr,
        t2i_meanr, rsum``: recalls in percent, medr = floor(median(rank)) + 1,
        meanr = mean(rank) + 1 with 0-based ranks. Ties are broken against the query (module
        docstring): a constant matrix scores R@1 = 0.
    """
    return metrics_from_ranks(*retrieval_ranks(sims, captions_per_image))


def fold5_metrics(sims, captions_per_image: int = CAPTIONS_PER_IMAGE,
                  fold_images: int = FOLD_IMAGES) -> dict:
    """COCO 1K protocol: :func:`retrieval_metrics` per fold, every metric averaged over folds.

    Fold i is images [fold_images i, fold_images (i+1)) x captions
    [captions_per_image fold_images i, captions_per_image fold_images (i+1)); only these diagonal
    blocks are read. rsum is the mean of the fold rsums (= the sum of the averaged recalls).

    Parameters
    ----------
    sims : array_like, shape (N, captions_per_image * N), N a multiple of ``fold_images``
        5 folds for the COCO 5K test (N = 5000); N / fold_images folds in general.

    Raises
    ------
    EvaluationError
        N is not a whole number of folds.
    """
    sims = check_sims(sims, captions_per_image)
    n = sims.shape[0]
    if fold_images < 1 or n % fold_images:
        raise EvaluationError(
            f"the 5-fold (COCO 1K) protocol needs whole folds of {fold_images} images; sims has "
            f"{n} images, not a multiple of {fold_images}")
    f, c = fold_images, fold_images * captions_per_image
    folds = [metrics_from_ranks(*_ranks(sims[i * f:(i + 1) * f, i * c:(i + 1) * c], captions_per_image))
             for i in range(n // f)]
    return {k: float(np.mean([m[k] for m in folds])) for k in RETRIEVAL_KEYS}


# ----------------------------------------------------------------------------------------------
# Extended positives: mAP@R, R-Precision, R@1


def _positive_csr(positives, n_queries: int, n_items: int, label: str):
    """(queries (Q,), indptr (Q+1,), indices) of the queries that have at least one positive."""
    if isinstance(positives, Mapping):
        items = list(positives.items())
        for q, _ in items:
            if not isinstance(q, (int, np.integer)) or not 0 <= q < n_queries:
                raise EvaluationError(f"{label}: query {q!r} is not a row index in [0, {n_queries})")
    elif isinstance(positives, (Sequence, np.ndarray)) and not isinstance(positives, (str, bytes)):
        if len(positives) != n_queries:
            raise EvaluationError(
                f"{label}: {len(positives)} positive lists for {n_queries} queries "
                f"(one list per query expected)")
        items = list(enumerate(positives))
    else:
        raise EvaluationError(f"{label}: expected a list of index arrays or a dict, "
                              f"got {type(positives).__name__}")
    queries, arrays = [], []
    for q, p in items:
        a = np.asarray([] if p is None else p)
        if a.size == 0:
            continue
        if a.dtype.kind not in "iu":
            raise EvaluationError(f"{label}: positives of query {q} are not integer indices "
                                  f"(dtype {a.dtype})")
        queries.append(int(q))
        arrays.append(a.reshape(-1).astype(np.int64))
    if not queries:
        raise EvaluationError(f"{label}: no query has a positive")
    order = np.argsort(queries, kind="stable")
    queries = np.asarray(queries, np.int64)[order]
    arrays = [arrays[i] for i in order]
    lengths = np.array([len(a) for a in arrays])
    flat = np.concatenate(arrays)
    bad = (flat < 0) | (flat >= n_items)
    if bad.any():
        raise EvaluationError(f"{label}: {int(bad.sum())} positive indices outside [0, {n_items}) "
                              f"(e.g. {int(flat[bad][0])})")
    # Sort within each query and drop duplicates (the metrics treat positives as a set).
    owner = np.repeat(np.arange(len(queries)), lengths)
    o = np.lexsort((flat, owner))
    owner, flat = owner[o], flat[o]
    keep = np.ones(len(flat), bool)
    keep[1:] = (owner[1:] != owner[:-1]) | (flat[1:] != flat[:-1])
    owner, flat = owner[keep], flat[keep]
    indptr = np.zeros(len(queries) + 1, np.int64)
    indptr[1:] = np.cumsum(np.bincount(owner, minlength=len(queries)))
    return queries, indptr, flat


def _extended_direction(rows_of, queries: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
                        n_items: int) -> dict:
    """mAP@R, R-Precision, R@1 (fractions) averaged over ``queries``.

    ``rows_of(q)`` returns the (len(q), n_items) scores of the queries ``q``. The k-th positive of a
    query (positives by decreasing score, k = 1..R) sits at position k + neg_ge(score) under the tie
    rule, where neg_ge counts the negatives scoring >= it; it counts towards the metrics only if that
    position is <= R, so only the top R negatives per query are ever needed (np.partition).
    """
    r_all = np.diff(indptr)
    ap_sum = rp_sum = r1_sum = 0.0
    q0 = 0
    while q0 < len(queries):
        # Chunk: rows x n_items scores plus rows x 2R merge buffers within the working set.
        m0 = int(r_all[q0:q0 + max(1, _CHUNK // n_items)].max())
        q1 = min(len(queries), q0 + max(1, _CHUNK // (n_items + 2 * m0)))
        r = r_all[q0:q1]                                     # (c,) positives per query
        c, m = q1 - q0, int(r.max())
        scores = np.array(rows_of(queries[q0:q1]), order="C", copy=True)  # (c, n_items), own copy
        # Positive scores, padded to m with -inf, sorted in decreasing order.
        seg = np.repeat(np.arange(c), r)                     # query of each positive
        slot = np.arange(len(seg)) - np.repeat(indptr[q0:q1] - indptr[q0], r)
        cols = indices[indptr[q0]:indptr[q1]]
        pos = np.full((c, m), -np.inf, scores.dtype)
        pos[seg, slot] = scores[seg, cols]
        pos = -np.sort(-pos, axis=1)                         # (c, m) decreasing
        # Negatives only: positives pushed to -inf, then the top m negatives per query.
        scores[seg, cols] = -np.inf
        mm = min(m, n_items)
        top = np.partition(scores, n_items - mm, axis=1)[:, n_items - mm:] if mm < n_items else scores
        # neg_ge(x) for each positive x: count of top negatives >= x, by merging the two sorted sets.
        # Exact when < m; when it reaches m the position exceeds R anyway (m >= R).
        merged = np.concatenate([top, pos], axis=1)          # (c, mm + m)
        label = np.broadcast_to(np.r_[np.zeros(mm, np.int8), np.ones(m, np.int8)], merged.shape)
        order = np.lexsort((label, -merged), axis=1)         # decreasing score, negatives first in ties
        where = np.empty_like(order)
        np.put_along_axis(where, order, np.arange(mm + m)[None, :], axis=1)
        k = np.arange(m)[None, :]                            # 0-based index among positives
        neg_ge = where[:, mm:] - k                           # negatives before the k-th positive
        position = k + 1 + neg_ge                            # (c, m) 1-based
        valid = k < r[:, None]
        hit = valid & (position <= r[:, None])
        prec = np.where(hit, (k + 1) / position, 0.0)
        ap_sum += float((prec.sum(axis=1) / r).sum())
        rp_sum += float((hit.sum(axis=1) / r).sum())
        r1_sum += float(np.count_nonzero(position[:, 0] == 1))
        q0 = q1
    n = len(queries)
    return {"map_at_r": ap_sum / n, "r_precision": rp_sum / n, "r1": r1_sum / n}


def extended_metrics(sims, i2t_positives, t2i_positives) -> dict:
    """mAP@R, R-Precision and R@1 in both directions for arbitrary positive sets.

    For a query with R positives: mAP@R = (1/R) sum_{r=1..R} [item r is positive] precision@r;
    R-Precision = precision@R; R@1 = [the top item is a positive]. Averaged over the queries that
    have at least one positive (others are skipped), in percent. Ties are broken against the query
    (negatives before positives among equal scores); ties among positives change nothing.

    Parameters
    ----------
    sims : array_like, shape (n_images, n_captions)
        Any 2-D shape (positives need not follow the 5-captions layout).
    i2t_positives : sequence of n_images index arrays, or dict {image row: caption columns}
        The caption columns that match each image query.
    t2i_positives : sequence of n_captions index arrays, or dict {caption column: image rows}
        The image rows that match each caption query.

    Returns
    -------
    dict
        ``i2t_map_at_r, i2t_r_precision, i2t_r1, t2i_map_at_r, t2i_r_precision, t2i_r1`` (percent).
    """
    sims = check_sims(sims, None)
    n_img, n_cap = sims.shape
    out = {}
    for d, positives, n_q, n_items, rows_of in (
            ("i2t", i2t_positives, n_img, n_cap, lambda q: sims[q]),
            ("t2i", t2i_positives, n_cap, n_img, lambda q: sims[:, q].T)):
        queries, indptr, indices = _positive_csr(positives, n_q, n_items, f"{d}_positives")
        res = _extended_direction(rows_of, queries, indptr, indices, n_items)
        for k in ("map_at_r", "r_precision", "r1"):
            out[f"{d}_{k}"] = 100.0 * res[k]
    return {k: out[k] for k in EXTENDED_KEYS}


# ----------------------------------------------------------------------------------------------
# ECCV Caption (and COCO 1K / 5K, CxC) through the eccv_caption package


@functools.lru_cache(maxsize=1)
def _eccv_package():
    """(Metrics instance, caption ids (25000,), image ids (5000,)) of the package's COCO 5K test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "failed to import ujson"
        from eccv_caption import Metrics
        metrics = Metrics()
    cap_ids = np.asarray(metrics.coco_ids, np.int64)
    cap_to_img = metrics.coco_gts["t2i"]
    img_ids = np.array([cap_to_img[int(c)][0] for c in cap_ids[::CAPTIONS_PER_IMAGE]], np.int64)
    return metrics, cap_ids, img_ids


def eccv_test_ids() -> tuple[np.ndarray, np.ndarray]:
    """(image ids (5000,), caption ids (25000,)) in the order ``eccv_metrics`` requires."""
    _, cap_ids, img_ids = _eccv_package()
    return img_ids.copy(), cap_ids.copy()


def _check_ids(given, expected: np.ndarray, label: str, what: str) -> None:
    arr = np.asarray(given)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise EvaluationError(f"{label} must be a 1-D array of integer COCO {what} ids "
                              f"(got shape {arr.shape}, dtype {arr.dtype})")
    arr = arr.astype(np.int64)
    problems = []
    if len(arr) != len(expected):
        problems.append(f"{len(arr)} ids given, the COCO 5K test set has {len(expected)}")
    unknown = ~np.isin(arr, expected)
    if unknown.any():
        problems.append(f"{int(unknown.sum())} ids are not COCO 5K test {what} ids "
                        f"(first at position {int(np.argmax(unknown))}: {int(arr[unknown][0])})")
    uniq, counts = np.unique(arr, return_counts=True)
    if (counts > 1).any():
        problems.append(f"{int((counts > 1).sum())} ids repeat (e.g. {int(uniq[counts > 1][0])})")
    if not problems:
        diff = np.flatnonzero(arr != expected)
        if len(diff):
            p = int(diff[0])
            problems.append(f"the order differs from the package's coco_test_ids.npy order at "
                            f"{len(diff)} positions (first: position {p} holds {int(arr[p])}, "
                            f"expected {int(expected[p])})")
    if problems:
        raise EvaluationError(f"{label}: " + "; ".join(problems))


def _top_sorted(block: np.ndarray, length: int) -> tuple[np.ndarray, bool]:
    """Column indices of the top ``length`` scores per row, by decreasing score then column index,
    and whether a tie occurs among them or at the cut.

    A value partition finds each row's cut score (several times faster than argpartition); the
    items at or above it are then sorted (a few per row, more only where scores tie at the cut).
    """
    c, n = block.shape
    length = min(length, n)
    take = min(length + 1, n)                                # one extra to see ties at the cut
    if take < n:
        cut = np.partition(block, n - take, axis=1)[:, n - take]     # (c,) take-th largest
        r, col = np.nonzero(block >= cut[:, None])           # >= take per row, row-major
    else:
        r, col = np.divmod(np.arange(c * n), n)
    val = block[r, col]
    o = np.lexsort((col, -val, r))
    r, col, val = r[o], col[o], val[o]
    pos = np.arange(len(r)) - np.searchsorted(r, np.arange(c))[r]    # place within its row
    keep = pos < take
    idx, val = col[keep].reshape(c, take), val[keep].reshape(c, take)
    return idx[:, :length], bool((val[:, 1:] == val[:, :-1]).any())


def ranked_results(sims, top: int = 10, captions_per_image: int = CAPTIONS_PER_IMAGE) -> dict[str, np.ndarray]:
    """What a figure or a comparison needs of a similarity matrix, without keeping the matrix.

    Returns ``i2t_rank`` (N,) and ``t2i_rank`` (cpi N,): the 0-based ranks of :func:`retrieval_ranks`;
    ``i2t_top`` (N, top) caption columns and ``t2i_top`` (cpi N, top) image rows, by decreasing score
    (ties by index). A 5K x 25K float32 matrix is 477 MB; these arrays are 2.6 MB (0.7 MB compressed).
    """
    sims = check_sims(sims, captions_per_image)
    i2t, t2i = _ranks(sims, captions_per_image)
    n_img, n_cap = sims.shape
    i2t_top = np.empty((n_img, min(top, n_cap)), np.int64)
    t2i_top = np.empty((n_cap, min(top, n_img)), np.int64)
    rows = max(1, _CHUNK // n_cap)
    for r0 in range(0, n_img, rows):
        i2t_top[r0:r0 + rows] = _top_sorted(np.ascontiguousarray(sims[r0:r0 + rows]), top)[0]
    cols = max(1, _CHUNK // n_img)
    for c0 in range(0, n_cap, cols):
        t2i_top[c0:c0 + cols] = _top_sorted(np.ascontiguousarray(sims[:, c0:c0 + cols].T), top)[0]
    return {"i2t_rank": i2t, "t2i_rank": t2i, "i2t_top": i2t_top, "t2i_top": t2i_top}


def _ranked_lists(sims: np.ndarray, length: int, fold_rows: int, fold_cols: int, k: int,
                  item_ids: np.ndarray) -> tuple[list, bool]:
    """Per row of ``sims`` (queries x items): item ids by decreasing score, the top ``length``
    followed by the top ``k`` of the query's own fold not already listed (so that the package's
    COCO 1K filter sees exact fold rankings). Returns (lists, whether tied scores were seen)."""
    n_q, n_items = sims.shape
    out, ties = [], False
    rows = max(1, _CHUNK // n_items)
    for q0 in range(0, n_q, rows):
        block = np.ascontiguousarray(sims[q0:q0 + rows])   # (c, n_items)
        c = len(block)
        idx, t = _top_sorted(block, length)
        ties |= t
        # The query's own fold: fold f holds queries [f fold_rows, ...) and items [f fold_cols, ...).
        fold = (q0 + np.arange(c)) // fold_rows
        fcols = fold[:, None] * fold_cols + np.arange(fold_cols)[None, :]     # (c, fold_cols)
        fi, t = _top_sorted(np.take_along_axis(block, fcols, axis=1), k)
        ties |= t
        fidx = np.take_along_axis(fcols, fi, axis=1)                          # (c, <= k)
        missing = ~(fidx[:, :, None] == idx[:, None, :]).any(axis=2)           # (c, kk)
        ids, fids = item_ids[idx], item_ids[fidx]
        for r in range(c):  # building the package's Python lists (not a metric computation)
            out.append(ids[r].tolist() + fids[r][missing[r]].tolist())
    return out, ties


def eccv_metrics(sims, image_ids, caption_ids, *, ks: Sequence[int] = KS) -> dict:
    """ECCV Caption mAP@R, R-Precision, R@1 plus COCO 1K / 5K and CxC recalls (``eccv_caption``).

    Parameters
    ----------
    sims : array_like, shape (5000, 25000)
        The COCO 5K test matrix.
    image_ids : array_like of int, shape (5000,)
        COCO image id of each row; must be the package's test images in its order.
    caption_ids : array_like of int, shape (25000,)
        COCO caption id of each column; must equal the package's ``coco_test_ids.npy`` (5
        consecutive captions per image).

    Returns
    -------
    dict (percent)
        ``i2t_map_at_r, i2t_r_precision, i2t_r1, t2i_map_at_r, t2i_r_precision, t2i_r1`` (ECCV
        Caption), ``coco1k_{i2t,t2i}_r{K}`` and ``coco1k_rsum``, the same for ``coco5k`` and ``cxc``.

    Notes
    -----
    The package receives, per query, the top max(max(ks), largest ECCV R) ids followed by the top
    max(ks) ids of the query's COCO 1K fold, which makes its COCO 1K, 5K, CxC and ECCV numbers
    equal to those of full rankings (and avoids version 0.1.0's IndexError on truncated lists).
    Ties are broken by column index here, not against the query; a warning says when they occur.
    """
    sims = check_sims(sims, CAPTIONS_PER_IMAGE)
    metrics, cap_ids, img_ids = _eccv_package()
    _check_ids(caption_ids, cap_ids, "caption_ids", "caption")
    _check_ids(image_ids, img_ids, "image_ids", "image")
    if sims.shape != (len(img_ids), len(cap_ids)):
        raise EvaluationError(f"sims has shape {sims.shape}, the ids describe "
                              f"({len(img_ids)}, {len(cap_ids)})")
    kmax = max(ks)
    eccv = metrics.eccv_gts
    len_i2t = max(kmax, max(len(set(v)) for v in eccv["i2t"].values()))
    len_t2i = max(kmax, max(len(set(v)) for v in eccv["t2i"].values()))
    n_folds = len(cap_ids) // (CAPTIONS_PER_IMAGE * FOLD_IMAGES)
    fi, fc = len(img_ids) // n_folds, len(cap_ids) // n_folds
    i2t_lists, ties_a = _ranked_lists(sims, len_i2t, fi, fc, kmax, cap_ids)
    t2i_lists, ties_b = _ranked_lists(sims.T, len_t2i, fc, fi, kmax, img_ids)
    if ties_a or ties_b:
        warnings.warn("eccv_metrics: tied similarity scores; the eccv_caption package breaks them by "
                      "column order, not against the query as the other metrics here do",
                      RuntimeWarning, stacklevel=2)
    i2t = dict(zip(img_ids.tolist(), i2t_lists))
    t2i = dict(zip(cap_ids.tolist(), t2i_lists))
    targets = ("eccv_map_at_r", "eccv_rprecision", "eccv_r1",
               "coco_1k_recalls", "coco_5k_recalls", "cxc_recalls")
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):  # tqdm bars
        warnings.simplefilter("ignore")
        res = metrics.compute_all_metrics(i2t, t2i, target_metrics=targets, Ks=tuple(ks),
                                          verbose=False)
    out = {}
    for d in ("i2t", "t2i"):
        out[f"{d}_map_at_r"] = 100.0 * float(res["eccv_map_at_r"][d])
        out[f"{d}_r_precision"] = 100.0 * float(res["eccv_rprecision"][d])
        out[f"{d}_r1"] = 100.0 * float(res["eccv_r1"][d])
    for name, key in (("coco1k", "coco_1k"), ("coco5k", "coco_5k"), ("cxc", "cxc")):
        for d in ("i2t", "t2i"):
            for k in ks:
                out[f"{name}_{d}_r{k}"] = 100.0 * float(res[f"{key}_r{k}"][d])
        out[f"{name}_rsum"] = sum(out[f"{name}_{d}_r{k}"] for d in ("i2t", "t2i") for k in ks)
    return out


# ----------------------------------------------------------------------------------------------
# The protocol driver


def resolve_protocols(protocols: Sequence[str], n_images: int, *, have_positives: bool,
                      have_ids: bool) -> list[str]:
    """Expand ``auto`` and check that each requested protocol applies; returns them in order.

    ``auto``: the whole-matrix protocol (``1k`` for 1,000 images, ``5k`` for 5,000, else ``full``),
    ``5fold`` when N is a multiple of 1,000 and >= 2,000, ``extended`` with positives, ``eccv`` with ids.
    """
    chosen = []
    for p in protocols:
        if p == "auto":
            chosen.append({1000: "1k", 5000: "5k"}.get(n_images, "full"))
            if n_images >= 2 * FOLD_IMAGES and n_images % FOLD_IMAGES == 0:
                chosen.append("5fold")
            if have_positives:
                chosen.append("extended")
            if have_ids:
                chosen.append("eccv")
        elif p in PROTOCOLS:
            chosen.append(p)
        else:
            raise EvaluationError(f"unknown protocol {p!r} (choose from {', '.join(PROTOCOLS)}, auto)")
    chosen = [p for p in PROTOCOLS if p in chosen]  # canonical order, no repeats
    for p in chosen:
        if p == "1k" and n_images != 1000:
            raise EvaluationError(f"protocol 1k evaluates a whole 1,000-image matrix; sims has "
                                  f"{n_images} images (use 'full' for any size, '5fold' for COCO 1K)")
        if p == "5k" and n_images != 5000:
            raise EvaluationError(f"protocol 5k evaluates a whole 5,000-image matrix; sims has "
                                  f"{n_images} images (use 'full' for any size)")
        if p == "5fold" and n_images % FOLD_IMAGES:
            raise EvaluationError(f"protocol 5fold needs a multiple of {FOLD_IMAGES} images; sims has "
                                  f"{n_images}")
        if p == "extended" and not have_positives:
            raise EvaluationError("protocol extended needs positives (--positives DIR --split NAME)")
        if p == "eccv" and not have_ids:
            raise EvaluationError("protocol eccv needs image and caption ids "
                                  "(--image-ids FILE --caption-ids FILE)")
    return chosen


def evaluate_protocols(sims, protocols: Sequence[str] = ("auto",), *, positives=None,
                       image_ids=None, caption_ids=None,
                       captions_per_image: int = CAPTIONS_PER_IMAGE) -> dict:
    """Every requested protocol on one similarity matrix: a flat dict of numbers.

    What ``aahr evaluate`` calls on a trained model's (N, 5N) test similarity matrix, a saved one
    (``--sims``) or the global branch's (``--zeroshot``).

    Parameters
    ----------
    sims : array_like, shape (N, captions_per_image * N)
    protocols : names from ``PROTOCOLS`` or ``auto`` (see :func:`resolve_protocols`)
    positives : (i2t_positives, t2i_positives) or None
        As for :func:`extended_metrics`.
    image_ids, caption_ids : array_like of int or None
        As for :func:`eccv_metrics`.

    Returns
    -------
    dict
        ``{prefix}_{key}`` for every metric of every protocol, prefix from ``PREFIXES``
        (``1k_rsum``, ``5fold_t2i_r1``, ``ext_i2t_map_at_r``, ``eccv_coco1k_rsum``, ...).
        Every input is validated before anything is computed.
    """
    sims = check_sims(sims, captions_per_image)
    if (image_ids is None) != (caption_ids is None):
        raise EvaluationError("the eccv protocol needs both image ids and caption ids")
    chosen = resolve_protocols(protocols, sims.shape[0], have_positives=positives is not None,
                               have_ids=image_ids is not None)
    if "eccv" in chosen:  # check ids up front: fail before any long computation
        _, cap_ids, img_ids = _eccv_package()
        _check_ids(caption_ids, cap_ids, "caption_ids", "caption")
        _check_ids(image_ids, img_ids, "image_ids", "image")
    if "extended" in chosen:
        n_img, n_cap = sims.shape
        _positive_csr(positives[0], n_img, n_cap, "i2t_positives")
        _positive_csr(positives[1], n_cap, n_img, "t2i_positives")
    out, whole = {}, None
    for p in chosen:
        if p in ("1k", "5k", "full"):
            whole = whole or retrieval_metrics(sims, captions_per_image)
            res = whole
        elif p == "5fold":
            res = fold5_metrics(sims, captions_per_image)
        elif p == "extended":
            res = extended_metrics(sims, *positives)
        else:
            res = eccv_metrics(sims, image_ids, caption_ids)
        out.update({f"{PREFIXES[p]}_{k}": float(v) for k, v in res.items()})
    return out

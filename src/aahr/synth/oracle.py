"""The truth oracle: a perfect scene matcher without priors, scored on the standard metrics.

The oracle knows exactly which images satisfy each caption (the extended positives) and scores
them all equally; among tied items it can only guess, so its recalls are expectations under a
uniformly random order of the tied positives (exact, in closed form):

- text-to-image, a caption with m positive images: P(its own image in the top K) = min(K, m) / m;
- image-to-text, an image that c captions are true of (its own 5 among them): P(one of its own 5
  in the top K) = 1 - C(c - 5, K) / C(c, K).

It is not a ceiling. The standard metrics reward finding the one image a caption was written for,
and a trained model can learn the caption writer's priors (a caption naming two shapes was more
likely written for a scene with few shapes than for a crowded one it is also true of); converged
models pass the oracle. What it measures is how much of the standard metrics' gap is ambiguity that
perfect understanding alone cannot close; the extended-positive metrics (mAP@R, R-Precision), on
which it scores 100, are the ones that judge understanding. (ceiling.json keeps its file name.)
"""

from __future__ import annotations

import numpy as np

KS = (1, 5, 10)


def i2t_recall(c: np.ndarray, own: int, k: int) -> np.ndarray:
    """P(one of ``own`` true captions is in the top k of c tied positives), per image."""
    miss = np.ones(len(c))
    for t in range(k):  # C(c - own, k) / C(c, k) = prod_t (c - own - t) / (c - t)
        miss *= np.clip(c - own - t, 0, None) / np.maximum(c - t, 1)
    return 1.0 - miss


def t2i_recall(m: np.ndarray, k: int) -> np.ndarray:
    """P(the caption's own image is in the top k of its m tied positive images), per caption."""
    return np.minimum(k, m) / m


def oracle_recalls(indptr: np.ndarray, indices: np.ndarray, n_images: int,
                   captions_per_image: int = 5) -> dict:
    """Expected R@1/5/10 (percent) and rsum of the oracle on one image set.

    ``indptr`` / ``indices``: CSR of each caption's positive images (row indices), caption j
    belonging to image j // captions_per_image.
    """
    n_caps = len(indptr) - 1
    if n_caps != n_images * captions_per_image:
        raise ValueError(f"{n_caps} captions for {n_images} images x {captions_per_image}")
    m = np.diff(indptr)  # positives per caption
    c = np.bincount(indices, minlength=n_images)  # captions true of each image
    out = {}
    for k in KS:
        out[f"i2t_r{k}"] = 100.0 * float(i2t_recall(c, captions_per_image, k).mean())
    for k in KS:
        out[f"t2i_r{k}"] = 100.0 * float(t2i_recall(m, k).mean())
    out["rsum"] = sum(out[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in KS)
    return out


def restrict(indptr: np.ndarray, indices: np.ndarray, images: slice, captions_per_image: int = 5):
    """The CSR positives of the sub-protocol on images [start, stop) and their captions."""
    start, stop = images.start, images.stop
    rows = range(start * captions_per_image, stop * captions_per_image)
    new_rows = []
    for j in rows:
        r = indices[indptr[j]:indptr[j + 1]]
        new_rows.append(r[(r >= start) & (r < stop)] - start)
    new_ptr = np.zeros(len(new_rows) + 1, np.int64)
    new_ptr[1:] = np.cumsum([len(r) for r in new_rows])
    return new_ptr, np.concatenate(new_rows).astype(np.int32)


def ceiling(indptr: np.ndarray, indices: np.ndarray, n_images: int, captions_per_image: int = 5) -> dict:
    """Oracle recalls for every protocol that applies to a split of ``n_images`` images:
    ``full`` (all images: COCO 5K style) and, for 2,000+ images in whole thousands, ``1k_folds``
    (COCO 1K: mean over folds of 1,000 images)."""
    out = {"full": oracle_recalls(indptr, indices, n_images, captions_per_image)}
    if n_images >= 2000 and n_images % 1000 == 0:
        folds = [oracle_recalls(*restrict(indptr, indices, slice(f * 1000, (f + 1) * 1000),
                                          captions_per_image), 1000, captions_per_image)
                 for f in range(n_images // 1000)]
        out["1k_folds"] = {k: float(np.mean([f[k] for f in folds])) for k in folds[0]}
    return out

"""Readers for the field's raw / precomp layout (shared by synth and the real datasets).

Per split: ``{split}_caps.txt`` (5 consecutive lines per image), ``{split}_ids.txt`` (one image id
per line) and, for synth, ``{split}_positives.npz`` (exact extended positives, CSR over captions).
Every reader validates and names the offending file (and line) when something is wrong.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aahr.errors import AahrError

CAPTIONS_PER_IMAGE = 5


class DataError(AahrError):
    """A dataset file is missing or malformed; the message names the file."""


def _need(path: Path) -> Path:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    return path


def read_ids(folder: str | Path, split: str) -> np.ndarray:
    """(N,) int64 image ids of ``split``."""
    path = _need(Path(folder) / f"{split}_ids.txt")
    ids = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        try:
            ids.append(int(line.strip()))
        except ValueError:
            raise DataError(f"{path}, line {n}: not an integer image id: {line!r}") from None
    if not ids:
        raise DataError(f"{path}: no image ids")
    return np.array(ids, np.int64)


def read_captions(folder: str | Path, split: str, n_images: int | None = None) -> list[str]:
    """The 5 N captions of ``split``; caption i belongs to image i // 5."""
    path = _need(Path(folder) / f"{split}_caps.txt")
    caps = path.read_text().splitlines()
    for n, c in enumerate(caps, 1):
        if not c.strip():
            raise DataError(f"{path}, line {n}: empty caption")
    if len(caps) % CAPTIONS_PER_IMAGE:
        raise DataError(f"{path}: {len(caps)} captions is not a multiple of {CAPTIONS_PER_IMAGE}")
    if n_images is not None and len(caps) != CAPTIONS_PER_IMAGE * n_images:
        raise DataError(f"{path}: {len(caps)} captions for {n_images} images "
                        f"(expected {CAPTIONS_PER_IMAGE} per image)")
    return caps


def load_positives(folder: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """CSR extended positives: caption j is truly matched by images ``indices[indptr[j]:indptr[j+1]]``
    (row indices into the split's image order)."""
    path = _need(Path(folder) / f"{split}_positives.npz")
    with np.load(path) as z:
        if set(z.files) != {"indptr", "indices"}:
            raise DataError(f"{path}: expected arrays 'indptr' and 'indices', found {sorted(z.files)}")
        return z["indptr"], z["indices"]


def positive_lists(indptr: np.ndarray, indices: np.ndarray, n_images: int) -> tuple[list, list]:
    """(t2i, i2t): per caption the positive image rows; per image the positive caption rows."""
    t2i = [indices[indptr[j]:indptr[j + 1]] for j in range(len(indptr) - 1)]
    caption_of = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    order = np.argsort(indices, kind="stable")
    bounds = np.searchsorted(indices[order], np.arange(n_images + 1))
    i2t = [caption_of[order[bounds[i]:bounds[i + 1]]] for i in range(n_images)]
    return t2i, i2t

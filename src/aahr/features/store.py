"""Feature files in the field's precomp layout: atomic writing and validated memory-mapped loading.

Per split, in the precomp folder:

    {split}_ims.npy          float32 (N, K, D)   region features (K regions per image)
    {split}_boxes.npy        float32 (N, K, 4)   region boxes, x0 y0 x1 y1 in the image's pixels
    {split}_global_img.npy   float32 (N, Dg)     frozen global image embeddings (L2-normalised)
    {split}_global_txt.npy   float32 (5N, Dg)    frozen global caption embeddings (L2-normalised)

Large arrays are filled in place through a memory map on a temporary file beside the target and
renamed onto it only when complete (a crash leaves the previous file or none, never half of one).
Loaders memory-map (a real training split is tens of GB) and name the file in every error.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from aahr.data import CAPTIONS_PER_IMAGE
from aahr.errors import AahrError
from aahr.io import atomic_path



class FeatureError(AahrError):
    """A feature file is missing or has the wrong dtype / shape; the message names the file."""


def ims_path(folder: str | Path, split: str) -> Path:
    return Path(folder) / f"{split}_ims.npy"


def boxes_path(folder: str | Path, split: str) -> Path:
    return Path(folder) / f"{split}_boxes.npy"


def global_img_path(folder: str | Path, split: str) -> Path:
    return Path(folder) / f"{split}_global_img.npy"


def global_txt_path(folder: str | Path, split: str) -> Path:
    return Path(folder) / f"{split}_global_txt.npy"


@contextlib.contextmanager
def npy_writer(path: str | Path, shape: Sequence[int], dtype=np.float32) -> Iterator[np.ndarray]:
    """Yield a writable memory-mapped ``.npy`` array that appears at ``path`` only if the block succeeds.

    The array lives in a temporary file beside ``path`` (aahr.io.atomic_path), so arrays larger than
    memory can be written batch by batch; on an exception the temporary file is removed.
    """
    with atomic_path(path) as tmp:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=tuple(shape))
        yield array
        array.flush()  # on POSIX the map may stay open across the rename; it follows the file


def load_array(path: str | Path, ndim: int, shape: Sequence[int | None] | None = None,
               dtype=np.float32, mmap: bool = True) -> np.ndarray:
    """Memory-map ``path`` and check its dtype, number of axes and (where not None) axis sizes."""
    path = Path(path)
    if not path.is_file():
        raise FeatureError(f"{path}: file not found")
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise FeatureError(f"{path}: not a readable .npy array ({exc})") from None
    if array.dtype != np.dtype(dtype):
        raise FeatureError(f"{path}: dtype {array.dtype}, expected {np.dtype(dtype)}")
    if array.ndim != ndim:
        raise FeatureError(f"{path}: shape {array.shape} has {array.ndim} axes, expected {ndim}")
    if shape is not None:
        for axis, (got, want) in enumerate(zip(array.shape, shape)):
            if want is not None and got != want:
                raise FeatureError(f"{path}: shape {array.shape}, expected {want} along axis {axis} "
                                   f"(expected shape {tuple('*' if w is None else w for w in shape)})")
    if 0 in array.shape:
        raise FeatureError(f"{path}: empty array of shape {array.shape}")
    return array


def load_regions(folder: str | Path, split: str, n_images: int | None = None,
                 with_boxes: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Memory-mapped ``{split}_ims.npy`` (N, K, D) and, if present or asked for, ``{split}_boxes.npy``
    (N, K, 4); ``n_images`` (e.g. the length of ``{split}_ids.txt``) is checked when given."""
    ims = load_array(ims_path(folder, split), 3, (n_images, None, None))
    boxes = None
    if with_boxes:
        boxes = load_array(boxes_path(folder, split), 3, (ims.shape[0], ims.shape[1], 4))
    return ims, boxes


def load_global(folder: str | Path, split: str, n_images: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Memory-mapped global embeddings: images (N, Dg) and captions (5N, Dg)."""
    img = load_array(global_img_path(folder, split), 2, (n_images, None))
    n = img.shape[0]
    txt = load_array(global_txt_path(folder, split), 2, (CAPTIONS_PER_IMAGE * n, img.shape[1]))
    return img, txt

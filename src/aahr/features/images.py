"""A split's images in the order of ``{split}_ids.txt`` (the row order of every feature file).

Files come from ``id_mapping.json`` ({image id: file relative to the image root}), as in the field's
Flickr30K package and in synth's raw folder. Small synth splits are decoded into one uint8 array;
real photos are streamed in batches.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from aahr.data import DataError, read_ids


def available_splits(folder: str | Path, order=("pretrain", "train", "dev", "test", "testall")) -> list[str]:
    """Splits with a ``{split}_ids.txt`` in ``folder``, in pipeline order."""
    folder = Path(folder)
    known = [s for s in order if (folder / f"{s}_ids.txt").is_file()]
    other = sorted(p.name[:-len("_ids.txt")] for p in folder.glob("*_ids.txt")
                   if p.name[:-len("_ids.txt")] not in order)
    return known + other


def image_files(folder: str | Path, split: str, image_root: str | Path | None = None) -> list[Path]:
    """Image paths of ``split`` in id order, resolved through ``id_mapping.json`` in ``folder`` or,
    for a folder named ``precomp``, beside it (the canonical layout; aahr.paths.id_mapping_candidates)."""
    from aahr.paths import find_id_mapping, id_mapping_candidates

    folder = Path(folder)
    root = Path(image_root) if image_root is not None else folder
    mapping_file = find_id_mapping(folder)
    if mapping_file is None:
        looked = " nor ".join(str(p) for p in id_mapping_candidates(folder))
        raise DataError(f"id_mapping.json: file not found: neither {looked} exists (needed to find the "
                        f"images of {split})" if " nor " in looked else
                        f"{looked}: file not found (needed to find the images of {split})")
    try:
        mapping = json.loads(mapping_file.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{mapping_file}: not valid JSON: {exc}") from None
    files = []
    for iid in read_ids(folder, split):
        name = mapping.get(str(iid))
        if name is None:
            raise DataError(f"{mapping_file}: no file for image id {iid} of {folder / f'{split}_ids.txt'}")
        files.append(root / name)
    return files


def open_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None


def read_image_array(files: list[Path], progress: bool = False, desc: str = "images") -> np.ndarray:
    """Decode same-sized images into one uint8 array (N, H, W, 3); a size mismatch names the file."""
    first = np.asarray(open_rgb(files[0]))
    out = np.empty((len(files),) + first.shape, np.uint8)  # (N, H, W, 3)
    out[0] = first
    for i in tqdm(range(1, len(files)), desc=desc, unit="img", disable=not progress, mininterval=1.0,
                  leave=False):
        a = np.asarray(open_rgb(files[i]))
        if a.shape != first.shape:
            raise DataError(f"{files[i]}: image of shape {a.shape}, expected {first.shape} like {files[0]}")
        out[i] = a
    return out


def iter_image_batches(files: list[Path], batch_size: int) -> Iterator[list[Image.Image]]:
    """PIL images in order, ``batch_size`` at a time (real photos have different sizes)."""
    for start in range(0, len(files), batch_size):
        yield [open_rgb(f) for f in files[start:start + batch_size]]

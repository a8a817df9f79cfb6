"""Small helpers shared by the feature stages: devices, seeding, batching, recall and weights files."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from aahr.errors import AahrError



class DeviceError(AahrError):
    """The requested device is not available."""


class MissingWeightsError(AahrError):
    """A pretrained model needs a local weights file that is not there (no downloads in the pipeline)."""


def pick_device(name: str = "auto") -> torch.device:
    """'auto' = cuda when available, else cpu; an explicit 'cuda' without a GPU is an error, not a fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise DeviceError(f"--device {name}: {exc}") from None


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch, numpy and random; return a CPU generator for data order and augmentation, so
    the sequence of batches depends on ``seed`` alone (not on what ran before in the process)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def batches(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices covering range(n) in order."""
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def box_geometry(boxes: np.ndarray, height_width: np.ndarray) -> np.ndarray:
    """boxes (B, K, 4) x0 y0 x1 y1 in pixels, height_width (B, 2) -> (B, K, 5) float32: the box as
    fractions of its image's width / height, and its area as a fraction of the image. Appended to
    region features so that "left of" / "above" are visible to a model that sees only the features."""
    hw = np.asarray(height_width, np.float32).reshape(-1, 1, 2)
    scale = np.concatenate([hw[..., ::-1], hw[..., ::-1]], -1)               # (B, 1, 4): w h w h
    rel = np.asarray(boxes, np.float32) / scale
    area = (rel[..., 2] - rel[..., 0]) * (rel[..., 3] - rel[..., 1])
    return np.concatenate([rel, area[..., None]], -1).astype(np.float32)


def fingerprint(*parts) -> str:
    """A short hash of arrays / strings: a saved model is reused only for the very data it saw."""
    import hashlib

    h = hashlib.blake2b(digest_size=12)
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(str((part.dtype.str, part.shape)).encode())
            h.update(np.ascontiguousarray(part).data)
        else:
            h.update(str(part).encode())
        h.update(b"\0")
    return h.hexdigest()


def require_weights(path: str | Path | None, what: str, how: str) -> Path:
    """Return ``path`` if it is an existing file, else raise MissingWeightsError saying how to get it."""
    if path is None:
        raise MissingWeightsError(f"{what}: no weights file given. {how}")
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(f"{what}: weights file not found: {path}. {how}")
    return path


def save_stage(path: Path, payload: dict, meta: dict) -> None:
    """Save a trained extractor (state dict + ``meta``: config, seed, data fingerprint, metrics)
    atomically, with ``meta`` readable beside it as JSON."""
    from aahr.io import save_torch, split_timing, write_output_json

    save_torch(path, dict(payload, meta=split_timing(meta)[0]))
    write_output_json(path.with_suffix(".json"), meta)


def load_stage(path: Path, want: dict) -> dict | None:
    """The checkpoint saved by :func:`save_stage` if its meta matches ``want`` on every key of
    ``want`` (same settings, seed and data), else None. Never executes code from the file."""
    import json

    if not path.is_file():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # unreadable or from another version: retrain rather than fail
        return None
    meta = ckpt.get("meta", {})
    if json.dumps({k: meta.get(k) for k in want}, sort_keys=True) != json.dumps(want, sort_keys=True):
        return None
    return ckpt

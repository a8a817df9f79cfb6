"""Small helpers shared by the feature stages: devices, seeding, batching, recall and weights files."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from aahr.errors import AahrError

CAPTIONS_PER_IMAGE = 5


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


@torch.no_grad()
def retrieval_recalls(img: np.ndarray, txt: np.ndarray, ks=(1, 5, 10), chunk: int = 1024) -> dict:
    """The field's recalls (percent) for ``img`` (N, D) against ``txt`` (5N, D), caption i of image i // 5.

    Similarity is the dot product. Ties count against the query (a negative scoring equal to the
    best positive ranks above it), so a constant similarity matrix scores R@1 = 0, not 100.
    The (N, 5N) matrix is never held whole: it is computed in chunks of ``chunk`` rows.
    """
    img_t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))
    txt_t = torch.from_numpy(np.ascontiguousarray(txt, dtype=np.float32))
    n = img_t.shape[0]
    if txt_t.shape[0] != CAPTIONS_PER_IMAGE * n:
        raise ValueError(f"{txt_t.shape[0]} captions for {n} images (expected {CAPTIONS_PER_IMAGE} per image)")
    own = torch.arange(CAPTIONS_PER_IMAGE * n) // CAPTIONS_PER_IMAGE  # (5N,) image of each caption
    i2t_rank = torch.empty(n, dtype=torch.long)
    for s in batches(n, chunk):
        sims = img_t[s] @ txt_t.T                                     # (b, 5N)
        pos = own[None, :] == torch.arange(s.start, s.stop)[:, None]  # (b, 5N) own captions
        best = sims.masked_fill(~pos, -torch.inf).amax(1, keepdim=True)  # (b, 1)
        i2t_rank[s] = ((sims >= best) & ~pos).sum(1)
    t2i_rank = torch.empty(CAPTIONS_PER_IMAGE * n, dtype=torch.long)
    for s in batches(CAPTIONS_PER_IMAGE * n, chunk):
        sims = txt_t[s] @ img_t.T                                     # (b, N)
        mine = own[s]
        score = sims.gather(1, mine[:, None])                         # (b, 1)
        neg = torch.ones_like(sims, dtype=torch.bool).scatter_(1, mine[:, None], False)
        t2i_rank[s] = ((sims >= score) & neg).sum(1)
    out = {}
    for name, rank in (("i2t", i2t_rank), ("t2i", t2i_rank)):
        for k in ks:
            out[f"{name}_r{k}"] = 100.0 * float((rank < k).double().mean())
    out["rsum"] = sum(v for key, v in out.items() if key != "rsum")
    return out


def save_trained(path: Path, payload: dict, meta: dict) -> None:
    """Save a trained extractor (state dict + ``meta``: config, seed, data fingerprint, metrics)
    atomically, with ``meta`` readable beside it as JSON."""
    from aahr.io import atomic_path, write_json

    with atomic_path(path) as tmp:
        torch.save(dict(payload, meta=meta), tmp)
    write_json(path.with_suffix(".json"), meta)


def load_trained(path: Path, want: dict) -> dict | None:
    """The checkpoint saved by :func:`save_trained` if its meta matches ``want`` on every key of
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

"""Random precomp features beside the tiny synth captions, for the model and training tests."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import yaml

from conftest import ROOT

REGIONS, REGION_DIM, GLOBAL_DIM = 6, 12, 8


def tiny_train_params(**train) -> dict:
    """tests/configs/tiny.yaml with a tiny BiGRU text backbone (word 16, hidden 16)."""
    from aahr.config import validate_params

    params = copy.deepcopy(yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text()))
    params["text"].update(backbone="bigru", word_dim=16, gru_hidden=16, max_tokens=16)
    params["train"].update(train)
    return validate_params(params, "tiny")


def write_tiny_features(raw: Path, root: Path, seed: int = 0) -> Path:
    """Copy the captions of ``raw`` into ``root/synth/raw`` and write random region and global
    features of the right shapes into ``root/synth/precomp``; returns ``root`` (the data_root)."""
    rng = np.random.default_rng(seed)
    raw_out, pre = root / "synth" / "raw", root / "synth" / "precomp"
    raw_out.mkdir(parents=True, exist_ok=True)
    pre.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev", "test"):
        shutil.copy(raw / f"{split}_caps.txt", raw_out / f"{split}_caps.txt")
        if (raw / f"{split}_positives.npz").is_file():          # synth's exact positives (false negatives)
            shutil.copy(raw / f"{split}_positives.npz", raw_out / f"{split}_positives.npz")
        n = len((raw / f"{split}_caps.txt").read_text().splitlines()) // 5
        # image i's features carry a signal its captions' global embeddings share, so training can learn
        centre = rng.normal(size=(n, GLOBAL_DIM)).astype(np.float32)
        regions = rng.normal(size=(n, REGIONS, REGION_DIM)).astype(np.float32)
        regions[:, :, :GLOBAL_DIM] += centre[:, None, :]
        g_img = centre + 0.3 * rng.normal(size=centre.shape).astype(np.float32)
        g_txt = np.repeat(centre, 5, 0) + 0.3 * rng.normal(size=(5 * n, GLOBAL_DIM)).astype(np.float32)
        np.save(pre / f"{split}_ims.npy", regions)
        np.save(pre / f"{split}_global_img.npy", (g_img / np.linalg.norm(g_img, axis=1, keepdims=True)).astype(np.float32))
        np.save(pre / f"{split}_global_txt.npy", (g_txt / np.linalg.norm(g_txt, axis=1, keepdims=True)).astype(np.float32))
    return root

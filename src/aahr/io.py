"""Atomic, deterministic writes: every file and folder the pipeline produces appears whole or not at
all, and the same content gives the same bytes (no time stamps, no temporary names inside a file), so
that a rerun leaves git and DVC with nothing to report. Timings, which differ run to run, go to a
``*.timing.json`` file beside the output (ignored by git and DVC)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; it replaces ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "x")
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=1) + "\n")


def save_npy(path: str | Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """np.savez_compressed's format (np.load reads it), with a fixed time stamp on every member
    (numpy's own writer stamps the current time, so the same arrays gave other bytes)."""
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, array in arrays.items():
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, buffer.getvalue())


def save_torch(path: str | Path, obj) -> None:
    """torch.save through a file object: torch names the archive's root folder after a path it is
    given, and a temporary path's random name would land in the bytes."""
    import torch

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(obj, f)


TIMING_KEYS = frozenset({"seconds", "read_seconds", "train_seconds", "images_per_second", "seconds_per_step", "timings"})


def split_timing(obj):
    """(``obj`` without its timing keys, the timing keys alone), recursively through dicts."""
    if not isinstance(obj, dict):
        return obj, None
    kept, timing = {}, {}
    for key, value in obj.items():
        if key in TIMING_KEYS:
            timing[key] = value
            continue
        kept[key], inner = split_timing(value)
        if inner:
            timing[key] = inner
    return kept, timing


def timing_path(path: str | Path) -> Path:
    """Where the timings of the output ``path`` go: ``name.timing.json`` beside it."""
    path = Path(path)
    return path.with_name(f"{path.stem}.timing.json")


def write_output_json(path: str | Path, obj: dict) -> None:
    """An output's JSON without its timings, which go to :func:`timing_path` (never compared)."""
    kept, timing = split_timing(obj)
    write_json(path, kept)
    if timing:
        write_json(timing_path(path), timing)


def read_output_json(path: str | Path) -> dict:
    """An output's JSON with its timings merged back when the timing file is there."""
    obj = json.loads(Path(path).read_text())
    tpath = timing_path(path)
    return _merge(obj, json.loads(tpath.read_text())) if tpath.is_file() else obj


def _merge(obj: dict, timing: dict) -> dict:
    out = dict(obj)
    for key, value in timing.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out

"""Shared tiny configuration: every test that needs data uses these few hundred generated images."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from aahr.config import load_params

ROOT = Path(__file__).resolve().parents[1]


def tiny_params_dict() -> dict:
    """params.yaml with tiny split sizes (same generator settings otherwise)."""
    params = copy.deepcopy(load_params(ROOT / "params.yaml"))
    params["synth"]["splits"] = {"pretrain": 120, "train": 60, "dev": 20, "test": 40}
    return params


@pytest.fixture
def tiny_params() -> dict:
    return tiny_params_dict()


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory) -> Path:
    """A tiny synth dataset generated once per test session; treat it as read-only."""
    from aahr.synth.generate import generate

    out = tmp_path_factory.mktemp("synth") / "raw"
    generate(tiny_params_dict(), out, progress=False)
    return out

"""Shared tiny configuration: every test that needs data uses these few hundred generated images."""

from __future__ import annotations

import copy
import os
import shutil
import sys
from pathlib import Path

import pytest

from aahr.config import load_params
from aahr.numerics import pin

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# The tests compute as the pipeline does (params.yaml's numerics: threads, CPU kernels), in this
# process and in the commands it starts, before any torch kernel runs.
pin(load_params(ROOT / "params.yaml")["numerics"])


def copy_project(dst: Path, *files: str) -> Path:
    """A copy of the workflow and its inputs (plus ``files``), so that DAG tests never touch the
    checkout's data/, results/ or .snakemake/."""
    for name in ("workflow", "src", "tests/configs"):
        shutil.copytree(ROOT / name, dst / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("params.yaml", "environment.yml", *files):
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, dst / name)
    return dst


def keep_variants(params: dict, names) -> dict:
    """``params`` with only the variants ``names`` and the Table 5 rows whose base is one of them
    (a row of a dropped variant would not validate)."""
    params["variants"] = {v: params["variants"][v] for v in names}
    params["sensitivity"] = {n: r for n, r in params.get("sensitivity", {}).items() if r["base"] in params["variants"]}
    return params


def venv_env(**extra: str) -> dict:
    """The environment with this interpreter's bin folder (snakemake, aahr, dvc) first on PATH."""
    return dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", **extra)


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

"""The Snakemake DAG on the tiny config: lint, dry run, a real run, and a second run that does nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

BIN = Path(sys.executable).parent


def _env():
    return dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the workflow and its inputs, so runs never touch the checkout's data/ or .snakemake/."""
    dst = tmp_path_factory.mktemp("project")
    for name in ("workflow", "src", "tests/configs"):
        shutil.copytree(ROOT / name, dst / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("params.yaml", "environment.yml"):
        shutil.copy(ROOT / name, dst / name)
    return dst


def snakemake(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "snakemake"), "--cores", "2", "--configfile", "tests/configs/tiny.yaml",
                           *args], cwd=project, env=_env(), capture_output=True, text=True, timeout=900)


def test_lint_and_format_are_clean(project):
    lint = subprocess.run([str(BIN / "snakemake"), "--lint"], cwd=project, env=_env(), capture_output=True,
                          text=True)
    assert lint.returncode == 0 and "Lints for" not in lint.stdout + lint.stderr, lint.stdout + lint.stderr
    fmt = subprocess.run([str(BIN / "snakefmt"), "--check", "workflow"], cwd=project, env=_env(),
                         capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stderr


def test_dry_run_plans_every_stage(project):
    proc = snakemake(project, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "generate_synth" in proc.stdout


def test_tiny_pipeline_runs_and_a_second_run_does_nothing(project):
    first = snakemake(project)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (project / "data/tiny/synth/raw/test_positives.npz").is_file()
    assert (project / "results/tiny/benchmarks/generate_synth.tsv").is_file()
    second = snakemake(project)
    assert second.returncode == 0
    assert "Nothing to be done" in second.stdout + second.stderr


def test_a_bad_config_stops_the_workflow_with_the_key_named(project):
    proc = snakemake(project, "--dry-run", "--config", "seed=-3")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "seed: -3 is less than the minimum of 0" in out

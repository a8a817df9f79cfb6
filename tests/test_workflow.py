"""The Snakemake DAG on the tiny config: lint, dry run, a real run, and a second run that does nothing."""

from __future__ import annotations

import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

BIN = Path(sys.executable).parent
VARIANTS = ("aahr", "no_gnn", "no_proto", "no_moco", "no_global", "gpo")
SEEDS = (0, 1)  # tests/configs/tiny.yaml


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
    for rule in ("generate_synth", "regions_synth", "global_branch_synth", "evaluate_zeroshot_synth",
                 "train_synth", "evaluate_synth", "tables", "figures_synth"):
        assert rule in proc.stdout
    assert proc.stdout.count("rule train_synth:") == len(VARIANTS) * len(SEEDS)


def test_tiny_pipeline_runs_and_a_second_run_does_nothing(project):
    first = snakemake(project)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (project / "data/tiny/synth/raw/test_positives.npz").is_file()
    for split in ("train", "dev", "test"):
        for name in ("ims", "boxes", "global_img", "global_txt"):
            assert (project / f"data/tiny/synth/precomp/{split}_{name}.npy").is_file()
    metrics = json.loads((project / "results/tiny/synth/zeroshot/metrics.json").read_text())
    assert all(isinstance(v, (int, float)) for v in metrics.values()) and "ext_t2i_map_at_r" in metrics
    for rule in ("generate_synth", "regions_synth", "global_branch_synth", "evaluate_zeroshot_synth"):
        assert (project / f"results/tiny/benchmarks/{rule}.tsv").is_file()
    for variant in VARIANTS:
        for seed in SEEDS:
            metrics = json.loads((project / f"results/tiny/synth/{variant}/seed{seed}/metrics.json").read_text())
            assert {"full_rsum", "ext_t2i_map_at_r"} <= set(metrics)
            log = (project / f"data/tiny/synth/runs/{variant}/seed{seed}/log.jsonl").read_text().splitlines()
            assert len(log) >= 2, "at least 2 training epochs per variant"
    with open(project / "results/tiny/table1.csv") as f:
        aahr_row = next(r for r in csv.DictReader(f) if r["method"] == "aahr")
    rsums = [json.loads((project / f"results/tiny/synth/aahr/seed{s}/metrics.json").read_text())["full_rsum"]
             for s in SEEDS]
    assert aahr_row["seeds"] == "0 1" and rsums[0] != rsums[1], "two seeds, two different runs"
    assert float(aahr_row["rsum"]) == round(statistics.fmean(rsums), 2)
    assert float(aahr_row["rsum_std"]) == round(statistics.stdev(rsums), 2)
    for n in (2, 3, 4):
        assert (project / f"results/tiny/table{n}.csv").is_file() and (project / f"results/tiny/table{n}.md").is_file()
    for name in ("training_curves", "recall_at_k", "ablations", "qualitative"):
        assert (project / f"results/tiny/figures/{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = subprocess.run([str(BIN / "aahr"), "summary", "--params", "tests/configs/tiny.yaml"], cwd=project,
                             env=_env(), capture_output=True, text=True)
    assert summary.returncode == 0, summary.stderr
    for what in ("synth dataset: data/tiny/synth/raw", "region features:", "global branch:",
                 "zero-shot global branch: results/tiny/synth/zeroshot/metrics.json",
                 "gpo seed 1 (trained): results/tiny/synth/gpo/seed1/metrics.json", "tables: results/tiny/table1.csv"):
        assert what in summary.stdout
    second = snakemake(project)
    assert second.returncode == 0
    assert "Nothing to be done" in second.stdout + second.stderr


def test_a_bad_config_stops_the_workflow_with_the_key_named(project):
    proc = snakemake(project, "--dry-run", "--config", "seed=-3")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "seed: -3 is less than the minimum of 0" in out

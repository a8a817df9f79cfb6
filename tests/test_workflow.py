"""The Snakemake DAG on the tiny config: lint, dry run, a real run, a second run that does nothing, and
a training job killed with SIGKILL that resumes when the workflow runs again."""

from __future__ import annotations

import csv
import json
import signal
import statistics
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import BIN, copy_project, venv_env

pytestmark = pytest.mark.slow

VARIANTS = ("aahr", "no_gnn", "no_proto", "no_moco", "no_global", "gpo", "base", "no_global_no_gnn")
SEEDS = (0, 1)  # tests/configs/tiny.yaml


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the workflow and its inputs, so runs never touch the checkout's data/ or .snakemake/."""
    return copy_project(tmp_path_factory.mktemp("project"))


def snakemake(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "snakemake"), "--cores", "2", "--configfile", "tests/configs/tiny.yaml",
                           *args], cwd=project, env=venv_env(), capture_output=True, text=True, timeout=900)


def test_lint_and_format_are_clean(project):
    lint = subprocess.run([str(BIN / "snakemake"), "--lint"], cwd=project, env=venv_env(), capture_output=True,
                          text=True)
    assert lint.returncode == 0 and "Lints for" not in lint.stdout + lint.stderr, lint.stdout + lint.stderr
    fmt = subprocess.run([str(BIN / "snakefmt"), "--check", "workflow"], cwd=project, env=venv_env(),
                         capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stderr


def test_dry_run_plans_every_stage(project):
    proc = snakemake(project, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    for rule in ("generate_synth", "regions_synth", "global_branch_synth", "evaluate_zeroshot",
                 "evaluate_zeroshot_dev", "train", "evaluate", "evaluate_local_view", "tables", "figures_synth"):
        assert f"rule {rule}:" in proc.stdout, rule
    assert proc.stdout.count("rule train:") == len(VARIANTS) * len(SEEDS)


def test_the_longest_training_runs_are_scheduled_first(project):
    """On a few cores the job left running alone at the end should be a short one: a run's priority
    grows with the modules it trains, so aahr goes before the leave-one-outs, and gpo goes last."""
    proc = snakemake(project, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    priority = {}
    for job in proc.stdout.split("rule train:")[1:]:
        job = job.strip().split("\n\n")[0]    # this job's lines only
        fields = dict(line.strip().split(": ", 1) for line in job.splitlines() if ": " in line)
        variant = dict(kv.split("=") for kv in fields["wildcards"].split(", "))["variant"]
        priority[variant] = int(fields["priority"])
    assert priority["aahr"] > priority["no_moco"] > priority["no_global_no_gnn"] > priority["base"] > priority["gpo"]
    assert priority["aahr"] == priority["no_proto"]   # the prototypes are cheap: no level of their own


def test_tiny_pipeline_runs_and_a_second_run_does_nothing(project):
    first = snakemake(project)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (project / "data/tiny/synth/raw/test_positives.npz").is_file()
    for split in ("train", "dev", "test"):
        for name in ("ims", "boxes", "global_img", "global_txt"):
            assert (project / f"data/tiny/synth/precomp/{split}_{name}.npy").is_file()
    metrics = json.loads((project / "results/tiny/synth/zeroshot/metrics.json").read_text())
    provenance = metrics.pop("provenance")
    assert metrics.pop("evaluated") == {"split": "test", "view": "zero-shot"}
    assert all(isinstance(v, (int, float)) for v in metrics.values()) and "ext_t2i_map_at_r" in metrics
    assert set(provenance) == {"code", "params_sha256"} and len(provenance["code"]["sources_sha256"]) == 64
    for job in ("generate_synth", "regions_synth", "global_branch_synth", "evaluate_zeroshot_synth"):
        assert (project / f"results/tiny/logs/benchmarks/{job}.tsv").is_file()     # beside the logs: not in git
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
    for name in ("training_curves", "recall_at_k", "ablations", "qualitative", "module_health"):
        assert (project / f"results/tiny/figures/{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(project / "results/tiny/module_health.csv") as f:
        health = list(csv.DictReader(f))
    assert list(health[0]) == ["variant", "seed", "module", "metric", "value", "ci95_low", "ci95_high", "status", "code"]
    modules = {(r["variant"], r["module"]) for r in health}
    assert {("aahr", m) for m in ("prototypes", "moco", "relation", "fusion", "triplet")} <= modules
    assert ("gpo", "triplet") in modules and ("no_moco", "moco") not in modules       # gpo: false negatives only
    assert {r["status"] for r in health if r["module"] != "triplet"} <= {"alive", "inert", "untrained", "undecided"}
    with open(project / "results/tiny/convergence.csv") as f:
        converged = list(csv.DictReader(f))
    assert len(converged) == len(VARIANTS) * len(SEEDS) and {r["converged"] for r in converged} <= {"True", "False"}
    with open(project / "results/tiny/table4.csv") as f:
        t4 = [r["method"] for r in csv.DictReader(f)]
    assert t4[0] == "aahr" and "aahr_local" in t4 and t4[-1] == "interaction: global x gnn"
    with open(project / "results/tiny/regime.csv") as f:
        regime = [r for r in csv.DictReader(f) if r["source"] == "measured"]
    assert {(r["split"], r["against"]) for r in regime} == {("dev", "local model"), ("dev", "baseline")}
    summary = subprocess.run([str(BIN / "aahr"), "summary", "--params", "tests/configs/tiny.yaml"], cwd=project,
                             env=venv_env(), capture_output=True, text=True)
    assert summary.returncode == 0, summary.stderr
    for what in ("synth dataset: data/tiny/synth/raw", "region features:", "global branch:",
                 "zero-shot global branch: results/tiny/synth/zeroshot/metrics.json",
                 "gpo seed 1 (trained): results/tiny/synth/gpo/seed1/metrics.json", "tables: results/tiny/table1.csv"):
        assert what in summary.stdout
    second = snakemake(project)
    assert second.returncode == 0
    assert "Nothing to be done" in second.stdout + second.stderr
    # Rerunning one ablation reruns only its training and evaluation (and what reads them).
    one = snakemake(project, "--dry-run", "--forcerun", "train", "--",
                    "results/tiny/synth/no_moco/seed0/metrics.json")
    assert one.returncode == 0, one.stderr[-3000:]
    planned = [line.split()[-1].rstrip(":") for line in one.stdout.splitlines() if line.startswith(("rule ", "localrule "))]
    assert sorted(planned) == ["evaluate", "train"], one.stdout[-3000:]
    assert "no_moco" in one.stdout and "variant=aahr" not in one.stdout


# Outputs that hold no computed number: logs, Snakemake's timing files, the timings beside outputs and
# the resumable checkpoint (whose history keeps each epoch's seconds).
NOT_COMPARED = ("/logs/", ".timing.json", "last.pt")


def outputs(project: Path) -> dict[str, bytes]:
    files = [p for root in ("data/tiny", "results/tiny") for p in (project / root).rglob("*") if p.is_file()]
    return {str(p.relative_to(project)): p.read_bytes() for p in files
            if not any(part in str(p) for part in NOT_COMPARED)}


def test_the_numbers_do_not_depend_on_cores(project, tmp_path_factory):
    """--cores decides how many jobs run at once, never what they compute (threads and CPU kernels come
    from params.yaml's numerics): the tiny DAG on one core gives every output of the two-core run above,
    byte for byte (data, features, checkpoints, metrics, log.jsonl, tables, figures)."""
    one = copy_project(tmp_path_factory.mktemp("one_core"))
    proc = subprocess.run([str(BIN / "snakemake"), "--cores", "1", "--configfile", "tests/configs/tiny.yaml"],
                          cwd=one, env=venv_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two, single = outputs(project), outputs(one)
    assert sorted(single) == sorted(two)
    assert any(name.endswith("metrics.json") for name in two) and any(name.endswith("best.pt") for name in two)
    differ = [name for name in two if two[name] != single[name]]
    assert not differ, f"outputs that depend on --cores: {differ}"


def test_the_study_target_adds_table5_from_the_sensitivity_rows(project):
    proc = snakemake(project, "--", "study")          # after --configfile FILE..., a target needs the --
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(project / "results/tiny/table5.csv") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    full = yaml.safe_load((project / "params.yaml").read_text())["sensitivity"]
    assert set(rows) == {"aahr"} | set(full)                           # Snakemake merges tiny.yaml's rows in
    assert rows["eps_005"]["setting"] == "losses.prototypes.epsilon=0.05"
    assert rows["aahr"]["prototypes_status"] in ("alive", "inert", "undecided") and float(rows["eps_005"]["rsum_1k"]) >= 0
    assert rows["aahr_2x"]["base"] == "aahr" and rows["aahr_2x"]["rsum_1k_minus_base"] != ""   # the doubled schedule
    ckpt = torch.load(project / "data/tiny/synth/runs/eps_005/seed0/best.pt", weights_only=True)
    assert ckpt["fingerprint"]["losses"]["prototypes"]["epsilon"] == 0.05


def test_the_report_holds_the_figures(project):
    """`snakemake --report` (after the tiny run above; as `make report` writes it, with no --cores): one
    self-contained HTML with the figures."""
    proc = subprocess.run([str(BIN / "snakemake"), "--report", "report.html", "--configfile", "tests/configs/tiny.yaml"],
                          cwd=project, env=venv_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = (project / "report.html").read_text(errors="replace")
    assert html.lstrip().lower().startswith("<!doctype html")
    for name in ("training_curves.png", "recall_at_k.png", "ablations.png", "qualitative.png"):
        assert name in html, name


def test_a_bad_config_stops_the_workflow_with_the_key_named(project):
    proc = snakemake(project, "--dry-run", "--config", "data_seed=-3")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "data_seed: -3 is less than the minimum of 0" in out


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant (Snakemake runs each job in its own process group)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=30)


def test_a_killed_training_job_resumes_from_its_last_epoch(project, tmp_path):
    """kill -9 of Snakemake and its job mid-training (as on node loss); running the workflow again
    resumes from the last epoch checkpoint and ends exactly where an uninterrupted run does."""
    params = yaml.safe_load((project / "tests/configs/tiny.yaml").read_text())
    params["seeds"], params["train"]["epochs"] = [7], 12        # a new run, long enough to be killed
    (project / "kill.yaml").write_text(yaml.safe_dump(params))
    run = project / "data/tiny/synth/runs/gpo/seed7"
    cmd = [str(BIN / "snakemake"), str(run.relative_to(project) / "best.pt"), "--cores", "2", "--configfile", "kill.yaml"]
    out = open(tmp_path / "killed.log", "w")
    proc = subprocess.Popen(cmd, cwd=project, env=venv_env(), stdout=out, stderr=subprocess.STDOUT)
    epoch, deadline = 0, time.monotonic() + 600
    try:
        while proc.poll() is None and time.monotonic() < deadline and epoch < 2:
            if (run / "last.pt").exists():
                epoch = torch.load(run / "last.pt", weights_only=True)["epoch"]
            time.sleep(0.01)
    finally:
        _kill_tree(proc.pid)
        proc.wait()
        out.close()
    assert 2 <= epoch < 12, f"killed at epoch {epoch}: not mid-run\n{(tmp_path / 'killed.log').read_text()[-3000:]}"
    assert not (run / "metrics.json").exists()

    # What a user does (README, "If a run dies"): unlock the folder Snakemake had locked, run again.
    unlock = subprocess.run(["snakemake", "--unlock"], cwd=project, env=venv_env(), capture_output=True, text=True)
    assert unlock.returncode == 0, unlock.stderr[-3000:]
    again = subprocess.run(cmd, cwd=project, env=venv_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    log = (project / "results/tiny/logs/train_synth_gpo_seed7.log").read_text()
    assert "Resuming from epoch" in log, log
    resumed_at = int(log.split("Resuming from epoch ")[1].split(":")[0])
    assert resumed_at >= epoch
    # The same training, never interrupted, with the effective config of that run.
    ref = tmp_path / "ref"
    subprocess.run([str(BIN / "aahr"), "train", "--params", ".snakemake/aahr-params.yaml", "--variant", "gpo",
                    "--seed", "7", "--features", "data/tiny/synth/precomp", "--captions", "data/tiny/synth/raw",
                    "--out", str(ref), "--quiet"], cwd=project, env=venv_env(), check=True, timeout=600)
    # byte for byte: the same code, params and pinned numerics, resumed or not
    assert (run / "metrics.json").read_bytes() == (ref / "metrics.json").read_bytes()
    assert len((run / "log.jsonl").read_text().splitlines()) == 12
    assert (run / "log.jsonl").read_bytes() == (ref / "log.jsonl").read_bytes()
    assert (run / "best.pt").is_file() and not (run / ".best.pt").exists()

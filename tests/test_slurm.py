"""The SLURM profile (workflow/profiles/slurm) on a real single-node SLURM on localhost.

tests/slurm/start_slurm.sh installs Debian's slurm-wlm and munge when they are missing (root, apt-get;
a few seconds) and starts munged, slurmctld and slurmd without systemd or cgroups; the module's
fixture stops them again with tests/slurm/stop_slurm.sh. Where SLURM cannot be installed or started,
the tests are skipped with the reason.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import BIN, ROOT, copy_project

SCRIPTS = ROOT / "tests" / "slurm"
PROFILE = "workflow/profiles/slurm"
RUN_TIMEOUT = 900  # seconds, per snakemake run; the module takes about 2 minutes on 2 CPUs
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """Start SLURM for this module; yields the path of its slurm.conf."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the single-node SLURM of tests/slurm/ needs Linux")
    if os.geteuid() != 0:
        pytest.skip("starting SLURM (and installing it with apt-get) needs root")
    state = tmp_path_factory.mktemp("slurm")
    try:
        try:
            start = subprocess.run(["bash", str(SCRIPTS / "start_slurm.sh"), str(state)], capture_output=True,
                                   text=True, timeout=600, check=False)
        except subprocess.TimeoutExpired:
            pytest.skip("tests/slurm/start_slurm.sh did not finish in 10 minutes")
        why = " | ".join(start.stderr.strip().splitlines()[-3:])
        if start.returncode == 2:
            pytest.skip(f"SLURM cannot be installed here: {why}")
        if start.returncode != 0:
            pytest.skip(f"SLURM did not come up (start_slurm.sh exit {start.returncode}): {why}")
        yield start.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(["bash", str(SCRIPTS / "stop_slurm.sh"), str(state)], capture_output=True, timeout=120,
                       check=False)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the workflow and its inputs (as in test_workflow.py): runs never touch the checkout."""
    return copy_project(tmp_path_factory.mktemp("slurm-project"))


def _env(slurm_conf: str) -> dict:
    """The submitting environment: sbatch --export=ALL hands it to the jobs (`aahr` on PATH)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SQUEUE_", "AAHR_SLURM_"))}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", SLURM_CONF=slurm_conf)
    return env


def _snakemake(project: Path, slurm_conf: str, *args: str) -> subprocess.CompletedProcess:
    """snakemake --profile workflow/profiles/slurm on the tiny config, killed (with its children) after
    RUN_TIMEOUT seconds."""
    cpus = re.search(r"\bCPUs=(\d+)", Path(slurm_conf).read_text()).group(1)
    cmd = [str(BIN / "snakemake"), "--profile", PROFILE, "--configfile", "tests/configs/tiny.yaml",
           "--max-threads", cpus,                           # the profile's 8 do not fit the test node
           "--slurm-init-seconds-before-status-checks", "2",  # the default 40 s per job is too slow here
           "--slurm-keep-successful-logs", *args]
    proc = subprocess.Popen(cmd, cwd=project, env=_env(slurm_conf), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"snakemake --profile {PROFILE} did not finish in {RUN_TIMEOUT}s:\n{out[-4000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


def _tiny_paths():
    from aahr.paths import result_dir

    params = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    zeroshot = result_dir(params, "synth", "zeroshot") / "metrics.json"
    trained = result_dir(params, "synth", "aahr", params["seeds"][0]) / "metrics.json"
    return str(zeroshot), str(trained)


def _jobs(slurm_conf: str) -> dict[str, tuple[str, str, str]]:
    """SLURM's record of every job (MinJobAge=3600 keeps finished ones): id -> (name, state, comment)."""
    cmd = ["squeue", "--states=all", "--noheader", "--format=%i|%200j|%T|%200k"]
    out = subprocess.run(cmd, env=_env(slurm_conf), capture_output=True, text=True, timeout=30, check=True).stdout
    rows = (line.split("|", 3) for line in out.splitlines() if line.strip())
    return {i.strip(): (name.strip(), state.strip(), comment.strip()) for i, name, state, comment in rows}


def test_the_tiny_dag_runs_as_slurm_jobs(slurm, project):
    zeroshot, trained = _tiny_paths()
    run = _snakemake(project, slurm, zeroshot, trained)
    assert run.returncode == 0, run.stdout[-4000:]

    # every rule of the DAG went through sbatch, and SLURM ran each job to completion
    submitted = dict(re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)", run.stdout))
    rules = {"generate_synth", "regions_synth", "global_branch_synth", "evaluate_zeroshot", "train", "evaluate"}
    assert len(submitted) == len(rules), run.stdout[-4000:]
    jobs = _jobs(slurm)
    run_id = re.search(r"SLURM run ID: (\S+)", run.stdout).group(1)
    ran = set()
    for job_id, log in submitted.items():
        name, state, comment = jobs[job_id]
        assert (name, state) == (run_id, "COMPLETED"), (job_id, jobs[job_id])
        rule = re.fullmatch(r"rule_(\w+?)(_wildcards_.*)?", comment).group(1)
        ran.add(rule)
        # the job's own log (sbatch --output .snakemake/slurm_logs/rule_<rule>/[<wildcards>/]<job id>.log),
        # written by SLURM, shows the job step running the rule
        log = Path(log)
        assert log.name == f"{job_id}.log" and f"rule_{rule}" in log.parts and f"rule {rule}:" in log.read_text()
    assert ran == rules

    # and the outputs are the workflow's
    for path in (zeroshot, trained):
        metrics = json.loads((project / path).read_text())
        assert "ext_t2i_map_at_r" in metrics

    # a second run has nothing left to submit
    again = _snakemake(project, slurm, zeroshot, trained)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout, again.stdout[-3000:]


def test_a_gpu_rule_asks_slurm_for_a_gpu(slurm, project):
    """train declares gpu=1 when train.device is cuda; the plugin turns that into `sbatch --gpus=1`,
    which this GPU-less cluster refuses, naming the request."""
    from aahr.paths import result_dir

    params = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    target = str(result_dir(params, "synth", "gpo", params["seeds"][-1]) / "metrics.json")
    run = _snakemake(project, slurm, target, "--config", "train={device: cuda}")
    assert run.returncode != 0
    assert "SLURM sbatch failed" in run.stdout and "--gpus=1" in run.stdout, run.stdout[-4000:]
    sbatch = next(line for line in run.stdout.splitlines()
                  if line.lstrip().startswith("sbatch ") and "--gpus" in line)
    assert "rule_train_" in sbatch and "--cpus-per-gpu=8" in sbatch

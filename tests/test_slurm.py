"""The SLURM profile (workflow/profiles/slurm) on a real SLURM cluster.

These tests run only where a cluster is there or when asked for:

- a SLURM controller answers `sinfo` (a cluster's login node, or the local test cluster below already
  running with SLURM_CONF pointing at it): the tests submit the tiny DAG to it and change nothing else;
- AAHR_TEST_SLURM=1 (what `make test-slurm` sets): when no controller answers, the module's fixture
  sets up a single-node SLURM on localhost with tests/slurm/setup_cluster.sh DIR (installs Debian's
  slurm-wlm and munge when missing: root, apt-get, a few seconds; then tests/slurm/start_slurm.sh
  starts munged, slurmctld and slurmd without systemd or cgroups) and stops the daemons again with
  tests/slurm/stop_slurm.sh. Failing to set it up then fails the tests: they were asked for.

Otherwise (a plain `make test`) they are skipped with the reason, and nothing is installed or started.
AAHR_TEST_SLURM=0 skips them even where a cluster answers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
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
SWITCH = "AAHR_TEST_SLURM"
HINT = "run `make test-slurm` to set up a local test cluster and run them"
pytestmark = pytest.mark.slow


def cluster_answers(env: dict | None = None) -> tuple[bool, str]:
    """(True, "") when a SLURM controller answers `sinfo`, else (False, why not)."""
    sinfo = shutil.which("sinfo", path=(env or os.environ).get("PATH"))
    if sinfo is None:
        return False, "no cluster (sinfo not found)"
    try:
        proc = subprocess.run([sinfo, "-h", "-o", "%T"], env=env, capture_output=True, text=True, timeout=20,
                              check=False)
    except subprocess.TimeoutExpired:
        return False, "no cluster (sinfo did not answer in 20 s)"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        return False, f"no cluster (sinfo found, but no controller answers: {last.strip()})"
    return True, ""


def skip_reason(env: dict | None = None) -> str | None:
    """Why this module is skipped here (None: it runs), without installing or starting anything."""
    env = os.environ if env is None else env
    if env.get(SWITCH) == "0":
        return f"SLURM tests: switched off ({SWITCH}=0)"
    up, why = cluster_answers(dict(env))
    if up or env.get(SWITCH) == "1":
        return None
    return f"SLURM tests: {why}; {HINT}"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """The cluster the tests submit to: yields the path of its slurm.conf, or None for the one SLURM
    finds by itself (a cluster that answered `sinfo` without SLURM_CONF)."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    if cluster_answers()[0]:
        yield os.environ.get("SLURM_CONF")   # a running cluster: used as it is, left as it is
        return
    # AAHR_TEST_SLURM=1 and no cluster: set up the local one, and stop it afterwards
    if not sys.platform.startswith("linux"):
        pytest.fail(f"{SWITCH}=1, but the single-node SLURM of tests/slurm/ needs Linux")
    state = tmp_path_factory.mktemp("slurm")
    try:
        try:
            start = subprocess.run(["bash", str(SCRIPTS / "setup_cluster.sh"), str(state)], capture_output=True,
                                   text=True, timeout=600, check=False)
        except subprocess.TimeoutExpired:
            pytest.fail("tests/slurm/setup_cluster.sh did not finish in 10 minutes")
        if start.returncode != 0:
            why = " | ".join(start.stderr.strip().splitlines()[-3:])
            pytest.fail(f"{SWITCH}=1, but the local test cluster could not be set up "
                        f"(tests/slurm/setup_cluster.sh exit {start.returncode}): {why}")
        yield start.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(["bash", str(SCRIPTS / "stop_slurm.sh"), str(state)], capture_output=True, timeout=120,
                       check=False)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the workflow and its inputs (as in test_workflow.py): runs never touch the checkout."""
    return copy_project(tmp_path_factory.mktemp("slurm-project"))


def _env(slurm_conf: str | None) -> dict:
    """The submitting environment: sbatch --export=ALL hands it to the jobs (`aahr` on PATH)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SQUEUE_", "AAHR_SLURM_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    if slurm_conf:
        env["SLURM_CONF"] = slurm_conf
    return env


def _sinfo(slurm_conf: str | None, fmt: str) -> list[str]:
    """`sinfo -h -o FMT`, one line per node group."""
    out = subprocess.run(["sinfo", "-h", "-o", fmt], env=_env(slurm_conf), capture_output=True, text=True,
                         timeout=30, check=True).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def _snakemake(project: Path, slurm_conf: str | None, *args: str) -> subprocess.CompletedProcess:
    """snakemake --profile workflow/profiles/slurm on the tiny config, killed (with its children) after
    RUN_TIMEOUT seconds."""
    cpus = str(min(int(c.rstrip("+")) for c in _sinfo(slurm_conf, "%c")))  # the smallest node
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


def _jobs(slurm_conf: str | None) -> dict[str, tuple[str, str, str]]:
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
    if any("gpu" in gres.lower() for gres in _sinfo(slurm, "%G")):
        pytest.skip("this cluster has GPUs: the test needs one that refuses `sbatch --gpus=1`")
    from aahr.paths import result_dir

    params = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    target = str(result_dir(params, "synth", "gpo", params["seeds"][-1]) / "metrics.json")
    run = _snakemake(project, slurm, target, "--config", "train={device: cuda}")
    assert run.returncode != 0
    assert "SLURM sbatch failed" in run.stdout and "--gpus=1" in run.stdout, run.stdout[-4000:]
    sbatch = next(line for line in run.stdout.splitlines()
                  if line.lstrip().startswith("sbatch ") and "--gpus" in line)
    assert "rule_train_" in sbatch and "--cpus-per-gpu=8" in sbatch

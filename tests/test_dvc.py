"""DVC around the Snakemake DAG, on the tiny config in a temporary git repository:

`dvc repro` runs every stage and leaves `dvc status` clean; `dvc push` to the default remote; a fresh
clone gets everything back with `dvc pull` (byte-identical, no stage re-run by DVC or, after
`snakemake --touch`, by Snakemake); `dvc exp run -S` on one variant's switch reruns only that
variant's stages.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import BIN, ROOT, copy_project, keep_variants, venv_env

pytestmark = pytest.mark.slow


def run(cmd: list[str], cwd: Path, env: dict, timeout: int = 900) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{out[-4000:]}"
    return out


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    """HOME in a temporary folder: the default remote (~/.cache/aahr/dvc-storage) lands there."""
    home = tmp_path_factory.mktemp("home")
    return venv_env(HOME=str(home), GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t",
                    DVC_NO_ANALYTICS="1")


@pytest.fixture(scope="module")
def repo(tmp_path_factory, env) -> Path:
    """A git repository holding the project with the tiny config as its params.yaml (one seed, three
    variants), after
    `dvc repro` and `dvc push`, with dvc.lock committed."""
    dst = copy_project(tmp_path_factory.mktemp("dvc") / "project", "dvc.yaml", ".dvcignore", ".dvc/config",
                       ".dvc/.gitignore")
    ignore = [line for line in (ROOT / ".gitignore").read_text().splitlines() if "tiny" not in line]
    (dst / ".gitignore").write_text("\n".join(ignore) + "\n")   # the project's, less its tiny-run lines
    params = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    params["seeds"] = [0]    # and the table rows plus one ablation: every kind of stage, in less time
    keep_variants(params, ("aahr", "no_moco", "gpo"))
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], dst, env)
    run(["git", "add", "-A"], dst, env)
    run(["git", "commit", "-q", "-m", "tiny project"], dst, env)
    out = run([str(BIN / "dvc"), "repro"], dst, env)
    assert "Running stage 'train_synth@aahr-0'" in out and "Running stage 'figures'" in out
    run(["git", "add", "-A"], dst, env)
    run(["git", "commit", "-q", "-m", "repro"], dst, env)
    run([str(BIN / "dvc"), "push"], dst, env)
    return dst


def test_repro_leaves_status_clean_and_pushes_to_the_default_remote(repo, env):
    status = run([str(BIN / "dvc"), "status"], repo, env)
    assert "Data and pipelines are up to date" in status, status
    storage = Path(env["HOME"]) / ".cache/aahr/dvc-storage"
    assert any(p.is_file() for p in storage.rglob("*")), "dvc push wrote nothing to the default remote"
    again = run([str(BIN / "dvc"), "repro"], repo, env)
    assert "Running stage" not in again


def test_study_runs_beside_the_pipelines_runs_leave_dvc_status_clean(repo, env):
    """make study trains more seeds (and Table 5's rows) into the same runs folder and commits their
    logs: no DVC stage may depend on that folder as a whole."""
    extra = repo / "data/tiny/synth/runs/aahr/seed7"
    extra.mkdir(parents=True)
    try:
        (extra / "log.jsonl").write_text('{"epoch": 1}\n')
        (extra / "metrics.json").write_text("{}\n")
        status = run([str(BIN / "dvc"), "status"], repo, env)
        assert "Data and pipelines are up to date" in status, status
    finally:
        for f in extra.iterdir():
            f.unlink()
        extra.rmdir()


def test_a_fresh_clone_pulls_everything_and_reruns_nothing(repo, env, tmp_path):
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env)
    run([str(BIN / "dvc"), "pull"], clone, env)
    for name in ("results/tiny/synth/aahr/seed0/ranks.npz", "data/tiny/synth/runs/gpo/seed0/best.pt",
                 "data/tiny/synth/precomp/test_ims.npy", "results/tiny/table1.csv"):
        assert (clone / name).read_bytes() == (repo / name).read_bytes(), name
    status = run([str(BIN / "dvc"), "status"], clone, env)
    assert "Data and pipelines are up to date" in status, status
    assert "Running stage" not in run([str(BIN / "dvc"), "repro"], clone, env)
    # The trap: pulled files carry new times in arbitrary order; --touch makes Snakemake agree.
    run([str(BIN / "snakemake"), "--touch", "--cores", "1"], clone, env)
    dry = run([str(BIN / "snakemake"), "--cores", "1", "--dry-run"], clone, env)
    assert "Nothing to be done" in dry, dry[-3000:]


def test_exp_run_on_one_variant_reruns_only_that_variant(repo, env):
    out = run([str(BIN / "dvc"), "exp", "run", "-S", "variants.no_moco.fragment_transformer=false"], repo, env)
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage '")}
    assert ran == {"train_synth@no_moco-0", "evaluate_synth@no_moco-0", "tables", "figures"}, out[-3000:]


def test_editing_a_module_a_stage_imports_makes_the_stage_stale(repo, env):
    """The code inputs follow the imports (aahr.sources): evaluation.py is not named by any rule, yet
    training selects its model on dev with it, so editing it makes every training stale, for DVC
    and for Snakemake, while the data generation stays current."""
    module = repo / "src/aahr/evaluation.py"
    original = module.read_text()
    try:
        module.write_text(original + "\n# an edit\n")
        status = run([str(BIN / "dvc"), "status"], repo, env)
        stale = {line.split(":")[0].strip() for line in status.splitlines() if line.endswith(":") and not line.startswith("\t")}
        assert {"train_synth@aahr-0", "train_synth@gpo-0", "evaluate_synth@aahr-0"} <= stale, status
        assert "generate_synth" not in stale and "regions_synth" not in stale, status
        dry = run([str(BIN / "snakemake"), "--cores", "1", "--dry-run", "--rerun-triggers", "code"], repo, env)
        assert "rule train:" in dry and "rule generate_synth:" not in dry, dry[-3000:]
    finally:
        module.write_text(original)

"""The committed results are what the committed code makes of the committed metrics: the tables and
the module health rebuild byte for byte from the tracked metrics.json and log.jsonl files (no data
needed: a clean clone has them), and every one of those files names the current code version.
results/archive/ holds older code versions' results as records, and is left out."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import BIN, ROOT, venv_env

from aahr.config import load_params
from aahr.provenance import CODE_PATHS, code_version

TABLES = [f"{name}.{ext}" for name in ("table1", "table2", "table3", "table4", "regime") for ext in ("csv", "md")]


def workflow_params(tmp_path: Path) -> Path:
    """params.yaml as the workflow hands it to every `aahr` command (workflow/rules/common.smk,
    params_file(): sorted keys, so the variants, and the rows of the tables, in alphabetical order)."""
    assert "yaml.safe_dump(config, sort_keys=True)" in (ROOT / "workflow/rules/common.smk").read_text()
    path = tmp_path / "aahr-params.yaml"
    path.write_text(yaml.safe_dump(load_params(ROOT / "params.yaml"), sort_keys=True))
    return path


def aahr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "aahr"), *args], cwd=ROOT, env=venv_env(), capture_output=True, text=True,
                          timeout=300)


def made_files() -> list[Path]:
    """Every tracked metrics.json and log.jsonl the pipeline made (not the archive's)."""
    out = subprocess.run(["git", "ls-files", "results", "data"], cwd=ROOT, capture_output=True, text=True)
    return [ROOT / f for f in out.stdout.split() if f.endswith(("metrics.json", "log.jsonl", "ceiling.json"))
            and not f.startswith("results/archive/")]


def last_code_commit() -> str:
    """The last commit that changed the code, as git says (independently of aahr.provenance)."""
    return subprocess.run(["git", "log", "-1", "--format=%H", "--", *CODE_PATHS], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()


def records(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [json.loads(path.read_text())]


def test_every_committed_table_rebuilds_byte_for_byte(tmp_path):
    proc = aahr("tables", "--params", str(workflow_params(tmp_path)), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    differ = [name for name in TABLES if (tmp_path / "out" / name).read_bytes() != (ROOT / "results" / name).read_bytes()]
    assert not differ, f"committed tables that the committed metrics do not give: {differ}"


def test_the_module_health_rebuilds_from_the_committed_logs(tmp_path):
    proc = aahr("health", "--params", str(workflow_params(tmp_path)), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out/module_health.csv").read_bytes() == (ROOT / "results/module_health.csv").read_bytes()


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs the git checkout (the code version is a commit)")
def test_every_committed_result_names_the_current_code_version():
    files = made_files()
    assert any(f.name == "metrics.json" for f in files) and any(f.name == "log.jsonl" for f in files)
    want = last_code_commit()
    stale = sorted({str(f.relative_to(ROOT)) for f in files for r in records(f)
                    if (r.get("provenance") or {}).get("code", {}).get("commit") != want
                    or not r["provenance"]["code"]["clean"]})
    assert not stale, (f"made by another code version than {want[:7]} (the last commit that changed "
                       f"{', '.join(CODE_PATHS)}), or from a tree with changes: rerun `make reproduce`:\n"
                       + "\n".join(stale[:30]))


def test_the_code_version_names_the_last_commit_of_the_code():
    version = code_version()
    assert len(version["sources_sha256"]) == 64
    if (ROOT / ".git").exists():
        assert version["commit"] == last_code_commit()

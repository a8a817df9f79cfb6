"""Provenance: which code and which params made a file.

Every metrics.json, log.jsonl and benchmark record carries ``provenance``:

    code.commit          the last git commit that changed the code (src/aahr, pyproject.toml,
                         requirements.lock), so results committed later still name the code that
                         made them; null outside a git checkout
    code.clean           whether those paths had uncommitted changes (false: the commit alone does
                         not describe the code); null outside a git checkout
    code.sources_sha256  a hash of the package's source files, which holds outside git too
    params_sha256        a hash of the params the command ran with (canonical JSON of the params file)
"""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent          # src/aahr
REPOSITORY = PACKAGE_DIR.parent.parent                  # the checkout that holds src/aahr
CODE_PATHS = ("src/aahr", "pyproject.toml", "requirements.lock")
SOURCE_SUFFIXES = {".py", ".yaml", ".csv", ".json", ".md"}


def sources_sha256(package: Path = PACKAGE_DIR) -> str:
    """sha256 over the package's source files (relative path and bytes, in sorted order)."""
    h = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*") if p.is_file() and p.suffix in SOURCE_SUFFIXES
                       and "__pycache__" not in p.parts):
        h.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(REPOSITORY), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def code_version() -> dict:
    """{commit, clean, sources_sha256} of the code this process runs (computed once)."""
    commit = clean = None
    if (REPOSITORY / ".git").exists() and (REPOSITORY / "src" / "aahr").resolve() == PACKAGE_DIR:
        log = _git("log", "-1", "--format=%H", "--", *CODE_PATHS)
        status = _git("status", "--porcelain", "--", *CODE_PATHS)
        commit = (log.strip() or None) if log is not None else None
        clean = None if status is None or commit is None else status.strip() == ""
    return {"commit": commit, "clean": clean, "sources_sha256": sources_sha256()}


def params_sha256(params: dict) -> str:
    """sha256 of the params as canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


def provenance(params: dict) -> dict:
    """The ``provenance`` record of a file made with ``params`` by this code."""
    return {"code": code_version(), "params_sha256": params_sha256(params)}


def provenance_of_file(params_file: str | Path | None) -> dict:
    """:func:`provenance` of a params file's validated content; params_sha256 null without one."""
    if params_file is None or not Path(params_file).is_file():
        return {"code": code_version(), "params_sha256": None}
    from aahr.config import load_params

    return provenance(load_params(params_file))


def label(record: dict | None) -> str:
    """A short name of a provenance record's code version: the commit's first 7 characters, with
    '+dirty' when the tree had changes; 'unknown' for a file without provenance."""
    code = (record or {}).get("code") or {}
    if not code.get("commit"):
        return f"sources:{code['sources_sha256'][:12]}" if code.get("sources_sha256") else "unknown"
    return code["commit"][:7] + ("" if code.get("clean") else "+dirty")

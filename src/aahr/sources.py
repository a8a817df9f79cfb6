"""Which package files a command runs, read from the imports in the source.

A workflow rule that runs ``aahr <command>`` depends on the code of that command: the command's module
and every ``aahr`` module it imports, directly or through others, at module level or inside a
function (``ast``, nothing is imported). :func:`command_sources` is the list the Snakemake rules take as
their ``code`` input, and a test checks ``dvc.yaml``'s code dependencies against it, so that editing
any file a stage runs makes the stage out of date and no hand-written list can drift.

:func:`import_graph` is also what the layering test reads (README, Layout).
"""

from __future__ import annotations

import ast
import os
from functools import lru_cache
from pathlib import Path

PACKAGE = "aahr"
PACKAGE_DIR = Path(__file__).resolve().parent
ENTRY = "aahr.cli"   # every command starts here (it finds the command's module by name, at run time)
# Package data that a module reads (importlib.resources, not an import): part of its code.
DATA_FILES = {
    "aahr.config": ("schemas/params.schema.yaml",),
    "aahr.download": ("reference/downloads.json",),
    "aahr.tables": ("reference/paper_results.csv", "reference/eccv_results.csv",
                    "reference/global_branch_regime.csv"),
}


def module_file(module: str, package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The file of ``aahr.x.y`` (``x/y.py`` or ``x/y/__init__.py``), None if there is none."""
    parts = module.split(".")[1:]
    if not parts:
        return package_dir / "__init__.py"
    rel = Path(*parts)
    for path in (package_dir / rel.with_suffix(".py"), package_dir / rel / "__init__.py"):
        if path.is_file():
            return path
    return None


def _module_name(path: Path, package_dir: Path) -> str:
    parts = list(path.relative_to(package_dir).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([PACKAGE, *parts])


def imports_of(path: Path, package_dir: Path = PACKAGE_DIR) -> set[str]:
    """The ``aahr`` modules that the file imports anywhere in its body (``from aahr.x import y`` counts
    ``aahr.x.y`` when that is a module, else ``aahr.x``), with the packages on the way."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] == PACKAGE and module_file(name, package_dir) is not None:
                parts = name.split(".")
                found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    found.discard(_module_name(path, package_dir))
    return found


@lru_cache(maxsize=None)
def _graph(package_dir: Path) -> dict[str, frozenset[str]]:
    return {_module_name(p, package_dir): frozenset(imports_of(p, package_dir))
            for p in sorted(package_dir.rglob("*.py"))}


def import_graph(package_dir: Path = PACKAGE_DIR) -> dict[str, frozenset[str]]:
    """Module -> the ``aahr`` modules it imports, for every module of the package."""
    return _graph(Path(package_dir).resolve())


def closure(modules, package_dir: Path = PACKAGE_DIR) -> set[str]:
    """``modules`` and everything they import, transitively."""
    graph = import_graph(package_dir)
    seen, todo = set(), list(modules)
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph.get(m, ()))
    return seen


def command_module(command: str) -> str:
    return f"{PACKAGE}.commands.{command.replace('-', '_')}"


def command_sources(*commands: str, package_dir: str | Path = PACKAGE_DIR, root: str | Path | None = None) -> list[str]:
    """The files that ``aahr <command>`` runs, for each of ``commands``: the modules of its import
    closure, the packages they sit in and the package data they read (:data:`DATA_FILES`); sorted,
    relative to ``root`` (default: the current folder, where Snakemake and DVC run) when
    ``package_dir`` (default: this package's folder) lies below it."""
    package_dir = Path(package_dir).resolve()
    unknown = [c for c in commands if module_file(command_module(c), package_dir) is None]
    if unknown:
        raise ValueError(f"no aahr command {unknown}: {package_dir / 'commands'} has no such module")
    modules = closure([ENTRY, *(command_module(c) for c in commands)], package_dir)
    modules |= {".".join(m.split(".")[:i]) for m in modules for i in range(1, m.count(".") + 1)}
    files = [module_file(m, package_dir) for m in modules]
    files += [package_dir / d for m in modules for d in DATA_FILES.get(m, ())]
    root = Path(root or Path.cwd()).resolve()
    out = []
    for f in files:
        rel = os.path.relpath(f, root)
        out.append(str(f) if rel.startswith("..") else rel)
    return sorted(set(out))

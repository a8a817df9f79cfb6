"""The package's layering and the workflow's code inputs, read from the imports (aahr.sources).

Layers (README, Layout): the neutral modules (errors, io, paths, config, data, text, evaluation,
health, splits, features/store) at the bottom; model/ on them; inference (load a checkpoint, embed a
split) on model/; training/ on inference; search, figures, tables and the feature stages beside it;
commands/ on top. Only training/ and the train command import aahr.training; model/ imports no
features, training, inference or presentation module; there is no import cycle.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aahr.sources import DATA_FILES, PACKAGE_DIR, closure, command_sources, import_graph

from conftest import ROOT

MODEL_MAY_NOT_IMPORT = ("aahr.features", "aahr.training", "aahr.inference", "aahr.commands", "aahr.search",
                        "aahr.inspect_figures", "aahr.figures", "aahr.tables", "aahr.splits")


def _own(module: str, deps) -> set[str]:
    """Imports other than the module's own parent packages (importing aahr.x.y runs aahr/x/__init__)."""
    return {d for d in deps if not (module + ".").startswith(d + ".")}


def cycles(graph: dict) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in _own(v, graph.get(v, ())):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def violations(graph: dict, package_dir: Path) -> list[str]:
    out = [f"import cycle: {' <-> '.join(c)}" for c in cycles(graph)]
    for m, deps in sorted(graph.items()):
        if not m.startswith("aahr.training") and m != "aahr.commands.train":
            out += [f"{m} imports {d}" for d in sorted(_own(m, deps)) if d.startswith("aahr.training")]
        if m.startswith("aahr.model"):
            reach = closure([m], package_dir)
            out += [f"{m} reaches {d}" for d in sorted(reach) if d.startswith(MODEL_MAY_NOT_IMPORT)]
    return out


def test_the_package_keeps_its_layers():
    assert violations(import_graph(), PACKAGE_DIR) == []


def test_the_layering_check_catches_a_cycle_and_a_forbidden_import(tmp_path):
    pkg = tmp_path / "aahr"
    for name, body in {"__init__.py": "", "a.py": "from aahr import b\n", "b.py": "def f():\n    import aahr.a\n",
                       "model/__init__.py": "", "model/net.py": "from aahr.features.store import load\n",
                       "features/__init__.py": "", "features/store.py": "",
                       "search.py": "from aahr.training.loop import x\n",
                       "training/__init__.py": "", "training/loop.py": ""}.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(body)
    found = violations(import_graph(pkg), pkg)
    assert "import cycle: aahr.a <-> aahr.b" in found
    assert "aahr.search imports aahr.training.loop" in found
    assert "aahr.model.net reaches aahr.features.store" in found


def test_a_command_depends_on_what_it_imports_and_nothing_else():
    train = command_sources("train", root=ROOT)
    # training selects its model on dev with aahr.evaluation, which no rule used to list
    assert {"src/aahr/evaluation.py", "src/aahr/text.py", "src/aahr/model/relation.py",
            "src/aahr/commands/train.py"} <= set(train)
    assert not any(f.startswith(("src/aahr/synth/", "src/aahr/commands/evaluate.py")) for f in train)
    generate = command_sources("generate", root=ROOT)
    assert "src/aahr/synth/scenes.py" in generate and "src/aahr/model/aahr.py" not in generate
    assert {"src/aahr/reference/paper_results.csv", "src/aahr/tables.py"} <= set(command_sources("tables", root=ROOT))
    with pytest.raises(ValueError, match="no aahr command"):
        command_sources("nonesuch")


def test_package_data_is_listed_with_the_module_that_reads_it():
    listed = {d for files in DATA_FILES.values() for d in files}
    shipped = {str(p.relative_to(PACKAGE_DIR)) for p in PACKAGE_DIR.rglob("*")
               if p.is_file() and p.suffix in (".csv", ".yaml", ".json")}
    assert listed == shipped, "a data file in the package: add it to aahr.sources.DATA_FILES"


# Which `aahr` commands each DVC stage runs (through the Snakemake rule it asks for).
DVC_STAGE_COMMANDS = {"generate_synth": ["generate"], "regions_synth": ["regions"],
                      "global_branch_synth": ["global-branch"], "evaluate_zeroshot_synth": ["evaluate"],
                      "train_synth": ["train"], "evaluate_synth": ["evaluate"],
                      "evaluate_zeroshot_dev_synth": ["evaluate"], "evaluate_local_view_synth": ["evaluate"],
                      "tables": ["tables"],
                      "figures": ["figures", "health"]}


def test_dvc_code_dependencies_are_the_commands_imports():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert set(stages) == set(DVC_STAGE_COMMANDS), "a new DVC stage: say which commands it runs here"
    for name, stage in stages.items():
        code = {d for d in stage["deps"] if d.startswith("src/")}
        want = set(command_sources(*DVC_STAGE_COMMANDS[name], root=ROOT))
        assert code == want, f"dvc.yaml stage {name}: missing {sorted(want - code)}, extra {sorted(code - want)}"


def make_variable(name: str) -> list[str]:
    """A `NAME := words  # comment` line of the Makefile, as its words."""
    for line in (ROOT / "Makefile").read_text().splitlines():
        if line.startswith(f"{name} ") and ":=" in line:
            return line.split(":=", 1)[1].split("#")[0].split()
    raise AssertionError(f"Makefile: no {name} :=")


def test_make_study_trains_every_row_of_params():
    """`make study` names its rows in two groups (the 2 x 2 and the baseline first, then the other
    leave-one-outs) and its doubled-schedule rows: a variant added to params.yaml must be in one."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    first, rest = make_variable("FIRST"), make_variable("REST")
    assert sorted(first + rest) == sorted(params["variants"]), "a variant of params.yaml missing from make study"
    sweep = make_variable("SWEEP")
    assert sorted(sweep) == sorted(p.stem for p in (ROOT / "configs/regime").glob("*.yaml"))
    doubled = make_variable("DOUBLED")
    assert doubled and set(doubled) <= set(params["sensitivity"])
    for row in doubled:   # twice the schedule: the epochs and the drop
        settings = params["sensitivity"][row]["set"]
        assert settings["train.epochs"] == 2 * params["train"]["epochs"], row
        assert settings["train.lr_steps"] == [2 * s for s in params["train"]["lr_steps"]], row
        for module in ("relation", "prototypes"):   # and the warm-ups, at the authors' fractions
            assert settings[f"losses.{module}.warmup_epochs"] == 2 * params["losses"][module]["warmup_epochs"], row

"""The committed dvc.lock is in step with the code and params: `dvc status` finds no stage whose code
(src/, workflow/), params or command changed since the lock was written. It needs no data, so it runs
on a clean clone (where the data deps are absent, which is not a change of code)."""

from __future__ import annotations

import json
import subprocess

from conftest import BIN, ROOT, venv_env

CODE = ("src/", "workflow/", "params.yaml")


def stale_stages(status: dict) -> list[str]:
    """What `dvc status --json` says changed in code, params or commands (data and outs ignored)."""
    problems = []
    for stage, entries in status.items():
        for entry in entries:
            if isinstance(entry, str):                      # "changed command", "always changed", ...
                problems.append(f"{stage}: {entry}")
                continue
            for kind, changes in entry.items():
                if kind == "changed deps":
                    problems += [f"{stage}: {path} {what}" for path, what in changes.items() if path.startswith(CODE)]
                elif kind != "changed outs":
                    problems.append(f"{stage}: {kind} {changes}")
    return problems


def test_stale_stages_reads_code_params_and_commands_but_not_data():
    status = {"a": [{"changed deps": {"data/synth/raw": "deleted", "src/aahr/io.py": "modified",
                                      "params.yaml": {"numerics": "modified"}}},
                    {"changed outs": {"data/x.npy": "deleted"}}],
              "b": ["changed command"], "c": [{"changed deps": {"data/synth/raw": "deleted"}}]}
    assert stale_stages(status) == ["a: src/aahr/io.py modified", "a: params.yaml {'numerics': 'modified'}",
                                    "b: changed command"]


def test_the_committed_lock_matches_the_code_and_params():
    proc = subprocess.run([str(BIN / "dvc"), "status", "--json"], cwd=ROOT, capture_output=True, text=True,
                          env=venv_env(DVC_NO_ANALYTICS="1"), timeout=300)
    assert proc.returncode == 0, proc.stderr
    problems = stale_stages(json.loads(proc.stdout or "{}"))
    assert not problems, ("dvc.lock is behind the code (`make reproduce` regenerates the outputs and records them; "
                          "then commit dvc.lock):\n" + "\n".join(problems[:40]))

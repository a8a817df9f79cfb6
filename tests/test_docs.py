"""The documentation: a short README, tables copied verbatim from their files, links that resolve.

Fast and data-free: reads README.md, docs/*.md and CHANGELOG.md only.

- README.md has at most README_MAX_LINES lines, and `make reproduce` and `make test` are the first
  commands it names.
- An include block, ``<!-- include: PATH -->`` ... ``<!-- /include -->`` (PATH relative to the
  repository root), holds the file PATH byte for byte (one newline after the opening marker and one
  before the closing marker are not part of it). ``python tests/test_docs.py --refresh`` rewrites
  every block from its file after the file was regenerated.
- Every relative Markdown link resolves to a path in the repository (http(s) links, mailto and pure
  #anchors are skipped; an anchor after a path is dropped), and no link points at an ignored path
  (which a fresh clone would lack).
- No document mentions a path outside the repository (``../shared``).
- The measured numbers of the README (``<!-- measured: NAME -->VALUE<!-- /measured -->``) are what
  their files say: MEASURED maps each name to the function that states it from its file
  (``--refresh`` rewrites them too). :func:`verdict_table` states the study's verdict per module
  from results/study/table4.csv and results/study/module_health.csv.
"""

from __future__ import annotations

import collections
import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 200

INCLUDE = re.compile(r"<!-- include: (?P<path>\S+?) -->(?P<body>.*?)<!-- /include -->", re.S)
MEASURED_RE = re.compile(r"<!-- measured: (?P<name>[\w-]+) -->(?P<value>.*?)<!-- /measured -->", re.S)
FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]+`")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?(?P<target>[^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(?P<target>\S+?)>?(?:\s+.*)?$", re.M)
OUTSIDE = "../shared"
COMMAND_WORDS = ("make", "snakemake", "dvc", "aahr", "python", "pytest", "pip", "conda", "git",
                 "bash", "source", "sbatch")


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "CHANGELOG.md"]


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def strip_one(text: str) -> str:
    """The block's content: one newline after the opening marker and one before the closing one
    belong to the markers."""
    if text.startswith("\n"):
        text = text[1:]
    if text.endswith("\n"):
        text = text[:-1]
    return text


def include_problems(doc: Path) -> list[str]:
    problems = []
    for m in INCLUDE.finditer(doc.read_text()):
        path = ROOT / m["path"]
        where = f"{rel(doc)}: include {m['path']}"
        if not path.is_file():
            problems.append(f"{where}: the file {m['path']} does not exist")
            continue
        want = path.read_text()
        if want.endswith("\n"):
            want = want[:-1]
        if strip_one(m["body"]) != want:
            problems.append(f"{where}: the block differs from the file (python tests/test_docs.py --refresh)")
    return problems


def prose(text: str) -> str:
    """The text outside fenced code blocks and code spans, where Markdown links live."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def link_targets(doc: Path) -> list[str]:
    text = prose(doc.read_text())
    return [m["target"] for rx in (INLINE_LINK, REFERENCE_LINK) for m in rx.finditer(text)]


def ignored(paths: list[str]) -> set[str]:
    """Those of ``paths`` (relative to the root) that git ignores; none outside a git checkout."""
    if not paths or not (ROOT / ".git").exists():
        return set()
    try:
        proc = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "--stdin"], input="\n".join(paths),
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return set(proc.stdout.split())


def link_problems(doc: Path) -> list[str]:
    problems, found = [], []
    for target in link_targets(doc):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue  # http(s), mailto, ... and anchors within the page
        path = target.split("#", 1)[0].split("?", 1)[0]
        resolved = (doc.parent / path).resolve()
        where = f"{rel(doc)}: link {target}"
        try:
            name = resolved.relative_to(ROOT).as_posix()
        except ValueError:
            problems.append(f"{where}: points outside the repository")
            continue
        if not resolved.exists():
            problems.append(f"{where}: {name} does not exist")
            continue
        found.append(name)
    problems += [f"{rel(doc)}: link to {name}: git ignores it (a fresh clone lacks it)" for name in ignored(found)]
    return problems


def command_mentions(text: str) -> list[str]:
    """Commands in reading order: code spans and lines of fenced code blocks whose first word is a
    command and that have at least one argument (a bare `aahr` names the package, not a command)."""
    found = []
    pos = 0
    for m in FENCE.finditer(text):
        found += [(pos + s.start(), s.group()[1:-1]) for s in CODE_SPAN.finditer(text[pos:m.start()])]
        body = m.group().split("\n")[1:-1]
        offset = m.start()
        for line in body:
            found.append((offset, line.strip().lstrip("$ ")))
            offset += 1
        pos = m.end()
    found += [(pos + s.start(), s.group()[1:-1]) for s in CODE_SPAN.finditer(text[pos:])]
    commands = []
    for _, cmd in sorted(found):
        words = cmd.split()
        if len(words) >= 2 and words[0] in COMMAND_WORDS:
            commands.append(" ".join(words[:2]))
    return commands


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"


def test_readme_names_the_two_commands_first():
    commands = command_mentions((ROOT / "README.md").read_text())
    assert {"make reproduce", "make test"} <= set(commands), "README.md must name make reproduce and make test"
    first = commands[:2]
    assert sorted(first) == ["make reproduce", "make test"], (
        f"README.md's first commands are {first}: make reproduce and make test must come before any other")


@pytest.mark.parametrize("doc", documents(), ids=rel)
def test_include_blocks_equal_their_files(doc):
    assert doc.is_file(), f"{rel(doc)} is missing"
    problems = include_problems(doc)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", documents(), ids=rel)
def test_relative_links_resolve(doc):
    problems = link_problems(doc)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", documents(), ids=rel)
def test_no_path_outside_the_repository(doc):
    assert OUTSIDE not in doc.read_text(), f"{rel(doc)} mentions {OUTSIDE}"


def test_checks_catch_what_they_should(tmp_path, monkeypatch):
    """The helpers flag a changed block, a missing include, a broken link, an ignored path and a
    command before make reproduce (so a passing suite means something)."""
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "t.md").write_text("### T\n\n| a |\n|---|\n| 1 |\n")
    doc = tmp_path / "d.md"
    doc.write_text("<!-- include: t.md -->\n### T\n\n| a |\n|---|\n| 1 |\n<!-- /include -->\n")
    assert include_problems(doc) == []
    doc.write_text("<!-- include: t.md -->\n### T\n\n| a |\n|---|\n| 2 |\n<!-- /include -->\n")
    assert "differs" in include_problems(doc)[0]
    doc.write_text("<!-- include: gone.md -->\nx\n<!-- /include -->\n")
    assert "gone.md does not exist" in include_problems(doc)[0]
    doc.write_text("[a](t.md) [b](t.md#x) [c](https://example.org) [d](#y) `[e](nowhere.md)` [f](missing.md)\n")
    assert [p.split(": ")[-1] for p in link_problems(doc)] == ["missing.md does not exist"]
    doc.write_text("[a](t.md) [b](t.md#x) [c](https://example.org) [d](#y)\n")
    assert link_problems(doc) == []
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("t.md\n")
    assert "git ignores it" in link_problems(doc)[0]
    assert command_mentions("`aahr` is\n```bash\naahr --help\nmake reproduce\n```\n`make test`\n") == [
        "aahr --help", "make reproduce", "make test"]


def refresh() -> int:
    """Rewrite every include block from its file, and the README's measured blocks; say which changed."""
    changed = 0
    for doc in documents():
        text = doc.read_text()

        def fill(m: re.Match) -> str:
            path = ROOT / m["path"]
            if not path.is_file():
                print(f"{rel(doc)}: {m['path']} does not exist; block left as it is", file=sys.stderr)
                return m.group()
            body = path.read_text()
            return f"<!-- include: {m['path']} -->\n{body}{'' if body.endswith(chr(10)) else chr(10)}<!-- /include -->"

        new = INCLUDE.sub(fill, text)
        if doc.name == "README.md":
            new = MEASURED_RE.sub(lambda m: measured_block(m["name"], MEASURED[m["name"]]()), new)
        if new != text:
            doc.write_text(new)
            changed += 1
            print(f"refreshed {rel(doc)}")
    return changed


def numerics_cost(path: Path) -> str:
    """How the README states the pinning cost of results/benchmarks/numerics.json."""
    ratio = json.loads(path.read_text())["pinned_over_native"]
    return ", ".join(f"{100 * (r - 1):+.0f}% (`{v}`)" for v, r in ratio.items())


def test_numerics_cost_reads_every_variant(tmp_path):
    (tmp_path / "n.json").write_text(json.dumps({"pinned_over_native": {"gpo": 1.031, "aahr": 0.98}}))
    assert numerics_cost(tmp_path / "n.json") == "+3% (`gpo`), -2% (`aahr`)"


# The README's headline: the study's verdict per module. (README label, Table 4 method, the module's
# name in module_health.csv or None, sign): the sign turns Table 4's "row minus aahr" into the
# module's effect, what aahr gains by having it (the interaction is already aahr's side of the 2 x 2).
VERDICT_ROWS = (("the global branch", "no_global", "fusion", -1), ("the relation GNN", "no_gnn", "relation", -1),
                ("the prototypes", "no_proto", "prototypes", -1), ("MoCo", "no_moco", "moco", -1),
                ("the global branch x the GNN (interaction)", "interaction: global x gnn", None, 1),
                ("the four modules together (`base`)", "base", None, -1),
                ("AAHR against the baseline (`gpo`)", "gpo", None, -1))


def verdict_table(table4: Path, health: Path) -> str:
    """Per module: its effect on the test 1K rsum with the paired 95% interval over the training
    seeds, what the interval says, and the module's status in each of aahr's runs."""
    with open(table4) as f:
        rows = {r["method"]: r for r in csv.DictReader(f) if r["dataset"] == "synth"}
    with open(health) as f:
        status = {(r["module"], r["seed"]): r["status"] for r in csv.DictReader(f) if r["variant"] == "aahr"}
    lines = ["| module | effect on the test 1K rsum, 95% CI | verdict | status in aahr's runs |",
             "|---|---|---|---|"]
    for label, method, module, sign in VERDICT_ROWS:
        r = rows[method]
        low, high = sorted(sign * float(r[f"rsum_1k_ci95_{end}"]) for end in ("low", "high"))
        seen = collections.Counter(s for (m, _), s in status.items() if m == module)
        states = ", ".join(f"{s} {n}/{sum(seen.values())}" for s, n in sorted(seen.items())) or "-"
        lines.append(f"| {label} | {sign * float(r['rsum_1k_diff']):+.1f} [{low:+.1f}, {high:+.1f}] | "
                     f"{r['rsum_1k_verdict'].split(': ', 1)[1]} | {states} |")
    return "\n".join(lines)


# The README's measured blocks, by name: the function that states each from its file.
MEASURED = {"numerics-cost": lambda: numerics_cost(ROOT / "results/benchmarks/numerics.json")}


def measured_block(name: str, value: str) -> str:
    """A measured block; a value of several lines (a table) sits on lines of its own."""
    body = f"\n{value}\n" if "\n" in value else value
    return f"<!-- measured: {name} -->{body}<!-- /measured -->"


def test_readme_measured_blocks_are_their_files():
    found = {m["name"]: m["value"].strip() for m in MEASURED_RE.finditer((ROOT / "README.md").read_text())}
    assert set(found) == set(MEASURED), f"README.md's measured blocks are {sorted(found)}, expected {sorted(MEASURED)}"
    stale = sorted(name for name, value in found.items() if value != MEASURED[name]())
    assert not stale, (f"README.md: measured blocks differ from their files: {', '.join(stale)} "
                       "(python tests/test_docs.py --refresh)")


def test_the_verdict_table_reads_signs_and_statuses(tmp_path):
    """A module whose removal raises the rsum hurts: its effect is negative, its interval flipped;
    the interaction keeps its sign; each run's status is counted once."""
    rows = [("no_global", "+11.2", "+7.2", "+15.2", "the global module: hurts"),
            ("no_gnn", "-0.6", "-5.4", "+4.2", "the gnn module: no detectable effect"),
            ("no_proto", "+0.5", "-1.0", "+2.0", "the proto module: no detectable effect"),
            ("no_moco", "-20.0", "-25.0", "-15.0", "the moco module: helps"),
            ("interaction: global x gnn", "-6.2", "-8.6", "-3.7", "global x gnn: together worse than their separate effects add up"),
            ("base", "+9.1", "+6.9", "+11.4", "the four modules together: hurts"),
            ("gpo", "+32.4", "+19.9", "+44.9", "aahr vs the baseline: aahr worse")]
    (tmp_path / "t4.csv").write_text("dataset,method,rsum_1k_diff,rsum_1k_ci95_low,rsum_1k_ci95_high,rsum_1k_verdict\n"
                                     + "".join(f"synth,{','.join(r)}\n" for r in rows))
    (tmp_path / "h.csv").write_text("variant,seed,module,metric,status\n"
                                    "aahr,0,fusion,gate_mean,alive\naahr,0,fusion,gate_q05,alive\n"
                                    "aahr,1,fusion,gate_mean,untrained\nno_gnn,0,fusion,gate_mean,inert\n")
    table = verdict_table(tmp_path / "t4.csv", tmp_path / "h.csv").splitlines()
    assert table[2] == "| the global branch | -11.2 [-15.2, -7.2] | hurts | alive 1/2, untrained 1/2 |"
    assert table[5] == "| MoCo | +20.0 [+15.0, +25.0] | helps | - |"
    assert table[6].split(" | ")[1] == "-6.2 [-8.6, -3.7]"
    assert table[8].startswith("| AAHR against the baseline (`gpo`) | -32.4 [-44.9, -19.9] | aahr worse")
    assert measured_block("a", "x") == "<!-- measured: a -->x<!-- /measured -->"


if __name__ == "__main__":
    if sys.argv[1:] != ["--refresh"]:
        sys.exit("usage: python tests/test_docs.py --refresh   (rewrite the include and measured blocks from their files)")
    refresh()

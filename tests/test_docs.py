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
- The measured numbers of the README (``<!-- measured: NAME -->VALUE<!-- /measured -->``) are all
  filled in: a value still reading TBD fails.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 200

# The README's measured numbers, by name: each must be present and filled in.
MEASURED = {"numerics-cost"}

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


def test_readme_measured_numbers_are_filled_in():
    found = {m["name"]: m["value"].strip() for m in MEASURED_RE.finditer((ROOT / "README.md").read_text())}
    assert set(found) == MEASURED, f"README.md's measured numbers are {sorted(found)}, expected {sorted(MEASURED)}"
    unfilled = sorted(name for name, value in found.items() if not value or value.upper() == "TBD")
    assert not unfilled, f"README.md: measured numbers still to fill in: {', '.join(unfilled)}"


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
    """Rewrite every include block from its file; say which changed."""
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
        if new != text:
            doc.write_text(new)
            changed += 1
            print(f"refreshed {rel(doc)}")
    return changed


if __name__ == "__main__":
    if sys.argv[1:] != ["--refresh"]:
        sys.exit("usage: python tests/test_docs.py --refresh   (rewrite the include blocks from their files)")
    refresh()


def numerics_cost(path: Path) -> str:
    """How the README states the pinning cost of results/benchmarks/numerics.json."""
    ratio = json.loads(path.read_text())["pinned_over_native"]
    return ", ".join(f"{100 * (r - 1):+.0f}% (`{v}`)" for v, r in ratio.items())


def test_the_pinning_cost_is_the_benchmarks():
    found = {m["name"]: m["value"].strip() for m in MEASURED_RE.finditer((ROOT / "README.md").read_text())}
    assert found["numerics-cost"] == numerics_cost(ROOT / "results/benchmarks/numerics.json")


def test_numerics_cost_reads_every_variant(tmp_path):
    (tmp_path / "n.json").write_text(json.dumps({"pinned_over_native": {"gpo": 1.031, "aahr": 0.98}}))
    assert numerics_cost(tmp_path / "n.json") == "+3% (`gpo`), -2% (`aahr`)"

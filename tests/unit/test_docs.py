"""The docs a newcomer reads: a short README, commands that name real scripts and flags, links that
resolve, no issue numbers, every node help page pointing at an existing guide."""

from __future__ import annotations

import re

import pytest

from tools import REPO
from tools.docs import node_help

USER_DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md")), *sorted((REPO / "web" / "docs").glob("*.md"))]
FENCE = re.compile(r"```[a-z]*\n(.*?)```", re.S)
INLINE = re.compile(r"`([^`\n]+)`")
PYTHON_M = re.compile(r"^(?:\.venv[-\w]*/bin/)?python3? -m ([\w.]+)(.*)$")
MAKE = re.compile(r"^make ([\w.-]+)")


def commands(text: str) -> list[str]:
    """Command lines of fenced blocks, and inline `python -m ...` / `make ...` spans."""
    lines = [line.strip() for block in FENCE.findall(text) for line in block.splitlines()]
    lines += [span.strip() for span in INLINE.findall(FENCE.sub("", text))]
    return [line.split("  #")[0].split(" # ")[0].strip() for line in lines
            if PYTHON_M.match(line) or MAKE.match(line)]


def module_source(module: str) -> str:
    path = REPO.joinpath(*module.split("."))
    files = sorted(path.glob("*.py")) if path.is_dir() else [path.with_suffix(".py")]
    assert files and all(f.is_file() for f in files), f"no module {module}"
    return "\n".join(f.read_text() for f in files)


def problems(command: str) -> list[str]:
    if m := MAKE.match(command):
        makefile = (REPO / "Makefile").read_text()
        return [] if re.search(rf"^{re.escape(m.group(1))}:", makefile, re.M) else [f"no make target {m.group(1)}"]
    module, rest = PYTHON_M.match(command).groups()
    if not module.startswith("tools"):
        return []
    source = module_source(module)
    out = []
    for word in re.findall(r'"[^"]*"|\S+', rest):
        if word.startswith("--"):
            flag = word.split("=")[0]
            if f'"{flag}"' not in source:
                out.append(f"{module} has no flag {flag}")
    sub = rest.split()
    if sub and not sub[0].startswith("-") and module == "tools.runtime" and f'"{sub[0]}"' not in source:
        out.append(f"{module} has no command {sub[0]}")
    return out


def test_the_readme_is_short():
    assert len((REPO / "README.md").read_bytes()) <= 15_000


def test_the_command_check_finds_wrong_commands():
    assert problems(".venv/bin/python -m tools.benchmarks.bench_caching --steps 28") == []
    assert problems(".venv/bin/python -m tools.benchmarks.bench_caching --stepz 28") == [
        "tools.benchmarks.bench_caching has no flag --stepz"]
    assert problems("make tset") == ["no make target tset"]
    with pytest.raises(AssertionError, match="no module"):
        problems(".venv/bin/python -m tools.benchmarks.bench_nothing")


def test_every_command_in_the_docs_names_an_existing_script_and_flags():
    found = {}
    for path in USER_DOCS:
        for command in commands(path.read_text()):
            if bad := problems(command):
                found[f"{path.relative_to(REPO)}: {command}"] = bad
    assert not found, found


def test_links_between_the_docs_resolve():
    broken = []
    for path in USER_DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue
            if not (path.parent / target.split("#")[0]).exists():
                broken.append(f"{path.relative_to(REPO)} -> {target}")
    assert not broken, broken


def test_no_issue_numbers_in_user_facing_docs():
    hits = [f"{path.relative_to(REPO)}: {m.group(0)}" for path in USER_DOCS
            for m in re.finditer(r"\bissues? #?\d+", path.read_text(), re.I)]
    assert not hits, hits


def test_every_help_page_links_to_an_existing_guide():
    assert set(node_help.GUIDES) == set(node_help.HELP)
    for guide in node_help.GUIDES.values():
        assert (REPO / "docs" / "guides" / f"{guide}.md").is_file(), guide

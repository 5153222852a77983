"""The repository's layout rules: one way into the pack, tools import no tests, no import cycle among tools."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from comfyui_ditaccel.accel_core.adapters import ADAPTERS, ALL_HOOKS, HOOK_MODEL_CALL

import tools

REPO = tools.REPO
SKIP = {".venv", ".venv-newest", ".venv-registry", ".comfy", ".comfy-newest", ".git", "out", ".train", ".train_video"}


def python_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if not SKIP & set(p.relative_to(REPO).parts))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Every module of `known` that `path` imports, at any depth of the file (function-level imports too)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return found & known


def test_tools_import_each_other_without_a_cycle_and_never_import_tests():
    files = python_files(REPO / "tools")
    known = {module_name(p) for p in files}
    graph = {module_name(p): imported_modules(p, known) - {module_name(p)} for p in files}
    test_helpers = {module_name(p).rpartition(".")[2] for p in python_files(REPO / "tests")}
    for path in files:
        text = path.read_text()
        nodes = list(ast.walk(ast.parse(text)))
        imports = {a.name.split(".")[0] for n in nodes if isinstance(n, ast.Import) for a in n.names}
        imports |= {(n.module or "").split(".")[0] for n in nodes if isinstance(n, ast.ImportFrom) and not n.level}
        assert not imports & ({"tests"} | test_helpers), f"{path.relative_to(REPO)} imports test code"

    visiting, done = [], set()

    def visit(name: str) -> None:
        if name in done:
            return
        assert name not in visiting, "import cycle: " + " -> ".join([*visiting[visiting.index(name):], name])
        visiting.append(name)
        for dep in sorted(graph[name]):
            visit(dep)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
    # the roles depend one way: runtime's library modules import no benchmark, training or workflow module
    for name, deps in graph.items():
        if name.startswith("tools.runtime.") and name != "tools.runtime.__main__":
            assert all(d == "tools" or d.startswith("tools.runtime") for d in deps), (name, deps)


def test_sys_path_is_edited_in_one_place_and_the_repo_root_stays_off_it():
    inserting = [p.relative_to(REPO).as_posix() for p in python_files(REPO)
                 if p != Path(__file__) and "sys.path.insert" in p.read_text()]
    assert set(inserting) <= {"tools/__init__.py", "tests/conftest.py"}, inserting
    # pytest's `pythonpath` and `python -m` put the root there; importing `tools` takes it off again, so
    # the pack's nodes/ cannot shadow ComfyUI's `nodes`
    assert all(Path(p or ".").resolve() != REPO for p in sys.path)
    assert sys.modules["comfyui_ditaccel"].__file__ == str(REPO / "__init__.py")


def test_every_family_lists_only_real_hooks_and_the_model_call():
    for adapter in ADAPTERS:
        assert adapter.hooks <= ALL_HOOKS and adapter.offers(HOOK_MODEL_CALL), adapter.family

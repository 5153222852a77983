"""Measured figures live in docs/results/, not in the code's docstrings and comments (they go stale
with every rerun). A docstring or comment says why and points to the results page."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("accel_core", "nodes", "kernels")
# a decibel figure, a speed-up ("2.9x", "3 ×"), a percentage, a time per step or image
FIGURE = re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s?(?:dB|×|%)|(?<![\w.])\d+\.\d+x\b"
                    r"|(?<![\w.])\d+(?:\.\d+)?\s?(?:s|ms) (?:per|a step|an image|for)\b")
# numbers with those units that are not measurements: design targets and definitions
ALLOWED = (
    "10 % of the model's weights",  # the memory contract's target (accel_core/memory.py)
)


def doc_texts(path: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of every docstring line and comment in `path`."""
    source = path.read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                for i, line in enumerate(doc.splitlines()):
                    yield node.body[0].lineno + i, line
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            yield tok.start[0], tok.string


def figures(text: str) -> list[str]:
    for allowed in ALLOWED:
        text = text.replace(allowed, "")
    return [m.group(0) for m in FIGURE.finditer(text)]


def test_the_pattern_finds_figures_and_passes_the_rest():
    assert figures("gains ~3 dB for ~3 % of the FLOPs") == ["3 dB", "3 %"]
    assert figures("2.90x with `output`, 2.5 × faster, 0.4 s per step") == ["2.90x", "2.5 ×", "0.4 s per"]
    assert figures("a 3 x 3 kernel, 1 + 4k frames, layer 9 of 24, sm_80, fp16") == []
    assert figures("max(2 GB, 10 % of the model's weights)") == []


def test_no_measured_figure_in_docstrings_or_comments():
    found = [f"{path.relative_to(ROOT)}:{line}: {hit!r} in {text.strip()[:100]!r}"
             for folder in SCANNED for path in sorted((ROOT / folder).rglob("*.py"))
             for line, text in doc_texts(path) for hit in figures(text)]
    assert not found, "measured figures belong in docs/results/:\n" + "\n".join(found)


def test_every_config_field_is_documented_where_it_is_defined():
    """Each field of a method's Config carries a comment on its line (once: a subclass that only
    changes a default leans on its base's comment)."""
    bare = []
    for path in sorted((ROOT / "accel_core").rglob("*.py")):
        source = path.read_text()
        commented = {tok.start[0] for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                     if tok.type == tokenize.COMMENT}
        documented, fields = set(), []
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Config"):
                for item in node.body:
                    if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        name = item.target.id
                        fields.append((node.name, name, item.lineno))
                        if item.lineno in commented:
                            documented.add(name)
        bare += [f"{path.relative_to(ROOT)}:{line}: {cls}.{name}" for cls, name, line in fields
                 if name not in documented]
    assert not bare, "Config fields without a comment:\n" + "\n".join(bare)

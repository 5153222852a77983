"""The method x family matrix (tools/benchmarks/family_matrix.py) on real ComfyUI, and the docs' copy of it."""

from __future__ import annotations

from tools.benchmarks import family_matrix
from tools.runtime import dit_runtime


def test_every_method_engages_on_every_family_or_gives_its_documented_reason():
    cells = family_matrix.matrix()
    assert {c.family for c in cells} == set(family_matrix.FAMILIES)
    for c in cells:
        assert c.ok or c.method in family_matrix.EXPECTED_UNSUPPORTED, (c.family, c.method, c.detail)
    # the block-level methods engage on every family whose test model can show it
    for method in ("TaylorSeer", "SoftPAG", "SparseAttention"):
        assert all(c.engaged and c.ok for c in cells if c.method == method), method
    page = (dit_runtime.REPO / "docs" / "results" / "families.md").read_text()
    assert family_matrix.markdown(cells) in page, \
        "docs/results/families.md matrix is stale: run tools/benchmarks/family_matrix.py"

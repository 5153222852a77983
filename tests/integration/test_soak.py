"""The soak tool's short run (40 prompts of random stacks, sizes, samplers, queue depth, interrupts and invalid inputs
against its own real server): no failure, the reference prompt bit-identical, every invalid prompt refused."""

from __future__ import annotations

import pytest

from tools.benchmarks import soak

SEED = 3  # draws 4 invalid prompts and 7 interrupts among its 40 prompts


@pytest.mark.timeout(900)
def test_a_short_soak_run_has_no_failure(tmp_path):
    drawn = soak.draw_jobs(40, SEED, pack=True)
    invalid = sum(job.kind == "invalid" for job in drawn)
    result = soak.soak(prompts=40, seed=SEED, pack=True, minutes=14, log=tmp_path / "server.log")
    counts = result["counts"]
    assert result["prompts"] == 40, result
    assert not any(counts.get(k) for k in (*soak.FAILURES, "crash")), result["messages"]
    assert result["reference_runs"] == 4 and result["reference_identical"] == 4
    assert counts.get("refused", 0) == invalid >= 3, counts
    assert counts.get("interrupted", 0) >= 1 and counts.get("ok", 0) >= 25, counts
    assert result["of_them_ok"] == result["prompts_after_an_interrupt"]

"""TaylorSeer on a real ComfyUI model in process: computed steps are the baseline's, forecasts skip the stack."""

from __future__ import annotations

import pytest
import torch
from comfy_fixtures import WAN_FILE, load_model, sample
from comfyui_ditaccel.accel_core.adapters import WAN21
from comfyui_ditaccel.accel_core.caching.apply import apply_cg_taylor, apply_first_block_cache, apply_taylorseer
from comfyui_ditaccel.accel_core.caching.first_block import CGTaylorConfig, FirstBlockCacheConfig
from comfyui_ditaccel.accel_core.caching.taylorseer import TaylorSeerConfig
from comfyui_ditaccel.accel_core.comfy_patch import attach, report_holder, set_block_patches


@pytest.fixture(scope="module")
def wan():
    return load_model(WAN_FILE)


def test_interval_one_is_bit_identical_to_the_baseline(wan):
    base = sample(wan, steps=6)
    m = apply_taylorseer(wan, TaylorSeerConfig(interval=1, warmup_steps=0))
    assert torch.equal(sample(m, steps=6), base)
    assert all(s.ran == "full" for s in report_holder(m).latest.steps())


def test_forecast_steps_skip_every_block_and_full_steps_match_the_baseline(wan):
    config = TaylorSeerConfig(interval=3, order=1, warmup_steps=2)
    blocks_seen = []

    def count(args, call_block, site, ctx):
        blocks_seen.append(ctx.step)
        return call_block(args)

    # a probe installed first sits under TaylorSeer's patches: it sees the blocks that really ran
    probe, adapter = attach(wan, None)
    set_block_patches(probe, adapter, "test.count", count)
    m = apply_taylorseer(probe, config)
    sample(m, steps=10)
    record = report_holder(m).latest
    full = config.schedule.full_steps(10)
    assert full == [0, 1, 4, 7, 9]
    assert sorted(set(blocks_seen)) == full
    ran = {s.step: s.ran for s in record.steps()}
    assert [s for s, r in ran.items() if r == "forecast"] == [2, 3, 5, 6, 8]
    assert record.flops_share == pytest.approx(5 / 10)
    assert not torch.isnan(sample(m, steps=10)).any()


@pytest.mark.parametrize("apply, config", [
    (apply_first_block_cache, FirstBlockCacheConfig(threshold=0.0)),
    (apply_cg_taylor, CGTaylorConfig(threshold=0.0)),
])
def test_gated_methods_at_threshold_zero_are_bit_identical(wan, apply, config):
    base = sample(wan, steps=6)
    m = apply(wan, config)
    assert torch.equal(sample(m, steps=6), base)
    assert all(s.ran == "full" for s in report_holder(m).latest.steps())


@pytest.mark.parametrize("apply, config", [
    (apply_first_block_cache, FirstBlockCacheConfig(threshold=2.0, max_skips=2, warmup_steps=2)),
    (apply_cg_taylor, CGTaylorConfig(threshold=2.0, max_skips=2, warmup_steps=2)),
])
def test_gated_methods_skip_the_rest_of_the_stack(wan, apply, config):
    m = apply(wan, config)
    out = sample(m, steps=10)
    assert torch.isfinite(out).all()
    steps = report_holder(m).latest.steps()
    # warm-up 0-1 full; then at most two skips in a row; the last step full
    assert [s.step for s in steps if s.ran == "partial"] == [2, 3, 5, 6, 8]
    blocks = WAN21.block_count(wan.get_model_object("diffusion_model"))
    for s in steps:
        if s.ran == "partial":
            assert s.flops_run == pytest.approx(s.flops_full / blocks)  # only block 0 of equal blocks ran

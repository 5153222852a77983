"""TaylorSeer on a real ComfyUI model in process: computed steps are the baseline's, forecasts skip the stack."""

from __future__ import annotations

import pytest
import torch
from comfy.patcher_extension import WrappersMP
from comfyui_ditaccel.accel_core.adapters import WAN21
from comfyui_ditaccel.accel_core.caching.apply import apply_cg_taylor, apply_first_block_cache, apply_taylorseer
from comfyui_ditaccel.accel_core.caching.first_block import CGTaylorConfig, FirstBlockCacheConfig
from comfyui_ditaccel.accel_core.caching.taylorseer import TaylorSeerConfig
from comfyui_ditaccel.accel_core.comfy_patch import attach, report_holder, set_block_patches

from tools.runtime.sampling import WAN_FILE, load_model, sample


@pytest.fixture(scope="module")
def wan():
    return load_model(WAN_FILE)


@pytest.mark.parametrize("granularity", ["output", "blocks"])
def test_interval_one_is_bit_identical_to_the_baseline(wan, granularity):
    base = sample(wan, steps=6)
    m = apply_taylorseer(wan, TaylorSeerConfig(interval=1, warmup_steps=0, granularity=granularity))
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
    assert [s.step for s in steps if s.ran == "gated"] == [2, 3, 5, 6, 8]
    blocks = WAN21.block_count(wan.get_model_object("diffusion_model"))
    for s in steps:
        if s.ran == "gated":
            assert s.flops_run == pytest.approx(s.flops_full / blocks)  # only block 0 of equal blocks ran


def test_modules_granularity_interval_one_is_bit_identical_and_keeps_weight_names(wan):
    base = sample(wan, steps=6)
    m = apply_taylorseer(wan, TaylorSeerConfig(interval=1, warmup_steps=0, granularity="modules"))
    assert torch.equal(sample(m, steps=6), base)
    names = sorted(n for n, _ in wan.get_model_object("diffusion_model").named_parameters())
    m.patch_model()
    try:
        patched = m.get_model_object("diffusion_model")
        assert type(patched.blocks[0].ffn).__name__ == "ModuleWrapper"
        # LoRA and low-VRAM loading address weights by name: the wrappers keep every name
        assert sorted(n for n, _ in patched.named_parameters()) == names
    finally:
        m.unpatch_model()
    assert type(wan.get_model_object("diffusion_model").blocks[0].ffn).__name__ == "Sequential"


def test_modules_granularity_forecasts_every_module_and_skips_their_work(wan):
    config = TaylorSeerConfig(interval=3, order=1, warmup_steps=2, granularity="modules")
    computed = []

    def count(args, call_block, site, ctx):
        computed.append(ctx.step)
        return call_block(args)

    base = sample(wan, steps=10)
    m = apply_taylorseer(wan, config)
    out = sample(m, steps=10)
    record = report_holder(m).latest
    assert [s.step for s in record.steps() if s.ran == "forecast"] == [2, 3, 5, 6, 8]
    assert torch.isfinite(out).all() and not torch.equal(out, base)
    # forecasting the modules is closer to the full run than forecasting the stack output
    blocks = sample(apply_taylorseer(wan, TaylorSeerConfig(interval=3, order=1, warmup_steps=2)), steps=10)
    err = ((out - base).norm() / base.norm()).item()
    assert err < 0.5 and torch.isfinite(blocks).all()


@pytest.mark.parametrize("granularity", ["output", "blocks", "modules"])
@pytest.mark.parametrize("order", [1, 2])
def test_state_holds_order_plus_one_tensors_per_stream(wan, granularity, order):
    m = apply_taylorseer(wan, TaylorSeerConfig(interval=2, order=order, warmup_steps=0, granularity=granularity))
    sample(m, steps=8, cfg=2.0, size=(64, 64))  # 4 x 4 image tokens, cond + uncond streams
    record = report_holder(m).latest
    dim = wan.get_model_object("diffusion_model").dim
    layers = WAN21.block_count(wan.get_model_object("diffusion_model"))
    hidden = 16 * dim * 4  # one stream's (1, 16, dim) fp32 hidden state
    per_copy = {"output": 16 * 1 * 8 * 8 * 4,  # one stream's (1, 16, 1, 8, 8) fp32 latent-sized output
                "blocks": hidden, "modules": 3 * layers * hidden}[granularity]
    assert record.state_bytes == 2 * (order + 1) * per_copy


@pytest.mark.parametrize("granularity", ["output", "blocks"])
def test_forecast_steps_match_the_forecast_of_the_stored_values(wan, granularity):
    """Order 0 reuses the last full step's value: of the model's output (`output`), or of the stack's."""
    outputs = []

    def keep(executor, *args, **kwargs):
        outputs.append(executor(*args, **kwargs))
        return outputs[-1]

    # a wrapper installed first is the outermost: it sees every call's output, forecast or run
    probe = wan.clone()
    probe.add_wrapper_with_key(WrappersMP.DIFFUSION_MODEL, "test.keep", keep)
    m = apply_taylorseer(probe, TaylorSeerConfig(interval=3, order=0, warmup_steps=1, granularity=granularity))
    sample(m, steps=7, cfg=1.0)
    ran = [s.ran for s in report_holder(m).latest.steps()]
    assert ran == ["full", "forecast", "forecast", "full", "forecast", "forecast", "full"]
    assert len(outputs) == 7  # CFG 1: one call per step
    if granularity == "output":
        assert torch.equal(outputs[1], outputs[0]) and torch.equal(outputs[2], outputs[0])
        assert torch.equal(outputs[4], outputs[3]) and torch.equal(outputs[5], outputs[3])
    else:  # the head runs with each step's own modulation
        assert not torch.equal(outputs[1], outputs[0])


def test_granularity_can_change_on_a_model_already_patched(wan):
    """A second TaylorSeer node replaces the first, whatever granularity each uses: one forecast, not two."""
    blocks_then_output = apply_taylorseer(apply_taylorseer(wan, TaylorSeerConfig(interval=3, granularity="blocks")),
                                          TaylorSeerConfig(interval=2, order=0, warmup_steps=1))
    output_then_blocks = apply_taylorseer(apply_taylorseer(wan, TaylorSeerConfig(interval=2)),
                                          TaylorSeerConfig(interval=3, order=0, warmup_steps=1, granularity="blocks"))
    assert torch.equal(sample(blocks_then_output, steps=7),
                       sample(apply_taylorseer(wan, TaylorSeerConfig(interval=2, order=0, warmup_steps=1)), steps=7))
    assert torch.equal(sample(output_then_blocks, steps=7),
                       sample(apply_taylorseer(wan, TaylorSeerConfig(interval=3, order=0, warmup_steps=1,
                                                                     granularity="blocks")), steps=7))
    assert not blocks_then_output.model_options["transformer_options"].get("patches_replace", {}).get("dit")


def test_preset_scales_its_interval_with_the_step_count():
    preset = TaylorSeerConfig(interval=5, warmup_steps=4, reference_steps=28)
    assert preset.at_steps(28).interval == 5 and preset.at_steps(28).warmup_steps == 4
    # warm-up in proportion (the same share of the run); the interval with the square root of the ratio
    assert preset.at_steps(50).interval == 7 and preset.at_steps(50).warmup_steps == 7
    assert TaylorSeerConfig(interval=3).at_steps(50).interval == 3  # custom values are used as given
    gate = CGTaylorConfig(max_skips=3, warmup_steps=2, reference_steps=28).at_steps(112)
    assert (gate.max_skips, gate.warmup_steps) == (6, 8)


@pytest.mark.parametrize("sampler", ["heun", "dpmpp_2s_ancestral"])
@pytest.mark.parametrize("apply, config", [
    (apply_taylorseer, TaylorSeerConfig(interval=3, order=0, warmup_steps=2)),
    (apply_taylorseer, TaylorSeerConfig(interval=3, order=2, warmup_steps=2, granularity="blocks")),
    (apply_taylorseer, TaylorSeerConfig(interval=3, order=0, warmup_steps=2, threshold=1.0)),
    (apply_cg_taylor, CGTaylorConfig(threshold=2.0, max_skips=2, warmup_steps=2)),
    (apply_first_block_cache, FirstBlockCacheConfig(threshold=2.0, max_skips=2, warmup_steps=2)),
])
def test_two_model_calls_per_step_follow_the_step(wan, sampler, apply, config):
    m = apply(wan, config)
    out = sample(m, steps=8, sampler=sampler)
    assert torch.isfinite(out).all()
    record = report_holder(m).latest
    steps = record.steps()
    assert [s.step for s in steps] == list(range(8))
    # two evaluations per step but the last (sigma 0 ends with Euler); the sampler's step callback
    # fires between them, so the second evaluation counts in the next step's plan
    assert len(record.calls) == 2 * 8 - 1
    assert [s.calls for s in steps] == [1] + [2] * 7
    if apply is apply_taylorseer:  # its plan is per step; the gates decide per call
        assert all("," not in s.ran for s in steps), [s.ran for s in steps]
    assert any(s.ran.split(" x")[0] in ("forecast", "gated") for s in steps)
    base = sample(wan, steps=8, sampler=sampler)
    # 8 steps, half of them forecast: a coarse run, but in the baseline's neighbourhood
    assert ((out - base).norm() / base.norm()).item() < 0.75


@pytest.mark.parametrize("apply, config", [
    (apply_taylorseer, TaylorSeerConfig(interval=3, order=2, warmup_steps=2)),
    (apply_taylorseer, TaylorSeerConfig(interval=4, order=0, warmup_steps=2, threshold=0.15, granularity="blocks")),
    (apply_cg_taylor, CGTaylorConfig(threshold=0.5, max_skips=2, warmup_steps=2)),
    (apply_first_block_cache, FirstBlockCacheConfig(threshold=0.5, max_skips=2, warmup_steps=2)),
])
def test_cond_and_uncond_in_one_batch_or_in_two_calls(wan, apply, config):
    m = apply(wan, config)
    batched = sample(m, steps=8, cfg=3.0)
    apart = m.clone()
    # ComfyUI runs cond and uncond as separate calls when they do not fit in memory together;
    # a model option of its own forces that here
    apart.model_options["sampler_calc_cond_batch_function"] = separate_calls
    separate = sample(apart, steps=8, cfg=3.0)
    calls = report_holder(apart).latest.calls
    assert len(calls) == 2 * 8 and all(c.batch == 1 for c in calls)
    if apply is apply_taylorseer:  # same plan, same forecasts: only float summation order differs
        assert [s.ran for s in report_holder(apart).latest.steps()] == [s.ran for s in report_holder(m).latest.steps()]
        assert torch.allclose(separate, batched, atol=1e-4, rtol=1e-4)
    else:  # a gate asked per call may let cond skip where uncond runs, so close, not equal
        assert ((separate - batched).norm() / batched.norm()).item() < 0.3


def separate_calls(args: dict) -> list:
    import comfy.samplers

    model, x, timestep, options = args["model"], args["input"], args["sigma"], args["model_options"]
    return [comfy.samplers.calc_cond_batch(model, [c], x, timestep, options)[0] for c in args["conds"]]


def test_batch_of_two_matches_two_single_runs(wan):
    config = TaylorSeerConfig(interval=3, order=2, warmup_steps=2)
    m = apply_taylorseer(wan, config)
    pair = sample(m, steps=8, batch=2, seed=5)
    assert pair.shape[0] == 2 and torch.isfinite(pair).all()
    # the two samples differ (different noise) and the forecast keeps them apart
    assert not torch.allclose(pair[0], pair[1])
    base = sample(wan, steps=8, batch=2, seed=5)
    for i in range(2):
        assert ((pair[i] - base[i]).norm() / base[i].norm()).item() < 0.5


@pytest.mark.parametrize("granularity", ["output", "blocks", "modules"])
def test_adaptive_schedule_at_a_tiny_threshold_runs_every_step(wan, granularity):
    base = sample(wan, steps=6)
    m = apply_taylorseer(wan, TaylorSeerConfig(interval=8, warmup_steps=2, threshold=1e-6, granularity=granularity))
    assert torch.equal(sample(m, steps=6), base)
    steps = report_holder(m).latest.steps()
    assert all(s.ran == "full" for s in steps)
    assert all(s.gate_error > 1e-6 for s in steps[2:-1])  # each decided on its estimate


@pytest.mark.parametrize("granularity", ["output", "blocks", "modules"])
def test_adaptive_schedule_forecasts_while_the_estimate_is_below_the_threshold(wan, granularity):
    config = TaylorSeerConfig(interval=4, warmup_steps=2, threshold=0.15, granularity=granularity)
    m = apply_taylorseer(wan, config)
    out = sample(m, steps=14, cfg=2.0)
    steps = report_holder(m).latest.steps()
    forecast = [s for s in steps if s.ran == "forecast"]
    assert forecast and torch.isfinite(out).all()
    assert all(s.gate_error < 0.15 for s in forecast)
    last_full = 1
    for s in steps[2:-1]:
        if s.ran == "full":
            assert s.gate_error >= 0.15 or s.step - last_full >= 4, s
            last_full = s.step
        else:
            assert s.step - last_full < 4
    # a higher threshold never runs more full steps
    loose = apply_taylorseer(wan, TaylorSeerConfig(interval=4, warmup_steps=2, threshold=1.0, granularity=granularity))
    sample(loose, steps=14, cfg=2.0)
    assert report_holder(loose).latest.flops_share <= report_holder(m).latest.flops_share

"""RAS on a real ComfyUI model in process: it engages, is exact where it should be, stacks, refuses."""

from __future__ import annotations

import pytest
import torch
from comfyui_ditaccel.accel_core.adapters import UnsupportedModelError
from comfyui_ditaccel.accel_core.caching.apply import apply_taylorseer
from comfyui_ditaccel.accel_core.caching.taylorseer import TaylorSeerConfig
from comfyui_ditaccel.accel_core.comfy_patch import report_holder
from comfyui_ditaccel.accel_core.metrics import psnr
from comfyui_ditaccel.accel_core.spatial.apply import apply_ras
from comfyui_ditaccel.accel_core.spatial.ras import RASConfig

from tools.runtime.sampling import WAN_FILE, load_model, sample

SIZE = (128, 128)  # 16 x 16 latent → 8 x 8 = 64 image tokens
STEPS = 8


def config(**kw) -> RASConfig:
    return RASConfig(**{"sample_ratio": 0.25, "warmup_steps": 2, "dense_steps": 1, "final_dense_steps": 1, **kw})


@pytest.fixture(scope="module")
def wan():
    return load_model(WAN_FILE)


@pytest.fixture(scope="module")
def baseline(wan):
    return sample(wan, steps=STEPS, size=SIZE)


def test_engages_on_the_planned_steps_and_reports_the_tokens(wan, baseline):
    m = apply_ras(wan, config())
    out = sample(m, steps=STEPS, size=SIZE)
    record = report_holder(m).latest
    steps = record.steps()
    subset = [s.step for s in steps if s.ran == "subset"]
    assert subset == [2, 3, 5, 6]  # warm-up 0-1, refresh at 4, final 7
    assert all(s.tokens == "16/64" for s in steps if s.step in subset)
    assert all(s.tokens == "-" for s in steps if s.step not in subset)
    assert "48 of 64 tokens reused" in record.summary()
    assert 0.4 < record.flops_share < 0.8
    assert not torch.equal(out, baseline)
    assert psnr(out, baseline, data_range=float(baseline.max() - baseline.min())) > 20


def test_ratio_one_and_an_all_dense_plan_are_bit_identical_to_the_baseline(wan, baseline):
    # every token chosen: gathered, computed and scattered back unchanged, keys and values all fresh
    assert torch.equal(sample(apply_ras(wan, config(sample_ratio=1.0)), steps=STEPS, size=SIZE), baseline)
    m = apply_ras(wan, config(warmup_steps=STEPS))
    assert torch.equal(sample(m, steps=STEPS, size=SIZE), baseline)
    assert all(s.ran == "full" for s in report_holder(m).latest.steps())


def test_batch_two_with_cfg_on_a_rectangular_size_chooses_per_sample(wan):
    m = apply_ras(wan, config())
    out = sample(m, steps=STEPS, size=(128, 192), batch=2, seed=3)
    base = sample(wan, steps=STEPS, size=(128, 192), batch=2, seed=3)
    assert out.shape == base.shape and torch.isfinite(out).all()
    for i in range(2):
        assert psnr(out[i], base[i], data_range=float(base[i].max() - base[i].min())) > 20
    record = report_holder(m).latest
    assert record.calls[3].batch == 4 and record.calls[3].tokens_run == 24  # 8 x 12 tokens, a quarter of them


def test_sampled_alone_or_batched_with_another_sample_gives_the_same_image(wan):
    # the choice is per sample: sample 0 of a batch of two sees what it sees alone
    m = apply_ras(wan, config())
    pair = sample(m, steps=STEPS, size=SIZE, batch=2, seed=4)
    noise_first = sample(m, steps=STEPS, size=SIZE, batch=1, seed=4)
    assert torch.allclose(pair[:1], noise_first, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("ras_first", [True, False])
def test_stacks_with_taylorseer_in_either_order(wan, baseline, ras_first):
    ts = TaylorSeerConfig(interval=2, order=0, warmup_steps=2)
    if ras_first:
        m = apply_taylorseer(apply_ras(wan, config()), ts)
    else:
        m = apply_ras(apply_taylorseer(wan, ts), config())
    out = sample(m, steps=STEPS, size=SIZE)
    ran = {s.step: s.ran for s in report_holder(m).latest.steps()}
    assert "forecast" in ran.values() and "subset" in ran.values()
    assert psnr(out, baseline, data_range=float(baseline.max() - baseline.min())) > 18
    # RAS sits under TaylorSeer whatever the order: both orders compute the same thing
    other = (apply_ras(apply_taylorseer(wan, ts), config()) if ras_first
             else apply_taylorseer(apply_ras(wan, config()), ts))
    assert torch.equal(sample(other, steps=STEPS, size=SIZE), out)


def test_unsupported_family_is_refused_naming_what_is_supported():
    import comfy.sd

    from tools.runtime import dit_runtime

    sd3 = comfy.sd.load_diffusion_model(str(dit_runtime.ensure_sd3_tiny()))
    with pytest.raises(UnsupportedModelError, match=r"DiTAccelRAS.*SD3.*Supported: Wan"):
        apply_ras(sd3, config())


@pytest.mark.parametrize("spatial", ["ras", "jit"])
def test_runs_under_softpag_applied_first_and_its_perturbation_still_runs(wan, spatial):
    from comfyui_ditaccel.accel_core.guidance.apply import apply_softpag
    from comfyui_ditaccel.accel_core.guidance.softpag import SoftPAGConfig
    from comfyui_ditaccel.accel_core.settings import records
    from comfyui_ditaccel.accel_core.settings.resolve import Request
    from comfyui_ditaccel.accel_core.spatial.apply import apply_jit

    guided = apply_softpag(wan, SoftPAGConfig("2:all", 1.0, 3.0))
    m = apply_ras(guided, config()) if spatial == "ras" else apply_jit(guided, Request(records.JIT, "balanced"))
    out = sample(m, steps=STEPS, size=SIZE)
    record = report_holder(m).latest
    assert torch.isfinite(out).all() and any("subset" in s.ran for s in record.steps())
    assert len(record.calls) == 2 * STEPS  # the perturbed pass ran every step
    names = [type(f).__name__ for f in m.model_options["sampler_post_cfg_function"]]
    assert names[0] == "SoftPAGGuidance"  # guidance first, then what reads or rewrites its result


def test_ras_and_jit_on_one_model_are_refused(wan):
    from comfyui_ditaccel.accel_core.spatial.apply import apply_jit
    from comfyui_ditaccel.accel_core.spatial.jit import JiTConfig

    with pytest.raises(ValueError, match="DiTAccelJiT: DiTAccelRAS and DiTAccelJiT"):
        apply_jit(apply_ras(wan, config()), JiTConfig())


def test_wan22_modulation_per_frame_is_spread_to_tokens_as_the_block_does():
    from comfy.ldm.wan.model import repeat_e
    from comfyui_ditaccel.accel_core.spatial.subset_call import per_token_modulation

    x = torch.zeros(2, 10, 4)  # 10 tokens over 3 frames: an uneven split, as repeat_e handles it
    for frames in (1, 2, 3, 10):
        vec = torch.randn(2, frames, 6, 4)
        spread = per_token_modulation(vec, 10) if frames > 1 else vec
        for j in range(6):
            assert torch.equal(repeat_e(spread[:, :, j], x), repeat_e(vec[:, :, j], x))

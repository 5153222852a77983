"""JiT on a real ComfyUI model in process: stages engage, full density is exact, it stacks and refuses."""

from __future__ import annotations

import pytest
import torch
from comfyui_ditaccel.accel_core.adapters import UnsupportedModelError
from comfyui_ditaccel.accel_core.caching.apply import apply_taylorseer
from comfyui_ditaccel.accel_core.caching.taylorseer import TaylorSeerConfig
from comfyui_ditaccel.accel_core.comfy_patch import report_holder
from comfyui_ditaccel.accel_core.metrics import psnr
from comfyui_ditaccel.accel_core.spatial.apply import apply_jit
from comfyui_ditaccel.accel_core.spatial.jit import JiTConfig

from tools.runtime.sampling import WAN_FILE, load_model, sample

SIZE = (128, 128)  # 8 x 8 = 64 image tokens
STEPS = 8


def config(**kw) -> JiTConfig:
    return JiTConfig(**{"stages": (0.25, 0.5, 1.0), "densities": (0.4, 0.7, 1.0), **kw})


@pytest.fixture(scope="module")
def wan():
    return load_model(WAN_FILE)


@pytest.fixture(scope="module")
def baseline(wan):
    return sample(wan, steps=STEPS, size=SIZE)


@pytest.mark.parametrize("interpolate", ["clean", "velocity"])
def test_stages_grow_the_anchors_and_the_report_counts_them(wan, baseline, interpolate):
    m = apply_jit(wan, config(interpolate=interpolate))
    out = sample(m, steps=STEPS, size=SIZE)
    steps = report_holder(m).latest.steps()
    assert [s.tokens for s in steps] == ["26/64"] * 2 + ["45/64"] * 2 + ["-"] * 4
    assert [s.ran for s in steps] == ["subset"] * 4 + ["full"] * 4
    assert "38 of 64 tokens interpolated" in report_holder(m).latest.summary()
    assert torch.isfinite(out).all() and not torch.equal(out, baseline)
    assert psnr(out, baseline, data_range=float(baseline.max() - baseline.min())) > 12


def test_full_density_everywhere_is_bit_identical_to_the_baseline(wan, baseline):
    m = apply_jit(wan, JiTConfig(stages=(0.5, 1.0), densities=(1.0, 1.0)))
    assert torch.equal(sample(m, steps=STEPS, size=SIZE), baseline)


def test_batch_two_with_cfg_on_a_rectangular_size(wan):
    m = apply_jit(wan, config())
    out = sample(m, steps=STEPS, size=(128, 192), batch=2, seed=3)
    assert out.shape == (2, 16, 1, 16, 24) and torch.isfinite(out).all()
    first = report_holder(m).latest.calls[0]
    assert first.batch == 4 and first.tokens_run == round(0.4 * 96)
    alone = sample(m, steps=STEPS, size=(128, 192), batch=1, seed=3)
    assert torch.allclose(out[:1], alone, atol=1e-4, rtol=1e-4)  # anchors are chosen per sample


def test_stacks_with_taylorseer_in_either_order(wan):
    ts = TaylorSeerConfig(interval=2, order=0, warmup_steps=1)
    a = apply_taylorseer(apply_jit(wan, config()), ts)
    b = apply_jit(apply_taylorseer(wan, ts), config())
    out = sample(a, steps=STEPS, size=SIZE)
    ran = {s.ran for s in report_holder(a).latest.steps()}
    assert {"subset", "forecast"} <= ran
    assert torch.equal(sample(b, steps=STEPS, size=SIZE), out)


def test_unsupported_family_is_refused_naming_what_is_supported():
    import comfy.sd

    from tools.runtime import dit_runtime

    sd3 = comfy.sd.load_diffusion_model(str(dit_runtime.ensure_sd3_tiny()))
    with pytest.raises(UnsupportedModelError, match=r"DiTAccelJiT.*SD3.*Supported: Wan"):
        apply_jit(sd3, config())

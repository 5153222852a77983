"""Z-Image: Lumina 2's class at width 3840 (one main layer, random weights), whose forward pads the
text and the image each to a multiple of 32 tokens with learned pad tokens. Blocks are routed like
Lumina 2's; sparse attention must find the image between the paddings."""

from __future__ import annotations

import pytest
import torch
from comfy_fixtures import attention_counts
from comfyui_ditaccel.accel_core.adapters import LUMINA2, find_adapter
from comfyui_ditaccel.accel_core.attention.apply import apply_sparse_attention, joint_image_start
from comfyui_ditaccel.accel_core.attention.config import SparseAttentionConfig
from comfyui_ditaccel.accel_core.comfy_patch import report_holder

from tools.runtime import dit_runtime
from tools.runtime.sampling import conditioning, sample

TEXT = 2560  # Qwen3 4B's hidden size: what the model's text input takes
# 128 x 112 px: 8 x 7 = 56 image tokens, padded to 64; 5 text tokens, padded to 32
SIZE = (128, 112)


@pytest.fixture(scope="module")
def zimage():
    import comfy.sd

    return comfy.sd.load_diffusion_model(str(dit_runtime.ensure_zimage_thin()))


def draw(model, steps: int = 2) -> torch.Tensor:
    return sample(model, steps=steps, size=SIZE, video=False, positive=conditioning(1, tokens=5, dim=TEXT),
                  negative=conditioning(2, tokens=5, dim=TEXT))


def sparse(**overrides) -> SparseAttentionConfig:
    settings = {"method": "draft", "density": 0.3, "dense_steps": 0, "dense_blocks": 0, "query_tile": 4,
                "key_tile": 2, "min_tokens": 1} | overrides
    return SparseAttentionConfig(**settings)


def test_the_image_is_found_between_the_paddings():
    assert joint_image_start(88, 56, 32, text_first=True) == 32  # unpadded: text then image
    assert joint_image_start(96, 56, 5, text_first=True, pad=32) == 32  # 5 -> 32 text, 56 -> 64 image
    assert joint_image_start(96, 56, 5, text_first=False, pad=32) == 0
    assert joint_image_start(96, 56, 5, text_first=True) is None  # padding the model does not declare
    assert joint_image_start(160, 56, 5, text_first=True, pad=32) is None  # reference-image tokens besides


def test_zimage_is_detected_with_its_padding(zimage):
    dm = zimage.get_model_object("diffusion_model")
    assert find_adapter(dm) is LUMINA2
    assert LUMINA2.num_heads(dm) == 30 and LUMINA2.pad_multiple(dm) == 32


def test_caching_engages_on_zimage_and_interval_one_is_the_baseline(zimage):
    from comfyui_ditaccel.accel_core.caching.apply import apply_taylorseer
    from comfyui_ditaccel.accel_core.caching.taylorseer import TaylorSeerConfig

    base = draw(zimage, steps=4)
    m = apply_taylorseer(zimage, TaylorSeerConfig(interval=2, order=0, warmup_steps=1, granularity="blocks"))
    out = draw(m, steps=4)
    assert any(s.ran == "forecast" for s in report_holder(m).latest.steps())
    assert torch.isfinite(out).all() and not torch.equal(out, base)
    exact = apply_taylorseer(zimage, TaylorSeerConfig(interval=1, warmup_steps=0, granularity="blocks"))
    assert torch.equal(draw(exact, steps=4), base)


def test_sparse_attention_runs_on_padded_sequences(zimage):
    base = draw(zimage)
    full = apply_sparse_attention(zimage, sparse(density=1.0, estimate_skipped=False))
    out = draw(full)
    counts = attention_counts(full)
    # every main-layer call went sparse (none fell back for the pad tokens): 2 steps x cond + uncond
    assert counts == {"sparse (draft, torch)": 2}, counts
    assert torch.allclose(out, base, atol=1e-3, rtol=1e-3), (out - base).abs().max()
    m = apply_sparse_attention(zimage, sparse())
    out = draw(m)
    assert attention_counts(m) == {"sparse (draft, torch)": 2}
    assert report_holder(m).latest.flops_share < 1.0 and torch.isfinite(out).all()

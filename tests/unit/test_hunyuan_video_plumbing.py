"""HunyuanVideo at width 256 (one double, one single block), random weights: plumbing on real ComfyUI."""

from __future__ import annotations

import pytest
import torch
from comfyui_ditaccel.accel_core.adapters import HUNYUAN_VIDEO, find_adapter
from comfyui_ditaccel.accel_core.comfy_patch import attach, report_holder, set_attention_override, set_block_patches

from tools.runtime import dit_runtime
from tools.runtime.sampling import conditioning, sample

SIZE = (128, 128)  # 16 x 16 latent → 8 x 8 = 64 image tokens per frame


@pytest.fixture(scope="module")
def hunyuan():
    import comfy.sd

    return comfy.sd.load_diffusion_model(str(dit_runtime.ensure_hunyuan_video_tiny()))


def hy_sample(model, steps: int = 2):
    cond = conditioning(1, tokens=5, pooled=768)
    neg = conditioning(2, tokens=5, pooled=768)
    return sample(model, steps=steps, size=SIZE, video=True, positive=cond, negative=neg)


@pytest.fixture(scope="module")
def baseline(hunyuan):
    return hy_sample(hunyuan, steps=6)


def test_hunyuan_video_is_detected_and_patched_without_changing_the_output(hunyuan):
    assert find_adapter(hunyuan.get_model_object("diffusion_model")) is HUNYUAN_VIDEO
    base = hy_sample(hunyuan)
    m, adapter = attach(hunyuan, None)
    seen, attn_calls = [], []

    def block(args, call_block, site, ctx):
        seen.append((site.spec.replace_name, site.index, args["transformer_options"].get("block_index")))
        return call_block(args)

    def attention(call_next, ctx, q, k, v, heads, **kwargs):
        attn_calls.append((tuple(q.shape), kwargs.get("skip_reshape")))
        return call_next(q, k, v, heads, **kwargs)

    assert set_block_patches(m, adapter, "test.hy", block) == 2
    set_attention_override(m, "test.hy", attention)
    assert torch.equal(hy_sample(m), base)
    assert seen == [("double_block", 0, 0), ("single_block", 0, 0)] * 2
    # per step: the text refiner's two self-attentions over the 5 text tokens (outside the blocks, which
    # the pack's methods leave alone), then joint attention over 64 image + 5 text tokens (image first)
    step = [((2, 2, 5, 128), True)] * 2 + [((2, 2, 69, 128), True)] * 2
    assert attn_calls == step * 2
    record = report_holder(m).latest
    assert record.calls[0].image_tokens == 64 and record.calls[0].grid == (1, 8, 8)


def test_every_method_engages_on_hunyuan_video(hunyuan, baseline):
    from comfyui_ditaccel.accel_core.attention.apply import apply_sparse_attention
    from comfyui_ditaccel.accel_core.attention.config import SparseAttentionConfig
    from comfyui_ditaccel.accel_core.caching.apply import apply_cg_taylor, apply_first_block_cache, apply_taylorseer
    from comfyui_ditaccel.accel_core.caching.first_block import CGTaylorConfig, FirstBlockCacheConfig
    from comfyui_ditaccel.accel_core.caching.taylorseer import TaylorSeerConfig
    from comfyui_ditaccel.accel_core.guidance.apply import apply_softpag
    from comfyui_ditaccel.accel_core.guidance.softpag import SoftPAGConfig

    for m, ran in ((apply_taylorseer(hunyuan, TaylorSeerConfig(interval=2, order=1, warmup_steps=1)), "forecast"),
                   (apply_first_block_cache(hunyuan, FirstBlockCacheConfig(threshold=2.0, warmup_steps=1)), "gated"),
                   (apply_cg_taylor(hunyuan, CGTaylorConfig(threshold=2.0, warmup_steps=1)), "gated")):
        out = hy_sample(m, steps=6)
        assert any(ran in s.ran for s in report_holder(m).latest.steps())
        assert torch.isfinite(out).all() and not torch.equal(out, baseline)
    assert torch.equal(hy_sample(apply_taylorseer(hunyuan, TaylorSeerConfig(interval=1, warmup_steps=0)), steps=6),
                       baseline)
    guided = hy_sample(apply_softpag(hunyuan, SoftPAGConfig("double:0:all; single:0:1", 1.0, 3.0)), steps=6)
    assert torch.isfinite(guided).all() and not torch.equal(guided, baseline)
    tiles = {"query_tile": 4, "key_tile": 2, "min_tokens": 1, "dense_steps": 0, "dense_blocks": 0}
    exact = apply_sparse_attention(hunyuan, SparseAttentionConfig(method="grat", density=1.0,
                                                                  estimate_skipped=False, **tiles))
    # image first, text after: the image rows and keys are found and merged back in the model's order
    torch.testing.assert_close(hy_sample(exact, steps=6), baseline, atol=2e-3, rtol=2e-3)
    sparse = apply_sparse_attention(hunyuan, SparseAttentionConfig(method="pisa", density=0.3, **tiles))
    assert torch.isfinite(hy_sample(sparse, steps=6)).all()
    assert report_holder(sparse).latest.flops_share < 1.0

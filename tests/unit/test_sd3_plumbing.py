"""SD3 (MMDiT) at 0.3.75's smallest detectable size (2 joint blocks, width 128), random weights: plumbing."""

from __future__ import annotations

import pytest
import torch
from comfyui_ditaccel.accel_core.adapters import SD3, find_adapter
from comfyui_ditaccel.accel_core.comfy_patch import attach, report_holder, set_attention_override, set_block_patches

from tools.runtime import dit_runtime
from tools.runtime.sampling import conditioning, sample

SIZE = (128, 128)  # 16 x 16 latent → 8 x 8 = 64 image tokens


@pytest.fixture(scope="module")
def sd3():
    import comfy.sd

    return comfy.sd.load_diffusion_model(str(dit_runtime.ensure_sd3_tiny()))


def sd3_sample(model, steps: int = 2):
    cond = conditioning(1, tokens=5, pooled=2048)
    neg = conditioning(2, tokens=5, pooled=2048)
    return sample(model, steps=steps, size=SIZE, video=False, positive=cond, negative=neg)


@pytest.fixture(scope="module")
def baseline(sd3):
    return sd3_sample(sd3, steps=6)


def test_sd3_is_detected_and_patched_without_changing_the_output(sd3):
    assert find_adapter(sd3.get_model_object("diffusion_model")) is SD3
    base = sd3_sample(sd3)
    m, adapter = attach(sd3, None)
    seen, attn_calls = [], []

    def block(args, call_block, site, ctx):
        out = call_block(args)
        seen.append((site.index, site.last, out["txt"] is None))
        return out

    def attention(call_next, ctx, q, k, v, heads, **kwargs):
        attn_calls.append(tuple(q.shape))
        return call_next(q, k, v, heads, **kwargs)

    assert set_block_patches(m, adapter, "test.sd3", block) == 2
    set_attention_override(m, "test.sd3", attention)
    assert torch.equal(sd3_sample(m), base)
    # the last block drops the text stream; joint attention: 5 text + 64 image tokens, 2 heads of 64
    assert seen == [(0, False, False), (1, True, True)] * 2
    assert attn_calls == [(2, 69, 128)] * 4
    record = report_holder(m).latest
    assert [s.step for s in record.steps()] == [0, 1]
    assert record.calls[0].image_tokens == 64 and record.calls[0].text_tokens == 5
    assert record.calls[0].flops_full > 0


def test_caching_nodes_engage_on_sd3(sd3, baseline):
    from comfyui_ditaccel.accel_core.caching.apply import apply_cg_taylor, apply_first_block_cache, apply_taylorseer
    from comfyui_ditaccel.accel_core.caching.first_block import CGTaylorConfig, FirstBlockCacheConfig
    from comfyui_ditaccel.accel_core.caching.taylorseer import TaylorSeerConfig

    for m, ran in ((apply_taylorseer(sd3, TaylorSeerConfig(interval=2, order=1, warmup_steps=1)), "forecast"),
                   (apply_first_block_cache(sd3, FirstBlockCacheConfig(threshold=2.0, warmup_steps=1)), "gated"),
                   (apply_cg_taylor(sd3, CGTaylorConfig(threshold=2.0, warmup_steps=1)), "gated")):
        out = sd3_sample(m, steps=6)
        record = report_holder(m).latest
        assert any(ran in s.ran for s in record.steps()) and record.flops_share < 1.0
        assert torch.isfinite(out).all() and not torch.equal(out, baseline)


@pytest.mark.parametrize("granularity", ["auto", "output"])
def test_taylorseer_output_granularity_runs_as_blocks_on_sd3_and_says_so(sd3, baseline, granularity):
    """0.3.75's MMDiT forward offers no DIFFUSION_MODEL wrapper: the stack's output is forecast instead."""
    from comfyui_ditaccel.accel_core.caching.apply import apply_taylorseer
    from comfyui_ditaccel.accel_core.caching.taylorseer import TaylorSeerConfig

    m = apply_taylorseer(sd3, TaylorSeerConfig(interval=2, order=0, warmup_steps=1, granularity=granularity))
    sd3_sample(m, steps=6)
    record = report_holder(m).latest
    assert any(s.ran == "forecast" for s in record.steps())
    assert "blocks" in record.methods[0] and "offers no forward wrapper" in record.methods[0]


def test_taylorseer_interval_one_is_the_baseline_on_sd3(sd3, baseline):
    from comfyui_ditaccel.accel_core.caching.apply import apply_taylorseer
    from comfyui_ditaccel.accel_core.caching.taylorseer import TaylorSeerConfig

    assert torch.equal(sd3_sample(apply_taylorseer(sd3, TaylorSeerConfig(interval=1, warmup_steps=0)), steps=6),
                       baseline)


def test_softpag_and_sparse_attention_on_sd3(sd3, baseline):
    from comfyui_ditaccel.accel_core.attention.apply import apply_sparse_attention
    from comfyui_ditaccel.accel_core.attention.config import SparseAttentionConfig
    from comfyui_ditaccel.accel_core.guidance.apply import apply_softpag
    from comfyui_ditaccel.accel_core.guidance.softpag import SoftPAGConfig

    guided = sd3_sample(apply_softpag(sd3, SoftPAGConfig("1:all", 1.0, 3.0)), steps=6)
    assert torch.isfinite(guided).all() and not torch.equal(guided, baseline)
    tiles = {"query_tile": 4, "key_tile": 2, "min_tokens": 1, "dense_steps": 0, "dense_blocks": 0}
    exact = apply_sparse_attention(sd3, SparseAttentionConfig(method="grat", density=1.0, estimate_skipped=False,
                                                              **tiles))
    torch.testing.assert_close(sd3_sample(exact, steps=6), baseline, atol=2e-3, rtol=2e-3)
    sparse = apply_sparse_attention(sd3, SparseAttentionConfig(method="draft", density=0.3, **tiles))
    out = sd3_sample(sparse, steps=6)
    assert torch.isfinite(out).all() and report_holder(sparse).latest.flops_share < 1.0


def test_the_forward_hook_sd3_lacks_is_refused_by_name(sd3, baseline):
    """The adapter's hook list is what the model does: a DIFFUSION_MODEL wrapper on SD3 is never called,
    and a method that needs one is refused at apply time, naming the hook."""
    from comfy.patcher_extension import WrappersMP
    from comfyui_ditaccel.accel_core.adapters import HOOK_FORWARD, UnsupportedModelError

    calls = []

    def forward_wrapper(executor, *args, **kwargs):
        calls.append(1)
        return executor(*args, **kwargs)

    m = sd3.clone()
    m.add_wrapper_with_key(WrappersMP.DIFFUSION_MODEL, "test.forward", forward_wrapper)
    assert torch.equal(sd3_sample(m, steps=6), baseline) and calls == []
    assert not SD3.offers(HOOK_FORWARD)
    with pytest.raises(UnsupportedModelError, match=r"SD3 / SD3.5 \(MMDiT\) offers no DIFFUSION_MODEL wrapper in "
                                                    r"ComfyUI, which this method needs"):
        attach(sd3, None, frozenset({HOOK_FORWARD}), name="DiTAccelProbe")

"""Flux at the only width ComfyUI 0.3.75 detects (3072), one double block, random weights: plumbing only."""

from __future__ import annotations

import pytest
import torch
from comfyui_ditaccel.accel_core.adapters import FLUX, find_adapter
from comfyui_ditaccel.accel_core.comfy_patch import attach, report_holder, set_attention_override, set_block_patches

from tools.runtime import dit_runtime
from tools.runtime.sampling import conditioning, sample


@pytest.fixture(scope="module")
def flux():
    import comfy.sd

    return comfy.sd.load_diffusion_model(str(dit_runtime.ensure_flux_thin()))


def flux_sample(model):
    cond = conditioning(1, tokens=5, pooled=2048)
    neg = conditioning(2, tokens=5, pooled=2048)
    return sample(model, steps=2, size=(64, 64), video=False, positive=cond, negative=neg)


def test_flux_is_detected_and_patched_without_changing_the_output(flux):
    assert find_adapter(flux.get_model_object("diffusion_model")) is FLUX
    baseline = flux_sample(flux)
    m, adapter = attach(flux, None)
    seen = []

    def block(args, call_block, site, ctx):
        seen.append((site.spec.replace_name, site.index, args["transformer_options"].get("block_index")))
        out = call_block(args)
        assert set(out) == set(site.spec.returns)
        return out

    attn_calls = []

    def attention(call_next, ctx, q, k, v, heads, **kwargs):
        attn_calls.append((tuple(q.shape), kwargs.get("skip_reshape")))
        return call_next(q, k, v, heads, **kwargs)

    assert set_block_patches(m, adapter, "test.flux", block) == 1
    set_attention_override(m, "test.flux", attention)
    assert torch.equal(flux_sample(m), baseline)
    assert seen == [("double_block", 0, 0)] * 2
    # joint attention over 5 text + 16 image tokens, 24 heads of 128, (B, H, L, D) layout
    assert attn_calls == [((2, 24, 21, 128), True)] * 2
    record = report_holder(m).latest
    assert [s.step for s in record.steps()] == [0, 1]
    assert record.calls[0].flops_full > 0


def test_module_granularity_is_refused_on_flux_naming_what_works(flux):
    from comfyui_ditaccel.accel_core.adapters import UnsupportedModelError
    from comfyui_ditaccel.accel_core.caching.apply import apply_taylorseer
    from comfyui_ditaccel.accel_core.caching.taylorseer import TaylorSeerConfig

    with pytest.raises(UnsupportedModelError, match=r"granularity 'modules'.*Wan.*Use granularity 'blocks'"):
        apply_taylorseer(flux, TaylorSeerConfig(granularity="modules"))
    apply_taylorseer(flux, TaylorSeerConfig(granularity="blocks"))


def test_softpag_perturbs_flux_joint_attention_heads(flux):
    from comfyui_ditaccel.accel_core.guidance.apply import apply_softpag
    from comfyui_ditaccel.accel_core.guidance.softpag import SoftPAGConfig

    base = flux_sample(flux)
    assert torch.equal(flux_sample(apply_softpag(flux, SoftPAGConfig("double:0:all", strength=0.0))), base)
    m = apply_softpag(flux, SoftPAGConfig("double:0:3,7", strength=1.0, scale=2.0))
    out = flux_sample(m)
    assert torch.isfinite(out).all() and not torch.equal(out, base)
    assert len(report_holder(m).latest.calls) == 2 * 2  # one perturbed pass per step


@pytest.mark.parametrize("method", ["grat", "pisa", "draft", "svg2", "rettention"])
def test_sparse_attention_on_joint_attention_keeps_text_exact(flux, method):
    from comfyui_ditaccel.accel_core.attention.apply import apply_sparse_attention
    from comfyui_ditaccel.accel_core.attention.config import SparseAttentionConfig

    baseline = flux_sample(flux)
    tiles = {"query_tile": 2, "key_tile": 1, "min_tokens": 1, "dense_steps": 0, "dense_blocks": 0}
    exact = apply_sparse_attention(flux, SparseAttentionConfig(method=method, density=1.0, estimate_skipped=False,
                                                               **tiles))
    if method == "svg2":  # its top-p keeps fewer than all blocks even at density 1
        out = flux_sample(exact)
        assert torch.isfinite(out).all()
    else:  # image rows over image keys (block-sparse) merged with the text keys = the model's joint attention
        torch.testing.assert_close(flux_sample(exact), baseline, atol=2e-3, rtol=2e-3)
    calls = report_holder(exact).latest.calls
    assert all(c.attention == {f"sparse ({method}, torch)": 1} for c in calls)
    sparse = apply_sparse_attention(flux, SparseAttentionConfig(method=method, density=0.25, **tiles))
    out = flux_sample(sparse)
    assert torch.isfinite(out).all() and not torch.equal(out, baseline)
    assert report_holder(sparse).latest.flops_share < 1.0

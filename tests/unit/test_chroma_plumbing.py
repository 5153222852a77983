"""Chroma at 0.3.75's fixed sizes (width 3072, its 5120-wide approximator), 1 + 1 blocks, random weights."""

from __future__ import annotations

import pytest
import torch
from comfyui_ditaccel.accel_core.adapters import CHROMA, find_adapter
from comfyui_ditaccel.accel_core.comfy_patch import attach, set_attention_override, set_block_patches

from tools.runtime import dit_runtime
from tools.runtime.sampling import conditioning, sample


@pytest.fixture(scope="module")
def chroma():
    import comfy.sd

    return comfy.sd.load_diffusion_model(str(dit_runtime.ensure_chroma_thin()))


def test_chroma_is_detected_and_patched_without_changing_the_output(chroma):
    dm = chroma.get_model_object("diffusion_model")
    assert find_adapter(dm) is CHROMA and CHROMA.num_heads(dm) == 24

    def draw(model):  # Flux's conditioning layout: a pooled vector rides along, Chroma ignores it
        return sample(model, steps=1, size=(64, 64), video=False, positive=conditioning(1, tokens=5, pooled=768),
                      negative=conditioning(2, tokens=5, pooled=768))

    base = draw(chroma)
    m, adapter = attach(chroma, None)
    seen, attn_calls = [], []

    def block(args, call_block, site, ctx):
        out = call_block(args)
        seen.append((site.spec.replace_name, site.index, site.last, tuple(out["img"].shape)))
        return out

    def attention(call_next, ctx, q, k, v, heads, *args, **kwargs):
        attn_calls.append(tuple(q.shape))
        return call_next(q, k, v, heads, *args, **kwargs)

    assert set_block_patches(m, adapter, "test.chroma", block) == 2
    set_attention_override(m, "test.chroma", attention)
    assert torch.equal(draw(m), base)
    # 16 image tokens (64 px), 5 text tokens; the single block carries both streams, text first
    assert seen == [("double_block", 0, False, (2, 16, 3072)), ("single_block", 0, True, (2, 21, 3072))]
    assert attn_calls == [(2, 24, 21, 128)] * 2

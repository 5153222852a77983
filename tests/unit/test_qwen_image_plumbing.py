"""Qwen-Image at 0.3.75's fixed width (3072, 24 heads of 128), one dual-stream block, random weights: plumbing."""

from __future__ import annotations

import pytest
import torch
from comfyui_ditaccel.accel_core.adapters import QWEN_IMAGE, find_adapter
from comfyui_ditaccel.accel_core.comfy_patch import attach, report_holder, set_attention_override, set_block_patches

from tools.runtime import dit_runtime
from tools.runtime.sampling import conditioning, sample

SIZE = (128, 128)  # 16 x 16 latent → 8 x 8 = 64 image tokens
TEXT = 3584  # Qwen2.5-VL's hidden size: what the model's text input takes


@pytest.fixture(scope="module")
def qwen():
    import comfy.sd

    return comfy.sd.load_diffusion_model(str(dit_runtime.ensure_qwen_image_thin()))


def qwen_sample(model, steps: int = 2):
    return sample(model, steps=steps, size=SIZE, positive=conditioning(1, tokens=5, dim=TEXT),
                  negative=conditioning(2, tokens=5, dim=TEXT))


def test_qwen_image_is_detected_and_patched_without_changing_the_output(qwen):
    dm = qwen.get_model_object("diffusion_model")
    assert find_adapter(dm) is QWEN_IMAGE and QWEN_IMAGE.num_heads(dm) == 24
    base = qwen_sample(qwen)
    m, adapter = attach(qwen, None)
    seen, attn_calls = [], []

    def block(args, call_block, site, ctx):
        out = call_block(args)
        seen.append((site.index, site.last, tuple(out["img"].shape), tuple(out["txt"].shape)))
        return out

    def attention(call_next, ctx, q, k, v, heads, *args, **kwargs):
        # Qwen-Image hands over (B, H, L, D) with skip_reshape and its mask as a positional argument
        attn_calls.append((tuple(q.shape), len(args), bool(kwargs.get("skip_reshape"))))
        return call_next(q, k, v, heads, *args, **kwargs)

    assert set_block_patches(m, adapter, "test.qwen", block) == 1
    set_attention_override(m, "test.qwen", attention)
    assert torch.equal(qwen_sample(m), base)
    assert seen == [(0, True, (2, 64, 3072), (2, 5, 3072))] * 2  # batched CFG, text stream kept
    assert attn_calls == [((2, 24, 69, 128), 1, True)] * 2  # text first: 5 + 64 tokens
    record = report_holder(m).latest
    assert record.calls[0].image_tokens == 64 and record.calls[0].text_tokens == 5


def test_softpag_resolves_the_heads_from_the_attention_module(qwen):
    from comfyui_ditaccel.accel_core.guidance.apply import selection_for

    m, adapter = attach(qwen, None)
    assert selection_for(m, adapter, "0:all").for_block("double_block", 0) == tuple(range(24))
    with pytest.raises(ValueError, match="heads 0-23"):
        selection_for(m, adapter, "0:30")

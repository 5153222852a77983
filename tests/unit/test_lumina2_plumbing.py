"""Lumina 2 at its detected width (2304), two main layers, random weights: block calls routed through
patches_replace by an object patch (0.3.75's forward calls its layers directly)."""

from __future__ import annotations

import pytest
import torch
from comfyui_ditaccel.accel_core.adapters import LUMINA2, find_adapter
from comfyui_ditaccel.accel_core.comfy_patch import attach, report_holder, set_attention_override, set_block_patches
from comfyui_ditaccel.accel_core.module_wrap import BlockCallHook

from tools.runtime import dit_runtime
from tools.runtime.sampling import conditioning, sample

TEXT = 2304  # Gemma 2 2B's hidden size: what the model's text input takes


@pytest.fixture(scope="module")
def lumina():
    import comfy.sd

    return comfy.sd.load_diffusion_model(str(dit_runtime.ensure_lumina2_tiny()))


def draw(model, steps: int = 2):
    return sample(model, steps=steps, size=(64, 64), video=False, positive=conditioning(1, tokens=5, dim=TEXT),
                  negative=conditioning(2, tokens=5, dim=TEXT))


def test_lumina2_blocks_are_routed_through_patches_replace_without_changing_the_output(lumina):
    dm = lumina.get_model_object("diffusion_model")
    assert find_adapter(dm) is LUMINA2 and LUMINA2.num_heads(dm) == 24
    base = draw(lumina)
    m, adapter = attach(lumina, None)
    seen, attn_calls = [], []

    def block(args, call_block, site, ctx):
        out = call_block(args)
        seen.append((site.index, site.last, tuple(args["img"].shape), args["mask"] is None))
        return out

    def attention(call_next, ctx, q, k, v, heads, *args, **kwargs):
        attn_calls.append(tuple(q.shape))
        return call_next(q, k, v, heads, *args, **kwargs)

    assert set_block_patches(m, adapter, "test.lumina", block) == 2
    set_attention_override(m, "test.lumina", attention)
    assert torch.equal(draw(m), base)
    # two main layers per call: the joint sequence, text (5) then image (4 x 4 tokens at 64 px)
    assert seen == [(0, False, (2, 21, 2304), True), (1, True, (2, 21, 2304), True)] * 2
    # two context-refiner, two noise-refiner layers, then the main ones (joint: 21 tokens)
    assert attn_calls.count((2, 24, 21, 96)) == 4 and len(attn_calls) == 12
    assert report_holder(m).latest.calls[0].image_tokens == 16
    # the object patch lives on the clone only: the loaded model's layer is untouched
    assert not isinstance(lumina.get_model_object("diffusion_model.layers.0"), BlockCallHook)
    assert isinstance(m.get_model_object("diffusion_model.layers.0"), BlockCallHook)
    assert torch.equal(draw(lumina), base)


def test_caching_engages_on_lumina2(lumina):
    from comfyui_ditaccel.accel_core.caching.apply import apply_taylorseer
    from comfyui_ditaccel.accel_core.caching.taylorseer import TaylorSeerConfig

    base = draw(lumina, steps=4)
    m = apply_taylorseer(lumina, TaylorSeerConfig(interval=2, order=0, warmup_steps=1))
    out = draw(m, steps=4)
    assert any(s.ran == "forecast" for s in report_holder(m).latest.steps())
    assert torch.isfinite(out).all() and not torch.equal(out, base)
    exact = apply_taylorseer(lumina, TaylorSeerConfig(interval=1, warmup_steps=0))
    assert torch.equal(draw(exact, steps=4), base)


def test_routed_calls_bind_to_the_block_signature_whether_passed_by_position_or_name():
    class Layer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor(2.0))

        def forward(self, x, x_mask, freqs_cis, adaln_input=None, transformer_options={}):  # noqa: B006
            return x * self.w + freqs_cis + (0 if adaln_input is None else adaln_input)

    seen = []

    def patch(args, extra):
        seen.append(sorted(k for k in args if k != "transformer_options"))
        out = extra["original_block"](args)
        return {"img": out["img"] + 100}

    hook = BlockCallHook(Layer(), "double_block", 0, (("x", "img"), ("x_mask", "mask"), ("freqs_cis", "pe"),
                                                        ("adaln_input", "vec")))
    to = {"patches_replace": {"dit": {("double_block", 0): patch}}}
    x, pe, vec = torch.ones(2), torch.full((2,), 3.0), torch.full((2,), 5.0)
    by_position = hook(x, None, pe, vec, transformer_options=to)
    by_name = hook(x, x_mask=None, freqs_cis=pe, adaln_input=vec, transformer_options=to)
    assert torch.equal(by_position, torch.full((2,), 110.0)) and torch.equal(by_name, by_position)
    assert seen == [["img", "mask", "pe", "vec"]] * 2
    assert torch.equal(hook(x, None, pe, transformer_options={}), torch.full((2,), 5.0))  # no patch: the block
    assert [n for n, _ in hook.named_parameters()] == ["w"]  # weights keep their names

"""SoftPAG: the heads grammar, the head mix against an explicit attention map, and guidance on a real model."""

from __future__ import annotations

import itertools

import pytest
import torch
from comfyui_ditaccel.accel_core.adapters import FLUX, WAN21
from comfyui_ditaccel.accel_core.caching.apply import apply_taylorseer
from comfyui_ditaccel.accel_core.caching.taylorseer import TaylorSeerConfig
from comfyui_ditaccel.accel_core.comfy_patch import report_holder
from comfyui_ditaccel.accel_core.guidance.apply import apply_softpag
from comfyui_ditaccel.accel_core.guidance.head_spec import HeadEntry, HeadSpecError, parse, resolve
from comfyui_ditaccel.accel_core.guidance.softpag import SoftPAGConfig, mix_heads

from tools.runtime.sampling import WAN_FILE, load_model, sample


def test_grammar_examples_parse():
    assert parse("3:all; 5:0,1") == (HeadEntry(None, 3, None), HeadEntry(None, 5, (0, 1)))
    assert parse("double:3:all; single:10:2,5") == (HeadEntry("double", 3, None), HeadEntry("single", 10, (2, 5)))
    assert parse(" 1 : 1 , 0 ;") == (HeadEntry(None, 1, (0, 1)),)


@pytest.mark.parametrize("spec, token", [
    ("3:x", "'x'"), ("a:all", "'a'"), ("triple:1:all", "'triple'"), ("1:2:3:4", "'1:2:3:4'"),
    ("", "empty"), ("2:0,,1", "'0,,1'"), ("-1:all", "'-1'"),
])
def test_bad_tokens_are_named(spec, token):
    with pytest.raises(HeadSpecError, match=token):
        parse(spec)


def test_resolve_checks_the_model():
    wan_counts = {"double_block": 6}
    sel = resolve(parse("3:all; 5:1; 3:0"), WAN21, wan_counts, 2)
    assert sel.for_block("double_block", 3) == (0, 1) and sel.for_block("double_block", 5) == (1,)
    assert sel.to_spec(WAN21) == "3:all; 5:1"
    with pytest.raises(HeadSpecError, match="blocks 0-5"):
        resolve(parse("6:all"), WAN21, wan_counts, 2)
    with pytest.raises(HeadSpecError, match="heads 0-1"):
        resolve(parse("1:2"), WAN21, wan_counts, 2)
    with pytest.raises(HeadSpecError, match="without 'double:'"):
        resolve(parse("double:1:all"), WAN21, wan_counts, 2)
    with pytest.raises(HeadSpecError, match="needs a block kind"):
        resolve(parse("1:all"), FLUX, {"double_block": 19, "single_block": 38}, 24)
    assert resolve(parse("single:37:23"), FLUX, {"double_block": 19, "single_block": 38}, 24).count() == 1


@pytest.mark.parametrize("skip_reshape, skip_output_reshape", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("u", [0.0, 0.3, 1.0])
def test_mix_is_attention_with_the_map_moved_toward_identity(skip_reshape, skip_output_reshape, u):
    g = torch.Generator().manual_seed(0)
    b, h, n, d = 2, 3, 7, 8
    q, k, v = (torch.randn(b, h, n, d, generator=g, dtype=torch.float64) for _ in range(3))
    a = torch.softmax(q @ k.transpose(-1, -2) / d**0.5, dim=-1)
    chosen = (0, 2)
    expected = []
    for head in range(h):
        ah = (1 - u) * a[:, head] + u * torch.eye(n, dtype=a.dtype) if head in chosen else a[:, head]
        expected.append(ah @ v[:, head])
    expected = torch.stack(expected, 1)  # (B, H, L, D)
    out = a @ v
    v_in = v if skip_reshape else v.transpose(1, 2).reshape(b, n, h * d)
    out_in = out if skip_output_reshape else out.transpose(1, 2).reshape(b, n, h * d)
    mixed = mix_heads(out_in, v_in, h, chosen, u, skip_reshape, skip_output_reshape)
    if not skip_output_reshape:
        mixed = mixed.reshape(b, n, h, d).transpose(1, 2)
    torch.testing.assert_close(mixed, expected)


@pytest.fixture(scope="module")
def wan():
    return load_model(WAN_FILE)


def test_strength_zero_is_the_image_of_no_guidance_bit_for_bit(wan):
    base = sample(wan, steps=4, cfg=3.0)
    assert torch.equal(sample(apply_softpag(wan, SoftPAGConfig("1:all", strength=0.0, scale=3.0)), steps=4, cfg=3.0),
                       base)


def test_guidance_change_grows_with_strength(wan):
    base = sample(wan, steps=2, cfg=1.0)
    diffs = []
    for u in (0.02, 0.05, 0.1, 0.2, 0.4):
        m = apply_softpag(wan, SoftPAGConfig("0:all; 2:1; 4:0", strength=u, scale=1.0))
        diffs.append((sample(m, steps=2, cfg=1.0) - base).norm().item())
    assert diffs[0] > 0
    assert all(a < b for a, b in itertools.pairwise(diffs)), diffs


@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_one_extra_pass_per_model_evaluation_with_cfg_on_and_off(wan, cfg):
    m = apply_softpag(wan, SoftPAGConfig("2:all", strength=1.0, scale=2.0))
    out = sample(m, steps=4, cfg=cfg, batch=2)
    assert torch.isfinite(out).all() and not torch.equal(out, sample(wan, steps=4, cfg=cfg, batch=2))
    calls = report_holder(m).latest.calls
    assert len(calls) == 2 * 4  # the sampler's call and the perturbed pass, each step
    assert sorted({c.batch for c in calls}) == ([2] if cfg == 1.0 else [2, 4])


def test_stacks_with_taylorseer_on_separate_streams(wan):
    stacked = apply_softpag(apply_taylorseer(wan, TaylorSeerConfig(interval=2, warmup_steps=2)),
                            SoftPAGConfig("2:all", strength=0.5, scale=2.0))
    out = sample(stacked, steps=8, cfg=3.0)
    assert torch.isfinite(out).all()
    record = report_holder(stacked).latest
    assert len(record.calls) == 2 * 8
    by_step = {}
    for c in record.calls:
        by_step.setdefault(c.step, []).append((c.batch, c.ran))
    # each step: cond + uncond in one call, then the perturbed pass under its own stream id, which
    # has its own Taylor series, so it is forecast on the same steps as the sampler's call
    assert all(sorted(b for b, _ in calls) == [1, 2] for calls in by_step.values())
    forecast_steps = [s for s, calls in by_step.items() if all(r == "forecast" for _, r in calls)]
    assert forecast_steps == [2, 4, 6]


def test_out_of_range_heads_fail_at_apply_time(wan):
    with pytest.raises(HeadSpecError, match="block 9 is out of range"):
        apply_softpag(wan, SoftPAGConfig("9:all"))


def test_auto_heads_take_the_embedded_models_searched_heads_and_the_report_names_them(wan):
    m = apply_softpag(wan, SoftPAGConfig("auto", strength=0.5, scale=2.0))
    out = sample(m, steps=3, cfg=1.0)
    assert torch.isfinite(out).all()
    record = report_holder(m).latest
    assert record.variant.startswith("the embedded image model")
    (line,) = record.settings
    assert "heads='0:0; 5:1'" in line and "bench_softpag" in line
    text = record.summary()
    assert text.index("model: the embedded image model") < text.index("settings: DiTAccelSoftPAG heads auto")
    assert torch.equal(out, sample(apply_softpag(wan, SoftPAGConfig("0:0; 5:1", 0.5, 2.0)), steps=3, cfg=1.0))


def test_headhunter_counts_its_runs_and_takes_cfg_per_variant(wan):
    from comfyui_ditaccel.accel_core.guidance import head_search

    assert head_search.search_cfg(wan, 0.0)[0] == 5.0 and head_search.search_cfg(wan, 3.0) == (3.0, "")
    setup = head_search.SearchSetup(None, None, None, None, [1, 2], 4, 5.0, "euler", "simple", 1.0, 3.0)
    # 12 candidate heads (6 blocks x 2): two rounds keeping 2 score 12 + 10 sets, plus CFG only, per seed
    assert head_search.planned_runs(wan, setup, "all", 2, 2) == 2 * (1 + 12 + 10)


def test_headhunter_cfg_auto_is_1_on_guidance_distilled_flux():
    import comfy.ops
    from comfy.ldm.flux.model import Flux
    from comfyui_ditaccel.accel_core.guidance import head_search

    class Holder:  # what the search reads of a ModelPatcher: its diffusion model
        def __init__(self, dm):
            self.dm = dm

        def get_model_object(self, name):
            return self.dm

    for guidance, cfg in ((True, 1.0), (False, 1.0)):
        dm = Flux(in_channels=64, out_channels=64, vec_in_dim=768, context_in_dim=4096, hidden_size=256,
                  mlp_ratio=4.0, num_heads=2, depth=1, depth_single_blocks=0, axes_dim=[16, 56, 56], theta=10000,
                  patch_size=2, qkv_bias=True, guidance_embed=guidance, device="meta",
                  operations=comfy.ops.disable_weight_init)
        got, note = head_search.search_cfg(Holder(dm), 0.0)
        assert got == cfg and "distilled" in note

"""JiT on plain torch: stages, anchors, densification, interpolation, the micro-flow."""

from __future__ import annotations

import pytest
import torch
from comfyui_ditaccel.accel_core.spatial.jit import (
    JiTConfig,
    JiTState,
    densify,
    initial_anchors,
    local_variance,
    parse_fractions,
    pull_velocity,
    spread,
)


def test_fractions_parse_and_bad_entries_are_named():
    assert parse_fractions("0.4, 0.65,1", "stages") == (0.4, 0.65, 1.0)
    with pytest.raises(ValueError, match=r"stages: 'x' is not a number"):
        parse_fractions("0.4, x", "stages")
    with pytest.raises(ValueError, match=r"densities: 1.5 is outside"):
        parse_fractions("0.5, 1.5", "densities")


@pytest.mark.parametrize("kw, needle", [
    ({"stages": (0.5, 1.0), "densities": (0.5,)}, "same number"),
    ({"stages": (0.6, 0.4, 1.0)}, "stages must rise"),
    ({"stages": (0.4, 0.65, 0.9)}, "end at 1.0"),
    ({"densities": (0.6, 0.4, 1.0)}, "never fall"),
    ({"relax": 0}, "relax"),
    ({"interpolate": "nearest"}, "interpolate"),
])
def test_bad_config_says_what_is_wrong(kw, needle):
    with pytest.raises(ValueError, match=needle):
        JiTConfig(**kw)


def test_stages_follow_the_reference_rounding_and_count_full_token_evaluations():
    config = JiTConfig()  # 0.4 / 0.65 / 1.0 at 0.35 / 0.62 / 1.0
    assert config.stage_ends(28) == [11, 18, 28]
    assert [config.stage_of(s, 28) for s in (0, 10, 11, 17, 18, 27)] == [0, 0, 1, 1, 2, 2]
    assert config.full_token_evaluations(28) == pytest.approx(11 * 0.35 + 7 * 0.62 + 10)


def test_initial_anchors_are_the_checkerboard_and_border_at_the_asked_density():
    pattern = torch.zeros(8, 8, dtype=torch.bool)
    pattern[::2, ::2] = True
    pattern[0] = pattern[-1] = pattern[:, 0] = pattern[:, -1] = True  # 37 of 64
    assert torch.equal(initial_anchors((1, 8, 8), density=37 / 64).view(8, 8), pattern)
    trimmed = initial_anchors((1, 8, 8), density=0.5).view(8, 8)
    assert int(trimmed.sum()) == 32 and not (trimmed & ~pattern).any()
    filled = initial_anchors((1, 8, 8), density=0.75).view(8, 8)
    assert int(filled.sum()) == 48 and not (pattern & ~filled).any()
    assert torch.equal(initial_anchors((1, 8, 8), 0.5), initial_anchors((1, 8, 8), 0.5))  # fixed seed
    few = initial_anchors((2, 8, 8), density=0.2)
    assert int(few.sum()) == round(0.2 * 128)


def test_densify_adds_the_most_important_inactive_tokens_per_row():
    mask = torch.tensor([[True, False, False, False], [False, False, True, False]])
    importance = torch.tensor([[9.0, 1.0, 3.0, 2.0], [5.0, 0.0, 9.0, 1.0]])
    grown = densify(mask, importance, 3)
    assert grown.tolist() == [[True, False, True, True], [True, False, True, True]]


def test_local_variance_is_zero_on_a_constant_field_and_peaks_at_an_edge():
    flat = torch.ones(1, 4, 8, 8)
    assert local_variance(flat).abs().max() < 1e-6
    edge = torch.zeros(1, 4, 8, 8)
    edge[..., 4:] = 1.0
    var = local_variance(edge)[0, 0]
    assert var[:, 3].min() > 0 and var[:, 0].max() == 0


def test_spread_keeps_known_pixels_and_fills_the_rest_exactly_on_constant_and_smoothly_on_ramps():
    known = torch.zeros(1, 8, 8, dtype=torch.bool)
    known[:, ::2, ::2] = True
    const = torch.full((1, 3, 8, 8), 2.5)
    assert torch.allclose(spread(const, known, 1.0), const)
    ramp = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 2, 8, 8).clone()
    out = spread(ramp, known, 1.0)
    assert torch.equal(out[:, :, ::2, ::2], ramp[:, :, ::2, ::2])
    assert (out - ramp).abs()[..., 1:7].max() < 0.5  # interior error well under one pixel step
    # a single known pixel still reaches the whole image (the blur widens)
    lone = torch.zeros(1, 8, 8, dtype=torch.bool)
    lone[0, 0, 0] = True
    assert torch.allclose(spread(const, lone, 1.0), const)
    video = torch.randn(2, 3, 4, 8, 8)
    vk = known.expand(2, 4, 8, 8)
    assert torch.equal(spread(video, vk, 1.0)[..., ::2, ::2], video[..., ::2, ::2])


def test_micro_flow_lands_joined_pixels_a_relax_th_of_the_way_to_the_target():
    x, v, target = torch.randn(1, 2, 4, 4), torch.randn(1, 2, 4, 4), torch.randn(1, 2, 4, 4)
    joined = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    joined[..., :2, :] = True
    dt, relax = -0.05, 3
    after = x + dt * pull_velocity(v, x, target, joined, relax, dt)
    expected = torch.where(joined, (1 - 1 / relax) * x + target / relax + dt * v, x + dt * v)
    assert torch.allclose(after, expected, atol=1e-5)


def test_anchors_grow_at_each_stage_change_and_report_who_joined():
    state = JiTState(config=JiTConfig(stages=(0.5, 1.0), densities=(0.25, 0.5)), total_steps=4, patch=(1, 2, 2))
    first = state.anchors(0, 2, (1, 4, 4))
    assert first.shape == (2, 16) and int(first[0].sum()) == 4 and state.joined is None
    assert torch.equal(state.anchors(1, 2, (1, 4, 4)), first)
    state.last_velocity = torch.randn(2, 4, 1, 8, 8)
    grown = state.anchors(2, 2, (1, 4, 4))
    assert int(grown[0].sum()) == 8 and int(grown[1].sum()) == 8
    assert torch.equal(state.joined, grown & ~first) and state.joined_step == 2
    assert (grown | ~first).all()  # anchors never leave
    full = JiTState(config=JiTConfig(stages=(1.0,), densities=(1.0,)), total_steps=4, patch=(1, 2, 2))
    assert full.anchors(0, 1, (1, 4, 4)) is None

"""RAS on plain torch: the step plan, the focus metric, the token choice, gather / scatter."""

from __future__ import annotations

import pytest
import torch
from comfyui_ditaccel.accel_core.spatial.ras import (
    RASConfig,
    RASState,
    StepPlan,
    choose_tokens,
    focus_metric,
    keep_count,
)
from comfyui_ditaccel.accel_core.spatial.tokens import per_token, rows_for_call, to_pixels
from comfyui_ditaccel.accel_core.token_subset import gather_tokens, scatter_tokens


def test_refresh_steps_fall_where_the_papers_sd3_script_puts_them():
    plan = StepPlan(total_steps=28, warmup_steps=4, dense_steps=2)  # final_dense_steps 0, as the paper
    assert plan.refresh_steps == (12, 20)
    assert plan.sparse_steps() == [s for s in range(4, 28) if s not in (12, 20)]
    assert StepPlan(28, 4, 0).refresh_steps == ()
    assert StepPlan(10, 2, 0, start_percent=0.5).sparse_steps() == [5, 6, 7, 8, 9]
    assert StepPlan(3, 5, 2).sparse_steps() == []


def test_warmup_scales_with_the_step_count_for_presets():
    config = RASConfig(warmup_steps=4, reference_steps=28)
    assert config.plan(56).warmup_steps == 8
    assert RASConfig(warmup_steps=4).plan(56).warmup_steps == 4


@pytest.mark.parametrize("kw, needle", [({"sample_ratio": 0.0}, "sample_ratio"), ({"high_ratio": 1.5}, "high_ratio"),
                                         ({"metric": "max"}, "metric"), ({"warmup_steps": -1}, "warmup_steps"),
                                         ({"start_percent": 0.6, "end_percent": 0.5}, "start_percent")])
def test_bad_config_names_the_field(kw, needle):
    with pytest.raises(ValueError, match=needle):
        RASConfig(**kw)


def test_focus_metric_averages_the_channel_spread_over_each_patch_in_token_order():
    v = torch.zeros(1, 4, 1, 4, 6)  # 2 x 3 tokens of 2 x 2 pixels
    v[0, :, 0, 0, 4] = torch.tensor([1.0, -1.0, 1.0, -1.0])  # one pixel of token (row 0, col 2)
    v[0, :, 0, 3, 0] = torch.tensor([2.0, 0.0, 0.0, 0.0])  # one pixel of token (row 1, col 0)
    m = focus_metric(v, (1, 2, 2), "std")
    assert m.shape == (1, 6)
    expected = torch.zeros(6)
    expected[2] = torch.tensor([1.0, -1.0, 1.0, -1.0]).std() / 4
    expected[3] = torch.tensor([2.0, 0.0, 0.0, 0.0]).std() / 4
    assert torch.allclose(m[0], expected)
    # image latents (B, C, H, W) and odd sizes (padded at the edge) work too
    assert focus_metric(torch.randn(2, 4, 5, 7), (1, 2, 2), "l2norm").shape == (2, 12)


def test_per_token_and_to_pixels_invert_on_a_video_grid():
    values = torch.arange(2 * 12, dtype=torch.float32).view(2, 12)  # 3 frames x 2 x 2 tokens
    pixels = to_pixels(values, (3, 2, 2), (1, 2, 2), (3, 4, 4))
    assert pixels.shape == (2, 3, 4, 4)
    assert torch.equal(per_token(pixels, (1, 2, 2)), values)


def test_choice_drops_from_the_tails_high_ratio_asks_for():
    metric = torch.tensor([[5.0, 1.0, 4.0, 2.0, 3.0, 0.5]])
    zero = torch.zeros_like(metric)
    assert choose_tokens(metric, zero, 4, 0.0, 0.0).tolist() == [[0, 2, 3, 4]]  # drops the two slowest
    assert choose_tokens(metric, zero, 4, 1.0, 0.0).tolist() == [[1, 3, 4, 5]]  # drops the two fastest
    assert choose_tokens(metric, zero, 4, 0.5, 0.0).tolist() == [[1, 2, 3, 4]]  # one of each
    # a token left out often ranks higher: here it overtakes the one above it
    starved = torch.tensor([[0.0, 5.0, 0.0, 0.0, 0.0, 0.0]])
    assert choose_tokens(metric, starved, 4, 0.0, 1.0).tolist() == [[0, 1, 2, 4]]


def test_each_sample_gets_its_own_choice_and_counts_its_drops_once_per_step():
    config = RASConfig(sample_ratio=0.5, warmup_steps=1, dense_steps=0, high_ratio=0.0)
    state = RASState(config=config, plan=StepPlan(6, 1, 0), patch=(1, 2, 2))
    v = torch.zeros(2, 4, 1, 4, 4)
    v[0, 0, 0, :2, :2] = torch.arange(4.0).view(2, 2) * 10  # sample 0 moves in token 0
    v[1, 0, 0, 2:, 2:] = torch.arange(4.0).view(2, 2) * 10  # sample 1 moves in token 3
    state.observe(v)
    assert state.selection(0, 4) is None  # warm-up
    chosen = state.selection(1, 4)
    assert chosen.shape == (2, keep_count(4, 0.5))
    assert 0 in chosen[0].tolist() and 3 in chosen[1].tolist()
    counts = state.drop_count.clone()
    assert torch.equal(state.selection(1, 4), chosen)  # a second call of the step: same choice, no recount
    assert torch.equal(state.drop_count, counts)
    assert (counts == -7 + 1).sum() == 4 and (counts == -7).sum() == 4
    assert state.selection(2, 5) is None  # a call with another token count runs every token


def test_gather_then_scatter_puts_the_part_back_in_place():
    x = torch.randn(4, 10, 3)
    index = torch.tensor([[0, 2, 5], [1, 2, 9], [0, 2, 5], [1, 2, 9]])
    part = gather_tokens(x, index)
    assert torch.equal(part[1], x[1, [1, 2, 9]])
    assert torch.equal(scatter_tokens(torch.zeros_like(x), index, part)[3, 9], x[3, 9])
    assert torch.equal(scatter_tokens(x, index, part), x)
    # a RoPE table stored once for the batch: one row per batch row when the rows differ, shared when not
    table = torch.randn(1, 10, 1, 2, 2, 2)
    assert gather_tokens(table, index).shape == (4, 3, 1, 2, 2, 2)
    same = rows_for_call(index[:1], 2)
    shared = gather_tokens(table, same)
    assert shared.shape == (1, 3, 1, 2, 2, 2) and torch.equal(shared[0], table[0, [0, 2, 5]])


def test_final_dense_steps_keep_the_last_steps_whole_and_refreshes_spread_before_them():
    plan = StepPlan(total_steps=28, warmup_steps=4, dense_steps=2, final_dense_steps=1)
    assert not plan.sparse(27) and plan.sparse(26)
    assert plan.refresh_steps == (12, 19)

"""The report record and the metrics, on plain torch."""

from __future__ import annotations

import copy

import pytest
import torch
from comfyui_ditaccel.accel_core.adapters import FLUX, WAN21, BlockList
from comfyui_ditaccel.accel_core.metrics import block_flops, psnr, rel_l2, ssim
from comfyui_ditaccel.accel_core.report import RAN_FORECAST, RAN_SUBSET, CallRecord, ReportHolder, render_plot


def make_record(holder: ReportHolder, steps: int = 3):
    record = holder.start_run(("Probe",), [1.0 - i / steps for i in range(steps)] + [0.0])
    for step in range(steps):
        for stream in ("cond", "uncond"):  # split CFG: two calls per step
            record.calls.append(CallRecord(step=step, sigma=1.0 - step / steps, streams=(stream,), batch=1,
                                           image_tokens=16, text_tokens=7, flops_full=2e9, flops_run=2e9, seconds=0.01))
    return record


def test_steps_aggregate_calls_and_marks():
    record = make_record(ReportHolder())
    record.calls[2].mark_skipped(1.5e9, "blocks 1-3", RAN_FORECAST)
    steps = record.steps()
    assert [s.calls for s in steps] == [2, 2, 2]
    assert steps[1].ran == "forecast, full" and steps[1].skipped == "blocks 1-3"
    assert steps[1].flops_run == pytest.approx(2.5e9)
    assert steps[0].ran == "full x2"
    assert record.flops_share == pytest.approx(1 - 1.5e9 / 12e9)
    lines = record.summary().splitlines()
    assert lines[1] == "methods: Probe"
    assert len([line for line in lines if line[:4].strip().isdigit()]) == 3


def test_holder_is_shared_by_deepcopy_and_keeps_recent_runs():
    holder = ReportHolder()
    assert copy.deepcopy({"h": holder})["h"] is holder
    for _ in range(12):
        make_record(holder)
    assert len(holder.runs) == 8


def test_plot_is_an_image_even_without_a_record():
    empty = render_plot(None)
    assert empty.shape == (384, 768, 3) and empty.dtype.name == "float32"
    full = render_plot(make_record(ReportHolder()))
    assert full.shape == empty.shape and not (full == empty).all()
    assert 0.0 <= full.min() and full.max() <= 1.0


def test_psnr_ssim_rel_l2():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(32, 32, 3, generator=g)
    assert psnr(a, a) == float("inf") and ssim(a, a) == pytest.approx(1.0)
    noisy = (a + 0.1 * torch.randn(32, 32, 3, generator=g)).clamp(0, 1)
    noisier = (a + 0.3 * torch.randn(32, 32, 3, generator=g)).clamp(0, 1)
    assert psnr(a, noisy) > psnr(a, noisier) > 0
    assert 1.0 > ssim(a, noisy) > ssim(a, noisier)
    # PSNR of a constant offset is exact: 10 log10(1 / 0.01) = 20 dB
    assert psnr(torch.zeros(8, 8, 3), torch.full((8, 8, 3), 0.1)) == pytest.approx(20.0, abs=1e-6)
    assert rel_l2(2 * a, a) == pytest.approx(1.0)


class TinyBlock(torch.nn.Module):
    def __init__(self, d: int, f: int, t: int) -> None:
        super().__init__()
        self.self_attn = torch.nn.ModuleDict({n: torch.nn.Linear(d, d) for n in "qkvo"})
        self.cross_attn = torch.nn.ModuleDict({n: torch.nn.Linear(d if n in "qo" else t, d) for n in "qkvo"})
        self.ffn = torch.nn.Sequential(torch.nn.Linear(d, f), torch.nn.GELU(), torch.nn.Linear(f, d))


def test_block_flops_count_linears_and_attention():
    d, f, n_img, n_txt = 8, 32, 10, 3
    spec: BlockList = WAN21.block_lists[0]
    got = block_flops(TinyBlock(d, f, d), spec, n_img, n_txt)
    linears = 2 * (4 * n_img * d * d + 2 * n_img * d * d + 2 * n_txt * d * d + 2 * n_img * d * f)
    attention = 4 * n_img * n_img * d + 4 * n_img * n_txt * d
    assert got == linears + attention


def test_block_flops_of_part_of_the_tokens_attending_to_all_keys():
    d, f, n_img, n_txt = 8, 32, 10, 3
    spec: BlockList = WAN21.block_lists[0]
    part = block_flops(TinyBlock(d, f, d), spec, 4, n_txt, n_keys=n_img)
    alone = block_flops(TinyBlock(d, f, d), spec, 4, n_txt)
    assert part - alone == 4 * 4 * (n_img - 4) * d  # only the self-attention sees the extra keys


def test_attention_width_ignores_narrower_modulation_linears():
    from comfyui_ditaccel.accel_core.adapters import LUMINA2

    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv = torch.nn.Linear(8, 24)
            self.adaLN_modulation = torch.nn.Linear(4, 32)  # conditioning vector: narrower, one token

    spec = LUMINA2.block_lists[0]
    n_img, n_txt = 10, 3
    linears = 2 * (n_img + n_txt) * 8 * 24 + 2 * 1 * 4 * 32
    assert block_flops(Block(), spec, n_img, n_txt) == linears + 4 * (n_img + n_txt) ** 2 * 8


def test_tokens_column_shows_computed_over_all_where_a_call_ran_a_subset():
    record = make_record(ReportHolder())
    assert "tokens" not in record.summary().splitlines()[5]
    record.calls[2].tokens_run = 4
    record.calls[2].mark_skipped(1e9, "12 of 16 tokens reused", RAN_SUBSET)
    steps = record.steps()
    assert steps[1].tokens == "4/16, 16/16" and steps[0].tokens == "-"
    lines = record.summary().splitlines()
    assert "tokens" in lines[5] and "4/16, 16/16" in lines[7]


def test_image_tokens_follow_the_patch_grid():
    assert WAN21.image_tokens((1, 16, 1, 32, 32)) == 256
    assert WAN21.image_tokens((1, 16, 3, 31, 17)) == 3 * 16 * 9
    assert FLUX.image_tokens((2, 16, 64, 48)) == 32 * 24

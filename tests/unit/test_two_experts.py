"""Wan 2.2's two experts: two models in one graph, each sampling part of the steps, each with its own state."""

from __future__ import annotations

import comfy.sample
import pytest
import torch
from comfyui_ditaccel.accel_core.caching.apply import apply_taylorseer
from comfyui_ditaccel.accel_core.caching.taylorseer import TaylorSeerConfig
from comfyui_ditaccel.accel_core.comfy_patch import report_holder

from tools.runtime.sampling import WAN_FILE, conditioning, load_model

STEPS, SWITCH = 12, 6


@pytest.fixture(scope="module")
def experts():
    # two loads of one file stand in for the high-noise and low-noise experts (two model objects)
    config = TaylorSeerConfig(interval=2, order=1, warmup_steps=1)
    return apply_taylorseer(load_model(WAN_FILE), config), apply_taylorseer(load_model(WAN_FILE), config)


def run(model, latent: torch.Tensor, start: int, last: int, add_noise: bool) -> torch.Tensor:
    """KSamplerAdvanced: steps start..last of one STEPS-step schedule, leftover noise returned."""
    noise = comfy.sample.prepare_noise(latent, 0) if add_noise else torch.zeros_like(latent)
    return comfy.sample.sample(model, noise, STEPS, 3.0, "euler", "simple", conditioning(1), conditioning(2),
                               latent, start_step=start, last_step=last, force_full_denoise=last >= STEPS,
                               disable_noise=not add_noise, seed=0, disable_pbar=True)


def test_each_expert_keeps_its_own_state(experts):
    high, low = experts
    empty = torch.zeros(1, 16, 1, 8, 8)
    middle = run(high, empty, 0, SWITCH, add_noise=True)
    after_high = run(low, middle, SWITCH, STEPS, add_noise=False)
    # the low-noise expert alone, on the same latent, in a fresh graph: the same image bit for bit,
    # so nothing the high-noise expert's run left behind reached it
    alone = run(low, middle.clone(), SWITCH, STEPS, add_noise=False)
    assert torch.equal(after_high, alone)
    high_run, low_run = report_holder(high).latest, report_holder(low).latest
    assert high_run is not low_run
    assert [s.step for s in high_run.steps()] == list(range(SWITCH))
    assert len(low_run.steps()) == STEPS - SWITCH
    # each expert forecasts within its own part of the schedule
    assert any("forecast" in s.ran for s in high_run.steps()) and any("forecast" in s.ran for s in low_run.steps())

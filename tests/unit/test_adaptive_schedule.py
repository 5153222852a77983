"""TaylorSeer's adaptive schedule on plain torch: the change estimate and the steps it makes full."""

from __future__ import annotations

import math

import pytest
import torch
from comfyui_ditaccel.accel_core.caching.schedule import IntervalSchedule, StepWindow
from comfyui_ditaccel.accel_core.caching.taylorseer import (
    PROBE_STRIDE,
    ChangeEstimate,
    TaylorSeerConfig,
    TaylorSeerState,
)


def _state(threshold: float, max_gap: int = 50, warmup: int = 2, steps: int = 20) -> TaylorSeerState:
    return TaylorSeerState(IntervalSchedule(max_gap, StepWindow(warmup)), steps, order=0, threshold=threshold)


def _run(state: TaylorSeerState, inputs, outputs) -> list[int]:
    """Drive one call per step; a full step hands its output back as the model would."""
    full = []
    for step, (x, out) in enumerate(zip(inputs, outputs, strict=True)):
        if state.decide_step(step, x):
            full.append(step)
            state.change.computed(out)
    return full


def test_the_estimate_scales_the_input_change_by_the_measured_rate():
    est = ChangeEstimate()
    x0, x1 = torch.zeros(64), torch.ones(64)
    assert est.estimate(x1) is None  # nothing measured yet
    est.full_step(x0)
    est.computed(torch.full((64,), 10.0))
    assert est.estimate(x1) is None  # one full step gives no rate
    est.full_step(x1)
    est.computed(torch.full((64,), 13.0))  # output moved 3 per 1 of input
    assert est.rate == pytest.approx(3.0)
    # input 0.5 past the last full step: 3 x 0.5 / 13
    assert est.estimate(torch.full((64,), 1.5)) == pytest.approx(1.5 / 13)
    assert est.estimate(torch.full((64,), 2.0)) == pytest.approx(3.0 / 13)


def test_only_the_first_call_of_a_full_step_is_measured():
    est = ChangeEstimate()
    est.full_step(torch.zeros(64))
    est.computed(torch.ones(64))
    est.computed(torch.full((64,), 100.0))  # a second call of the same step (Heun, or the uncond call)
    assert torch.equal(est.full_output, torch.ones(64 // PROBE_STRIDE))


def test_full_steps_come_when_the_estimated_change_reaches_the_threshold():
    # input t, output 10 + t: rate 1, so the estimate at step s after full step f is (s - f) / (10 + f)
    inputs = [torch.full((16,), float(t)) for t in range(20)]
    outputs = [torch.full((16,), 10.0 + t) for t in range(20)]
    full = _run(_state(0.25), inputs, outputs)
    expected, last = [0, 1], 1
    for s in range(2, 20):
        if (s - last) / (10 + last) >= 0.25 or s == 19:
            expected.append(s)
            last = s
    assert full == expected
    assert full[:4] == [0, 1, 4, 8]


def test_the_interval_caps_the_gap_and_a_still_input_never_refreshes():
    # the rate is measured over the warm-up; then the input stands still and the estimate stays 0
    inputs = [torch.zeros(16)] + [torch.ones(16)] * 19
    outputs = [torch.full((16,), 4.0)] + [torch.full((16,), 5.0)] * 19
    assert _run(_state(0.1, max_gap=4), inputs, outputs) == [0, 1, 5, 9, 13, 17, 19]


def test_the_threshold_is_checked_and_named():
    with pytest.raises(ValueError, match="threshold must be between 0 and 10"):
        TaylorSeerConfig(threshold=-0.1)
    assert "adaptive threshold=0.2, max interval=6" in TaylorSeerConfig(interval=6, threshold=0.2).tag()
    assert "interval=6," in TaylorSeerConfig(interval=6).tag()


def test_a_fixed_schedule_reports_no_estimate():
    state = _state(0.0)
    state.decide_step(0, torch.ones(4))
    assert math.isnan(state.step_estimate)

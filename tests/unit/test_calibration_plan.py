"""Settings from a calibration profile: the planner keeps its budget at the least compute, and a profile that
does not fit the run is not used, with the reason."""

from __future__ import annotations

import itertools
import math

import pytest
from comfyui_ditaccel.accel_core.caching.schedule import StepWindow
from comfyui_ditaccel.accel_core.caching.taylorseer import TaylorSeerConfig
from comfyui_ditaccel.accel_core.calibration import plan
from comfyui_ditaccel.accel_core.calibration.profile import ORDERS, EntryCurves, Profile
from comfyui_ditaccel.accel_core.calibration.profiled import ProfiledRequest
from comfyui_ditaccel.accel_core.settings import records
from comfyui_ditaccel.accel_core.settings.resolve import Request
from comfyui_ditaccel.accel_core.settings.variants import NAMES, Variant

MAX_GAP = 4


def curves(steps: int, slope: float, bump: int = -1) -> EntryCurves:
    """Forecast errors growing with the gap and the order's need for history; step `bump` moves fast."""

    def err(order: int, gap: int, step: int) -> float:
        if step - (order + 1) * gap < 0:
            return math.nan
        scale = 10.0 if step == bump else 1.0
        return slope * scale * gap ** (order + 1) / (order + 1) ** 2 * (1 + 0.1 * step)

    table = [[[err(o, g, t) for t in range(steps)] for g in range(1, MAX_GAP + 1)] for o in ORDERS]
    gaps = [[math.nan if t < g else 0.01 * g * (10.0 if t == bump else 1.0) for t in range(steps)]
            for g in range(1, MAX_GAP + 1)]
    weight = [1.0 / steps] * steps
    nan = [math.nan] * steps
    rest = [[0.5 * v for v in row] for row in gaps]
    return EntryCurves(nan, nan, nan, weight, table, gaps, table, table, rest)


def profile(steps: int = 10, slope: float = 0.05) -> Profile:
    p = Profile("fp", "wan", "embedded-image", steps, "euler", "simple", "1024pos",
                [1.0 - i / steps for i in range(steps + 1)])
    p.entries = {"cond": curves(steps, slope, bump=5), "uncond": curves(steps, slope * 0.5)}
    return p


def brute_force(p: Profile, budget: float, order: int) -> int:
    """The fewest full steps of any schedule that fits the budget (step 0 and the last always full)."""
    n = p.steps
    for k in range(0, n - 1):
        for middle in itertools.combinations(range(1, n - 1), k):
            full = (0, *middle, n - 1)
            total = sum(plan.skip_cost(p, order, t - max(f for f in full if f < t), t)
                        for t in range(n) if t not in full)
            if total <= budget:
                return len(full)
    return n


@pytest.mark.parametrize("budget", [0.0, 0.004, 0.01, 0.03, 0.2])
@pytest.mark.parametrize("order", [0, 1, 2])
def test_the_schedule_is_the_fewest_full_steps_within_the_budget(budget, order):
    p = profile()
    chosen = plan.plan_schedule(p, budget, (order,))
    assert chosen.total <= budget + 1e-12
    assert {0, p.steps - 1} <= set(chosen.full_steps)
    assert len(chosen.full_steps) == brute_force(p, budget, order)
    # what the plan predicts is what its own schedule costs on the profile
    for t, e in enumerate(chosen.predicted):
        last = max(f for f in chosen.full_steps if f <= t)
        assert e == (0.0 if t == last else pytest.approx(plan.skip_cost(p, order, t - last, t)))


def test_a_larger_budget_never_runs_more_and_the_order_is_chosen():
    p = profile()
    counts = [len(plan.plan_schedule(p, b, ORDERS).full_steps) for b in (0.0, 0.002, 0.01, 0.05, 0.5)]
    assert counts == sorted(counts, reverse=True) and counts[0] == p.steps and counts[-1] < counts[0]
    both = plan.plan_schedule(p, 0.01, ORDERS)
    assert len(both.full_steps) == min(len(plan.plan_schedule(p, 0.01, (o,)).full_steps) for o in ORDERS)


def test_the_window_keeps_its_steps_full():
    p = profile()
    chosen = plan.plan_schedule(p, 1.0, (0,), StepWindow(0, 0.0, 0.5))
    assert set(range(5, 10)) <= set(chosen.full_steps)


@pytest.mark.parametrize("kind", ["fbcache", "cg"])
def test_the_gate_threshold_fits_the_budget_and_grows_with_it(kind):
    p = profile()
    window = StepWindow(0)
    plans = [plan.plan_gate(p, b, kind, window, 3, order=0, first_block_order=1) for b in (0.0, 0.01, 0.05, 0.5)]
    assert plans[0].threshold == 0.0 and len(plans[0].full_steps) == p.steps
    for chosen in plans:
        assert chosen.total <= chosen.budget + 1e-12
        # the gate run on the profile with that threshold makes the plan's decisions
        measure = plan.gate_measure(p, kind, 1)
        full, _ = plan.simulate_gate(p.steps, chosen.threshold, measure,
                                     lambda g, t: plan.skip_cost(p, 0, g, t), {0, p.steps - 1}, 3)
        assert full == chosen.full_steps
    thresholds = [c.threshold for c in plans]
    assert thresholds == sorted(thresholds) and len(plans[-1].full_steps) < p.steps
    # never more than max_skips in a row
    full = plans[-1].full_steps
    assert max(b - a for a, b in itertools.pairwise(full)) <= 4


def variant() -> Variant:
    return Variant("wan", "embedded-image", NAMES["embedded-image"], "test")


def test_a_fitting_profile_plans_the_run_and_says_so():
    p = profile()
    req = ProfiledRequest(Request(records.TAYLORSEER, "balanced"), p, "fp")
    applied = req.resolve(variant(), 10).config
    run = req.for_run(variant(), 10, applied, 1024)
    config: TaylorSeerConfig = run.config
    assert config.full_steps and config.schedule.full_steps(10) == list(config.full_steps)
    assert f"profile {p.name}, balanced = budget {plan.BUDGETS['balanced']:g}" in run.source
    assert "predicted per skipped step" in run.line()


@pytest.mark.parametrize("steps, positions, fingerprint, why", [
    (28, 1024, "fp", "measured at 10 steps, this run has 28"),
    (10, 4096, "fp", "this run has 4096"),
    (10, 1024, "other", "another model"),
])
def test_a_profile_that_does_not_fit_falls_back_to_the_record_with_the_reason(steps, positions, fingerprint, why):
    base = Request(records.FBCACHE, "fast")
    req = ProfiledRequest(base, profile(), fingerprint)
    applied = req.resolve(variant(), steps).config
    run = req.for_run(variant(), steps, applied, positions)
    assert run.config == base.for_run(variant(), steps, applied).config
    assert "not used" in run.source and why in run.source and "preset's record applies" in run.source


def test_custom_values_and_a_profile_do_not_mix():
    with pytest.raises(ValueError, match=r"^profile: .*preset 'custom' takes the node's own values"):
        ProfiledRequest(Request(records.TAYLORSEER, "custom", {"interval": 3}), profile(), "fp")


def test_a_forecast_short_of_history_costs_what_its_lower_order_does():
    p = profile()
    c = p.entries["cond"]
    # order 2 from gap 2 needs 6 steps behind step 4: the forecaster runs at order 1 there (4 steps behind)
    assert math.isnan(c.forecast_error[2][1][4]) and not math.isnan(c.forecast_error[1][1][4])
    assert plan.skip_cost(p, 2, 2, 4) == pytest.approx(c.forecast_error[1][1][4] * c.output_weight[4])


def test_stack_level_errors_are_read_as_the_same_relative_error_of_the_guided_output():
    from comfyui_ditaccel.accel_core.calibration.profile import GUIDED

    p = profile()
    plain = plan.skip_cost(p, 0, 1, 5, plan.REST)
    assert plain == pytest.approx(max(e.rest_residual_gap[0][5] * e.output_weight[5] for e in p.entries.values()))
    p.entries[GUIDED], p.cfg = curves(p.steps, 0.05), 4.0
    p.entries[GUIDED].output_weight = [3.0 / p.steps] * p.steps  # the guided output moves three times as far
    assert plan.skip_cost(p, 0, 1, 5, plan.REST) == pytest.approx(3.0 * plain)


def with_adaptive_curves(p: Profile) -> Profile:
    """The input moves steadily; the feature moves fast around step 5 (a rule that watches it refreshes there)."""
    for c in p.entries.values():
        gap = [[math.nan if t < g else 0.1 * g for t in range(p.steps)] for g in range(1, MAX_GAP + 1)]
        feat = [[math.nan if t < g else 0.05 * g * (4.0 if t - g < 5 <= t else 1.0) for t in range(p.steps)]
                for g in range(1, MAX_GAP + 1)]
        c.adaptive = {"output": {"input_gap": gap, "feature_gap": feat, "feature_abs": [1.0] * p.steps}}
    return p


def test_the_adaptive_rule_replayed_on_the_profile_keeps_the_budget():
    p = with_adaptive_curves(profile())
    plans = [plan.plan_adaptive(p, b, (0,), "output", StepWindow(0)) for b in (0.005, 0.02, 0.2)]
    for chosen in plans:
        assert chosen.total <= chosen.budget + 1e-12
        full, predicted = plan.replay_adaptive(p, chosen.interval, chosen.threshold, "output", 0, {0, 9}, plan.OUTPUT)
        assert (full, predicted) == (chosen.full_steps, chosen.predicted)
    counts = [len(c.full_steps) for c in plans]
    assert counts == sorted(counts, reverse=True) and counts[-1] < counts[0]


def test_a_profile_with_adaptive_curves_sets_taylorseers_interval_and_threshold():
    p = with_adaptive_curves(profile())
    req = ProfiledRequest(Request(records.TAYLORSEER, "balanced"), p, "fp")
    applied = req.resolve(variant(), 10).config.resolved(True, "wan")  # at apply: granularity output
    config = req.for_run(variant(), 10, applied, 1024).config
    chosen = plan.plan_adaptive(p, plan.BUDGETS["balanced"], ORDERS, "output", StepWindow(0))
    assert (config.interval, config.threshold, config.order) == (chosen.interval, chosen.threshold, chosen.order)
    assert not config.full_steps and config.warmup_steps == 0

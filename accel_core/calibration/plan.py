"""Settings from a profile: the least compute whose predicted error stays within a budget.

The unit of every budget is the predicted relative L2 error of the final latent. A step that is not
computed (forecast, or the rest of the stack skipped) with an output error of relative size e moves
the final latent by about e x output_weight (profile.py); the prediction is the sum of those over the
skipped steps, read on the guided output where the run used CFG (else the largest over the entries).
A sum of magnitudes bounds errors that partly cancel, so the prediction leans high.

- TaylorSeer keeps its adaptive rule (a full step when the estimated change of the feature since the
  last full step reaches a threshold, at the latest every `interval` steps): the rule is replayed on
  the profile for every interval, threshold and order the model's hooks allow, and the one with the
  fewest full steps whose skipped steps fit the budget is taken, so each run still places its full
  steps by its own features. A profile without the rule's curves gets a fixed list of full steps
  instead, by dynamic programming over its forecast errors (order k forecast of step t from the full
  step d before it: `forecast_error[k][d - 1][t]`, or the stack's for granularity `blocks`).
- First Block Cache and CG-Taylor keep their gate and choose its threshold: the gate is run on the
  profile's own record of the gate's measure (`first_residual_gap`, `first_forecast_error`), for
  every threshold that changes a decision, and the largest threshold whose skipped steps fit the
  budget is taken. A skipped step's error is what the method puts in place of the stack: the rest
  of the stack's residual from the last full step (First Block Cache), the stack output's forecast at
  CG-Taylor's order.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..caching.schedule import StepWindow
from .profile import GUIDED, ORDERS, EntryCurves, Profile

UNIT = "predicted relative L2 error of the final latent"
# the presets as error budgets in UNIT (what each gives on held-out captions: docs/results/calibration.md)
BUDGETS = {"quality": 0.02, "balanced": 0.05, "fast": 0.1}
INF = math.inf


def budget_of(preset: str) -> float:
    if preset not in BUDGETS:
        raise ValueError(f"a profile turns the presets {', '.join(BUDGETS)} into error budgets; preset "
                         f"{preset!r} takes the node's own values (disconnect the profile or pick one of those)")
    return BUDGETS[preset]


@dataclass(frozen=True)
class Plan:
    """What a profile chose, and the error it predicts per step (0 where the step runs in full)."""

    full_steps: tuple[int, ...]
    order: int
    predicted: tuple[float, ...]
    budget: float
    threshold: float = 0.0  # the gates' chosen threshold, or TaylorSeer's adaptive one
    interval: int = 0  # TaylorSeer's adaptive schedule: the longest gap

    @property
    def total(self) -> float:
        return sum(self.predicted)

    @property
    def skipped(self) -> int:
        return len(self.predicted) - len(self.full_steps)

    def per_step_text(self) -> str:
        """The skipped steps and their predicted errors, for the report."""
        return ", ".join(f"{i}: {e:.2g}" for i, e in enumerate(self.predicted) if i not in self.full_steps) or "none"


def _finite(x: float) -> float:
    return x if x == x else INF  # NaN: too few steps before it to forecast


def output_entries(profile: Profile) -> list[EntryCurves]:
    """What the final latent follows: the guided output with CFG, else each entry."""
    if GUIDED in profile.entries:
        return [profile.entries[GUIDED]]
    return list(profile.entries.values())


def gate_entries(profile: Profile) -> list[EntryCurves]:
    """The entries a gate compares (each conditioning entry; the guided output has no gate measures)."""
    return [c for name, c in profile.entries.items() if name != GUIDED]


OUTPUT, STACK, REST = "output", "stack", "rest"  # what a method puts in place of what it does not compute


def _first_finite(values: Sequence[float]) -> float:
    return next((v for v in values if v == v), INF)


def skip_cost(profile: Profile, order: int, gap: int, step: int, feature: str = OUTPUT) -> float:
    """Predicted final-latent error of not computing `step`, filled from the full step `gap` before it.

    `feature`: OUTPUT, the model's output forecast at `order` (TaylorSeer `output`; on the guided output
    where CFG ran); STACK, the stack's output forecast (TaylorSeer `blocks`, CG-Taylor); REST, the rest
    of the stack's residual reused (First Block Cache). A forecaster with fewer full steps behind it than
    its order needs runs at the order its history allows, so a missing value falls back to lower orders.
    Stack-level errors are measured per entry; with CFG they are taken as the same relative error of the
    guided output (cond and uncond are forecast from the same steps, so their errors largely agree and
    cancel in cond - uncond rather than add cfg times over)."""
    if gap < 1 or gap > profile.max_gap:
        return INF
    orders = list(range(min(order, ORDERS[-1]), -1, -1))
    if feature == OUTPUT:
        return max(_first_finite([c.forecast_error[o][gap - 1][step] for o in orders]) * c.output_weight[step]
                   for c in output_entries(profile))
    guided = profile.entries.get(GUIDED)
    costs = []
    for c in gate_entries(profile):
        if feature == STACK:
            err = _first_finite([c.stack_forecast_error[o][gap - 1][step] for o in orders])
        else:
            err = _finite(c.rest_residual_gap[gap - 1][step])
        costs.append(err * (guided or c).output_weight[step])
    cost = max(costs, default=INF)
    # a family whose stack output the profile could not compare (shapes differ) falls back to the output
    return cost if cost < INF else skip_cost(profile, order, gap, step)


def forced_steps(window: StepWindow, steps: int) -> set[int]:
    """Steps the window runs in full whatever the plan (and step 0: nothing to forecast from)."""
    return {0} | {s for s in range(steps) if window.forced_full(s, steps)}


def plan_schedule(profile: Profile, budget: float, orders: Sequence[int], window: StepWindow | None = None,
                  feature: str = OUTPUT) -> Plan:
    """The fewest full steps whose summed forecast error fits `budget`, over `orders`."""
    n = profile.steps
    forced = forced_steps(window or StepWindow(), n) | {n - 1}
    best: Plan | None = None
    for order in orders:
        found = _fewest_full_steps(n, budget, forced,
                                   lambda gap, step, k=order: skip_cost(profile, k, gap, step, feature))
        found = Plan(found.full_steps, order, found.predicted, budget)
        if best is None or (len(found.full_steps), found.total) < (len(best.full_steps), best.total):
            best = found
    assert best is not None
    return best


def _fewest_full_steps(n: int, budget: float, forced: set[int], cost: Callable[[int, int], float]) -> Plan:
    """Dynamic programming over (last full step, full steps so far): the least error for each count of full
    steps, then the smallest count within `budget` (all steps full when none fits)."""
    # seg[i][j]: the error of forecasting every step strictly between full steps i and j from i
    seg: dict[tuple[int, int], float] = {}
    for i in range(n):
        total = 0.0
        for j in range(i + 1, n):
            seg[(i, j)] = total
            if j in forced:
                break
            total += cost(j - i, j)
            if total == INF:
                break
    # err[k][j]: least error with k full steps, the last at j; step 0 is always full
    err: list[dict[int, float]] = [{}, {0: 0.0}]
    back: list[dict[int, int]] = [{}, {}]
    for k in range(2, n + 1):
        err.append({})
        back.append({})
        for (i, j), e in seg.items():
            if i in err[k - 1] and e < INF:
                total = err[k - 1][i] + e
                if total < err[k].get(j, INF):
                    err[k][j], back[k][j] = total, i
        if err[k].get(n - 1, INF) <= budget:
            break
    k = next((k for k in range(1, len(err)) if err[k].get(n - 1, INF) <= budget), None)
    if k is None:
        return Plan(tuple(range(n)), 0, (0.0,) * n, budget)
    full = [n - 1]
    while k > 1:
        full.append(back[k][full[-1]])
        k -= 1
    full = sorted(set(full) | {0})
    predicted = [0.0] * n
    for a, b in itertools.pairwise(full):
        for t in range(a + 1, b):
            predicted[t] = cost(t - a, t)
    return Plan(tuple(full), 0, tuple(predicted), budget)


def gate_measure(profile: Profile, kind: str, first_block_order: int = 0) -> Callable[[int, int], float]:
    """(gap, step) -> the gate's measure there, the largest over the entries ("fbcache" or "cg")."""

    def measure(gap: int, step: int) -> float:
        if gap < 1 or gap > profile.max_gap:
            return INF
        if kind == "fbcache":
            return max(_finite(c.first_residual_gap[gap - 1][step]) for c in gate_entries(profile))
        orders = range(min(first_block_order, ORDERS[-1]), -1, -1)
        return max(_first_finite([c.first_forecast_error[o][gap - 1][step] for o in orders])
                   for c in gate_entries(profile))

    return measure


def simulate_gate(n: int, threshold: float, measure: Callable[[int, int], float], cost: Callable[[int, int], float],
                  forced: set[int], max_skips: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """The gate's decisions over a run, on the profile: (full steps, predicted error per step)."""
    full, predicted, last, row = [0], [0.0] * n, 0, 0
    for step in range(1, n):
        gap = step - last
        if step not in forced and row < max_skips and measure(gap, step) < threshold:
            predicted[step] = cost(gap, step)
            row += 1
        else:
            full.append(step)
            last, row = step, 0
    return tuple(full), tuple(predicted)


def plan_gate(profile: Profile, budget: float, kind: str, window: StepWindow, max_skips: int, order: int = 0,
              first_block_order: int = 0, max_threshold: float = 2.0) -> Plan:
    """The largest gate threshold whose skipped steps fit `budget` (0: the gate never skips)."""
    n = profile.steps
    forced = forced_steps(window, n) | {n - 1}
    measure = gate_measure(profile, kind, first_block_order)
    feature = REST if kind == "fbcache" else STACK

    def cost(gap: int, step: int) -> float:
        return skip_cost(profile, order, gap, step, feature)

    values = sorted({v for gap in range(1, profile.max_gap + 1) for step in range(n)
                     if (v := measure(gap, step)) < max_threshold})
    # a threshold just above each measured value changes one decision more than the one before
    candidates = [0.0] + [min(max_threshold, v * 1.0001 + 1e-9) for v in values]
    best = Plan(tuple(range(n)), order, (0.0,) * n, budget, 0.0)
    for threshold in candidates:
        full, predicted = simulate_gate(n, threshold, measure, cost, forced, max_skips)
        if sum(predicted) <= budget and len(full) < len(best.full_steps):
            best = Plan(full, order, predicted, budget, round(threshold, 6))
    return best


# thresholds the adaptive replay tries: geometric, from barely above zero to the widget's range
ADAPTIVE_THRESHOLDS = tuple(round(0.002 * 1.25 ** k, 6) for k in range(36))


def replay_adaptive(profile: Profile, interval: int, threshold: float, what: str, order: int, forced: set[int],
                    feature: str) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """TaylorSeer's adaptive schedule (caching/taylorseer.py's ChangeEstimate) run on the profile: a full step
    when `interval` steps have passed or when the estimated change of the feature since the last full step
    (its change per unit of input change over the last full gap, times the input's change since) reaches
    `threshold`. `what`: "output" or "stack", the curves it reads (the first conditioning entry's)."""
    curves = next(iter(gate_entries(profile))).adaptive[what]
    n = profile.steps
    full, predicted, last, before = [0], [0.0] * n, 0, None
    for step in range(1, n):
        gap = step - last
        run = step in forced or gap >= interval or before is None or gap > profile.max_gap
        if not run:
            span = last - before
            moved = curves["input_gap"][span - 1][last] if span <= profile.max_gap else math.nan
            size = curves["feature_abs"][last]
            if not moved > 0 or not size > 0:
                run = True
            else:
                rate = curves["feature_gap"][span - 1][last] / moved
                run = not rate * curves["input_gap"][gap - 1][step] / size < threshold
        if run:
            full.append(step)
            before, last = last, step
        else:
            predicted[step] = skip_cost(profile, order, gap, step, feature)
    return tuple(full), tuple(predicted)


def plan_adaptive(profile: Profile, budget: float, orders: Sequence[int], what: str, window: StepWindow,
                  max_interval: int = 50) -> Plan | None:
    """The (interval, threshold, order) whose replayed adaptive schedule runs the fewest full steps within the
    budget (None: the profile has no adaptive curves for `what`). A run then adapts to its own features
    around the calibration's, where a fixed list of full steps cannot."""
    entries = gate_entries(profile)
    if not entries or what not in entries[0].adaptive:
        return None
    n = profile.steps
    forced = forced_steps(window, n) | {n - 1}
    feature = OUTPUT if what == "output" else STACK
    best: Plan | None = None
    for order in orders:
        for interval in range(2, min(max_interval, profile.max_gap) + 1):
            for threshold in ADAPTIVE_THRESHOLDS:
                full, predicted = replay_adaptive(profile, interval, threshold, what, order, forced, feature)
                total = sum(predicted)
                if total > budget:
                    continue
                key = (len(full), total)
                if best is None or key < (len(best.full_steps), best.total):
                    best = Plan(full, order, predicted, budget, threshold, interval)
    return best

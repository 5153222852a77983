"""A caching node's request with a calibration profile: at each run, the plan if the profile fits, else the records.

The node resolves its preset as always (the hooks are chosen from it at apply time). When a run
starts, the profile is checked against the run: the model's fingerprint taken when the node ran, the
run's steps and its latent size. If it fits, the preset is read as an error budget (plan.BUDGETS) and
the settings the plan derives replace the preset's schedule or threshold; if not, the preset's record
applies and the report's settings line says why the profile was not used.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any

from ..caching.schedule import StepWindow
from ..caching.taylorseer import OUTPUT
from ..comfy_patch import weights_and_patches
from ..settings import records
from ..settings.resolve import Request, Resolved
from ..settings.variants import Variant
from . import plan
from .profile import ORDERS, Profile, fingerprint


def model_fingerprint(model: Any) -> str:
    """The fingerprint a profile of `model` (a ModelPatcher, LoRAs applied) is saved under."""
    named, patches = weights_and_patches(model)
    return fingerprint(named, patches)


@dataclass(frozen=True)
class ProfiledRequest:
    request: Request
    profile: Profile
    fingerprint: str  # the model's, when the node ran (weights as loaded, LoRAs included)

    def __post_init__(self) -> None:
        if self.request.method not in (records.TAYLORSEER, records.CG_TAYLOR, records.FBCACHE):
            raise ValueError(f"profile: {self.request.spec.node} takes no calibration profile")
        try:
            plan.budget_of(self.request.preset)
        except ValueError as e:
            raise ValueError(f"profile: {e}") from None

    @property
    def budget(self) -> float:
        return plan.budget_of(self.request.preset)

    def resolve(self, variant: Variant | None, total_steps: int) -> Resolved:
        return self.request.resolve(variant, total_steps)

    def for_run(self, variant: Variant | None, total_steps: int, applied: Any, positions: int = 0) -> Resolved:
        base = self.request.for_run(variant, total_steps, applied, positions)
        name = self.profile.name
        why = self.profile.mismatch(self.fingerprint, total_steps, positions)
        if why is not None:
            return replace(base, source=f"{base.source}; profile {name} not used: {why}, so the preset's record "
                                        "applies")
        config, chosen = self._planned(base.config)
        source = (f"profile {name}, {self.request.preset} = budget {chosen.budget:g} ({plan.UNIT}); predicted "
                  f"{chosen.total:.3g} with {chosen.skipped} of {total_steps} steps not computed; predicted per "
                  f"skipped step: {chosen.per_step_text()}")
        return replace(base, config=config, source=source)

    def _planned(self, config: Any) -> tuple[Any, plan.Plan]:
        budget, profile = self.budget, self.profile
        skips = max(profile.max_gap - 1, 0)  # the profile predicts forecasts over at most max_gap steps
        window = StepWindow(0, config.start_percent, config.end_percent)
        if self.request.method == records.TAYLORSEER:
            output = config.granularity == OUTPUT
            orders = ORDERS if output else (min(config.order, ORDERS[-1]),)
            adaptive = plan.plan_adaptive(profile, budget, orders, "output" if output else "stack", window)
            if adaptive is not None:
                # the adaptive rule with the interval and threshold whose replay on the profile fits the
                # budget: each run then places its full steps by its own features
                return replace(config, order=adaptive.order if output else config.order, threshold=adaptive.threshold,
                               interval=adaptive.interval, warmup_steps=0, reference_steps=0), adaptive
            # no adaptive curves for this granularity, or no replayed setting fits the budget: the fixed list of
            # full steps the profile predicts best (all steps full when none fits)
            chosen = plan.plan_schedule(profile, budget, orders, window, plan.OUTPUT if output else plan.STACK)
            order = chosen.order if output else config.order
            gaps = [b - a for a, b in itertools.pairwise(chosen.full_steps)] or [1]
            return replace(config, full_steps=chosen.full_steps, order=order, threshold=0.0, warmup_steps=0,
                           interval=max(1, min(50, max(gaps))), reference_steps=0), chosen
        kind = "fbcache" if self.request.method == records.FBCACHE else "cg"
        order = getattr(config, "order", 0)
        chosen = plan.plan_gate(profile, budget, kind, window, skips, order=order,
                                first_block_order=getattr(config, "first_block_order", 0))
        return replace(config, threshold=chosen.threshold, max_skips=skips, warmup_steps=0, reference_steps=0), chosen

"""When to compute: which sampler steps run the full transformer."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class StepWindow:
    """Steps outside [start_percent, end_percent) of the run, the warm-up and the last step run in full."""

    warmup_steps: int = 0
    start_percent: float = 0.0
    end_percent: float = 1.0
    last_step_full: bool = True

    def __post_init__(self) -> None:
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.start_percent <= 1.0 or not 0.0 <= self.end_percent <= 1.0:
            raise ValueError(f"start_percent and end_percent must lie in [0, 1], got "
                             f"{self.start_percent} and {self.end_percent}")
        if self.start_percent >= self.end_percent:
            raise ValueError(f"start_percent ({self.start_percent}) must be below end_percent ({self.end_percent})")

    def forced_full(self, step: int, total_steps: int) -> bool:
        if step < self.warmup_steps:
            return True
        if self.last_step_full and step >= total_steps - 1:
            return True
        share = step / max(total_steps, 1)
        return not self.start_percent <= share < self.end_percent


class _Schedule:
    """What every schedule offers besides its own `is_full`."""

    def is_full(self, step: int, total_steps: int, last_full_step: int | None) -> bool:
        raise NotImplementedError

    def full_steps(self, total_steps: int) -> list[int]:
        """The steps that run in full over a whole run (for reports and the fair-control benchmark)."""
        out: list[int] = []
        for step in range(total_steps):
            if self.is_full(step, total_steps, out[-1] if out else None):
                out.append(step)
        return out


@dataclass(frozen=True)
class IntervalSchedule(_Schedule):
    """TaylorSeer's schedule: inside the window, one full step every `interval` steps."""

    interval: int
    window: StepWindow = StepWindow()

    def __post_init__(self) -> None:
        if self.interval < 1:
            raise ValueError(f"interval must be >= 1, got {self.interval}")

    def is_full(self, step: int, total_steps: int, last_full_step: int | None) -> bool:
        if last_full_step is None or self.window.forced_full(step, total_steps):
            return True
        return step - last_full_step >= self.interval



@dataclass(frozen=True)
class PlannedSchedule(_Schedule):
    """Full steps chosen ahead of the run (from a calibration profile); every other step is forecast."""

    steps: tuple[int, ...]

    def is_full(self, step: int, total_steps: int, last_full_step: int | None) -> bool:
        return last_full_step is None or step in self.steps or step >= total_steps - 1


def scaled(value: int, total_steps: int, reference_steps: int, minimum: int = 0) -> int:
    """A warm-up given for `reference_steps` steps, for a run of `total_steps` (0: not scaled):
    the same share of the run, where the layout is set."""
    if reference_steps <= 0:
        return value
    return max(minimum, round(value * total_steps / reference_steps))


def scaled_gap(value: int, total_steps: int, reference_steps: int, minimum: int = 0) -> int:
    """An interval or skip limit given for `reference_steps` steps, for a run of `total_steps`.

    It grows with the square root of the step ratio, not in proportion: at 50 steps consecutive
    features are closer, but keeping the 28-step run's number of full steps lost clearly against the
    50-step image (docs/results/caching.md), so part of the extra steps go to more full evaluations.
    """
    if reference_steps <= 0:
        return value
    return max(minimum, round(value * math.sqrt(total_steps / reference_steps)))

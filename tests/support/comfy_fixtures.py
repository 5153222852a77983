"""Test-only helpers for the patching-layer tests (sampling itself is `tools.runtime.sampling`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def attention_counts(model: Any) -> dict[str, int]:
    """What the attention calls of the model's latest run did, summed over its model calls (DiTAccelReport's
    per-call counts, e.g. {"sparse (draft, torch)": 10, "dense (dense step)": 2})."""
    from comfyui_ditaccel.accel_core.comfy_patch import report_holder

    counts: dict[str, int] = {}
    for call in report_holder(model).latest.calls:
        for what, n in call.attention.items():
            counts[what] = counts.get(what, 0) + n
    return counts


@dataclass
class ProbeState:
    block_calls: list[tuple[int, int, int]] = field(default_factory=list)  # (step, flat block, batch)
    attention_calls: int = 0


@dataclass
class ProbeMethod:
    """A pass-through test method that records what the hooks saw."""

    key: str = "test.probe"
    label: str = "Probe"
    runs_started: int = 0
    fail_at_step: int | None = None
    states: list[ProbeState] = field(default_factory=list)

    def new_run_state(self, run: Any) -> ProbeState:
        self.runs_started += 1
        state = ProbeState()
        self.states.append(state)
        return state

    def __deepcopy__(self, memo: dict) -> ProbeMethod:
        return self

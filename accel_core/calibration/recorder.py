"""Calibration's recorder: a method that changes nothing and keeps a probe of five features per model call.

Same shape as the other methods: `CalibrateConfig`, `CalibrateState` (fresh per run), the hooks (a
DIFFUSION_MODEL wrapper for the model's output, a block hook for the first block's residual and the
block stack's output) and `apply_calibrate`. The probes go to a `Recording` the node holds for the
one sampling it runs, so what was measured leaves the run without any state outliving it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..adapters import HOOK_BLOCK_REPLACE, HOOK_FORWARD
from ..comfy_patch import attach, forward_options, run_context, set_block_patches, set_forward_wrapper
from ..memory import DEVICE, ModelDims, Need, RunShape
from ..run_context import BlockSite, ConfiguredMethod, RunContext, stream_labels
from .profile import PROBE_ELEMENTS, probe

KEY = "ditaccel.calibrate"
FEATURES = ("input", "output", "stack", "first_residual", "first_output")
NODE = "DiTAccelCalibrate"


@dataclass
class Recording:
    """The probes of one calibration run: per entry ("cond", "uncond") and feature, one per model call."""

    sigmas: list[float] = field(default_factory=list)
    features: dict[str, dict[str, list[torch.Tensor]]] = field(default_factory=dict)

    def add(self, entry: str, feature: str, value: torch.Tensor) -> None:
        self.features.setdefault(entry, {}).setdefault(feature, []).append(probe(value))


@dataclass(frozen=True)
class CalibrateConfig:
    recording: Recording  # where the probes of every call go
    steps: int  # the sampling's steps (the probes kept grow with them)

    def tag(self) -> str:
        return "Calibrate(full compute; records the output, the stack output and the first block's residual and output)"


@dataclass
class CalibrateState:
    recording: Recording
    entries: list[str] = field(default_factory=list)  # the entries of the call in progress, in batch order
    first_input: list[torch.Tensor] = field(default_factory=list)


def _entries(to: dict) -> list[str]:
    labels = list(stream_labels(to.get("cond_or_uncond"))) or ["cond"]
    # several entries of one kind (area or masked conds) stay apart
    return [f"{label}{labels[:i].count(label) or ''}" for i, label in enumerate(labels)]


def new_state(config: CalibrateConfig, run: RunContext) -> CalibrateState:
    config.recording.sigmas = list(run.sample_sigmas)
    config.recording.features.clear()  # a second sampling of the same patched model measures afresh
    return CalibrateState(config.recording)


def _forward(executor: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    to = forward_options(args, kwargs)
    ctx = run_context(to)
    out = executor(*args, **kwargs)
    if ctx is not None and KEY in ctx.states and isinstance(out, torch.Tensor):
        state: CalibrateState = ctx.state(KEY)
        entries = _entries(to)
        x = args[0] if args and isinstance(args[0], torch.Tensor) else kwargs.get("x")
        for entry, part in zip(entries, out.chunk(len(entries)), strict=True):
            state.recording.add(entry, "output", part)
        if isinstance(x, torch.Tensor):
            for entry, part in zip(entries, x.chunk(len(entries)), strict=True):
                state.recording.add(entry, "input", part)
    return out


def block_hook(args: dict, call_block: Callable[[dict], dict], site: BlockSite, ctx: RunContext | None) -> dict:
    if ctx is None or KEY not in ctx.states:
        return call_block(args)
    state: CalibrateState = ctx.state(KEY)
    key = site.spec.image_key
    if site.flat_index == 0:
        state.entries = _entries(args["transformer_options"])
        state.first_input = list(args[key].chunk(len(state.entries)))
    out = call_block(args)
    parts = out[key].chunk(len(state.entries))
    if site.flat_index == 0:
        for entry, before, after in zip(state.entries, state.first_input, parts, strict=True):
            state.recording.add(entry, "first_residual", after - before)
            state.recording.add(entry, "first_output", after)
        state.first_input = []
    if site.last:
        for entry, part in zip(state.entries, parts, strict=True):
            state.recording.add(entry, "stack", part)
    return out


def memory_needs(config: CalibrateConfig, dims: ModelDims, shape: RunShape) -> list[Need]:
    """Five probes per model call and entry, always kept in host memory (whatever the device: one form);
    on the device only the first block's input of the call in progress (one hidden state per entry)."""
    per_probe = min(PROBE_ELEMENTS, shape.batch * shape.image_tokens * dims.width) * 4
    host = len(FEATURES) * per_probe * shape.streams * config.steps
    return [Need(DEVICE, transient=shape.hidden(dims, rows=shape.rows), host=host,
                 note="probes of the input, the output, the stack output and the first block's residual and output")]


def apply_calibrate(model: Any, recording: Recording, steps: int) -> Any:
    """The model with the recorder attached (a clone: the input model is untouched)."""
    method = ConfiguredMethod(KEY, CalibrateConfig(recording, steps), new_state, node=NODE, memory=memory_needs)
    m, adapter = attach(model, method, frozenset({HOOK_FORWARD, HOOK_BLOCK_REPLACE}), name=NODE)
    set_block_patches(m, adapter, KEY, block_hook)
    set_forward_wrapper(m, KEY, _forward)
    return m

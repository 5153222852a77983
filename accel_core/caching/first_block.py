"""Methods that always run the first block and let it decide whether the rest of the stack runs.

- First-block cache (FBCache / TeaCache family): skip the rest while the first block's
  residual has changed by less than `threshold` (relative L1) since the last full step; the
  rest of the stack is replaced by its residual cached at that step.
- CG-Taylor (Guan et al., arXiv 2508.02240): forecast the first block's output with a Taylor
  series; if the forecast was good (relative L1 error under `threshold`), trust a Taylor forecast
  of the last block's output too and skip the rest. As in the reference code, `order` drives the
  last-block forecast and `first_block_order` the first-block one.

Both keep their state per conditioning stream and decide once per model call (all streams of
a call skip together; a stream seen for the first time forces a full call).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from typing import TypeVar

import torch

from ..memory import DEVICE, HOST, ON_DEVICE, ModelDims, Need, RunShape, Storage
from ..report import RAN_GATED
from ..run_context import BlockHook, BlockSite, RunContext, complete, join, only, split
from .forecast import TaylorForecaster
from .schedule import StepWindow, scaled, scaled_gap

FBCACHE_KEY = "ditaccel.first_block_cache"
CGTAYLOR_KEY = "ditaccel.cg_taylor"


def rel_l1(a: torch.Tensor, b: torch.Tensor) -> float:
    """mean |a - b| / mean |b|."""
    return ((a - b).abs().mean() / b.abs().mean().clamp_min(1e-12)).item()


def final_layout(ctx: RunContext, first_out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The first block's output in the layout the stack's last block returns (joint lists concatenate streams)."""
    last = ctx.stack_list
    first = ctx.adapter.block_lists[0]
    if last is first or not last.joint_order:
        return {k: first_out[k] for k in ctx.stack_keys}
    return {last.image_key: torch.cat([first_out[k] for k in last.joint_order], dim=1)}


_Gate = TypeVar("_Gate", bound="GateConfig")  # typing.Self is Python 3.11+; ComfyUI supports 3.10


@dataclass(frozen=True)
class GateConfig:
    """What the first-block-gated methods share: threshold, skip limit, step window."""

    threshold: float = 0.2  # skip while the gate's measure (see each subclass) stays below this
    max_skips: int = 6  # at most this many skipped steps in a row
    warmup_steps: int = 2  # the first steps always run in full
    start_percent: float = 0.0  # skipping starts at this share of the steps
    end_percent: float = 1.0  # and ends at this share; the last step always runs
    reference_steps: int = 0  # presets: max_skips and warm-up are given for this many steps and scaled

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 2.0:
            raise ValueError(f"threshold must be between 0 and 2, got {self.threshold}")
        if self.max_skips < 0:
            raise ValueError(f"max_skips must be >= 0, got {self.max_skips}")
        self.window  # validates the window  # noqa: B018

    @property
    def window(self) -> StepWindow:
        return StepWindow(self.warmup_steps, self.start_percent, self.end_percent)

    def scale_tag(self) -> str:
        return f", scaled from {self.reference_steps} steps" if self.reference_steps else ""

    def at_steps(self: _Gate, total_steps: int) -> _Gate:
        """The config a run of `total_steps` uses (presets scale max_skips and warm-up with the steps)."""
        return replace(self, max_skips=scaled_gap(self.max_skips, total_steps, self.reference_steps),
                       warmup_steps=scaled(self.warmup_steps, total_steps, self.reference_steps),
                       reference_steps=0)


@dataclass(frozen=True)
class FirstBlockCacheConfig(GateConfig):
    """The gate's measure: the relative L1 change of the first block's residual since the last full step."""

    def tag(self) -> str:
        return (f"FirstBlockCache(threshold={self.threshold:g}, max_skips={self.max_skips}, "
                f"warmup={self.warmup_steps}, {self.start_percent:g}-{self.end_percent:g}{self.scale_tag()})")


@dataclass(frozen=True)
class CGTaylorConfig(GateConfig):
    """The gate's measure: the relative error of the first block's Taylor forecast."""

    threshold: float = 0.3
    order: int = 1  # Taylor order of the last block's forecast, used on a skipped step
    first_block_order: int = 2  # Taylor order of the first block's forecast, the gate

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("order", "first_block_order"):
            if not 0 <= getattr(self, name) <= 4:
                raise ValueError(f"{name} must be between 0 and 4, got {getattr(self, name)}")

    def tag(self) -> str:
        return (f"CGTaylor(threshold={self.threshold:g}, order={self.order}, first_block_order="
                f"{self.first_block_order}, max_skips={self.max_skips}, warmup={self.warmup_steps}{self.scale_tag()})")


@dataclass
class GatedState:
    """What both gates share: the run's skip bookkeeping and the model call's scratch.

    Call order in one model call (`gated_block_hook`): at the first block the call's entries and sigma
    are set (`streams`, `coord`) and the first block runs; `gate` (each subclass) decides from its
    output whether the rest is skipped (`allowed` keeps the window and `max_skips`), `count` books
    it; then the rest of the stack runs and `store` keeps what a later skip reuses, or `replacement`
    stands in for the rest.
    """

    # per run
    window: StepWindow  # warm-up and the steps the gate may skip
    max_skips: int  # at most this many skipped steps in a row
    total_steps: int  # the run's sampler steps
    skips_in_a_row: int = 0  # skipped sampler steps in a row (a step may call the model twice)
    last_skipped_step: int | None = None  # the latest step skipped
    storage: Storage = ON_DEVICE  # where the cached tensors live (memory form)
    # per model call (scratch)
    streams: list[Hashable] = field(default_factory=list)  # the call's cond/uncond entries, in batch order
    coord: float = 0.0  # the call's sigma
    skip: bool = False  # the gate skips the rest of the stack on this call
    first_out: dict[str, torch.Tensor] = field(default_factory=dict)  # the first block's output
    last_error: float = float("nan")  # the gate's measure on this call (the report's gate column)

    def allowed(self, step: int) -> bool:
        if self.window.forced_full(step, self.total_steps):
            return False
        return step == self.last_skipped_step or self.skips_in_a_row < self.max_skips

    def count(self, step: int, skipped: bool) -> None:
        if not skipped:
            self.skips_in_a_row, self.last_skipped_step = 0, None
        elif step != self.last_skipped_step:
            self.skips_in_a_row += 1
            self.last_skipped_step = step


@dataclass
class FirstBlockCacheState(GatedState):
    threshold: float = 0.08
    first_residual: dict[Hashable, torch.Tensor] = field(default_factory=dict)
    rest_residual: dict[Hashable, dict[str, torch.Tensor]] = field(default_factory=dict)

    def gate(self, step: int, first_in: torch.Tensor, first_img: torch.Tensor) -> bool:
        residuals = dict(zip(self.streams, (first_img - first_in).chunk(len(self.streams)), strict=True))
        known = all(s in self.first_residual and s in self.rest_residual for s in self.streams)
        if known:
            self.last_error = max(rel_l1(residuals[s], self.storage.use(self.first_residual[s], first_img.device))
                                  for s in self.streams)
        skip = known and self.allowed(step) and self.last_error < self.threshold
        if not skip:
            self.first_residual.update({s: self.storage.keep(r) for s, r in residuals.items()})
        return skip

    def replacement(self, start: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        parts = split(start, len(self.streams))
        return join([{k: p[k] + self.storage.use(self.rest_residual[s][k], p[k].device) for k in p}
                     for s, p in zip(self.streams, parts, strict=True)])

    def store(self, start: dict[str, torch.Tensor], final: dict[str, torch.Tensor]) -> None:
        n = len(self.streams)
        for s, a, b in zip(self.streams, split(start, n), split(final, n), strict=True):
            self.rest_residual[s] = {k: self.storage.keep(b[k] - a[k]) for k in b}


@dataclass
class CGTaylorState(GatedState):
    threshold: float = 0.05
    order: int = 1
    first_block_order: int = 2
    first: dict[Hashable, TaylorForecaster] = field(default_factory=dict)
    last: dict[tuple[Hashable, str], TaylorForecaster] = field(default_factory=dict)
    stored: set[Hashable] = field(default_factory=set)

    def gate(self, step: int, first_in: torch.Tensor, first_img: torch.Tensor) -> bool:
        chunks = dict(zip(self.streams, first_img.chunk(len(self.streams)), strict=True))
        known = all(s in self.first and s in self.stored for s in self.streams)
        if known:
            self.last_error = max(rel_l1(self.first[s].predict(self.coord), chunks[s]) for s in self.streams)
        skip = known and self.allowed(step) and self.last_error < self.threshold
        if not skip:
            for s, chunk in chunks.items():
                self.first.setdefault(s, TaylorForecaster(self.first_block_order, storage=self.storage)).update(
                    self.coord, chunk)
        return skip

    def replacement(self, start: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return join([{k: self.last[(s, k)].predict(self.coord) for k in start} for s in self.streams])

    def store(self, start: dict[str, torch.Tensor], final: dict[str, torch.Tensor]) -> None:
        for s, part in zip(self.streams, split(final, len(self.streams)), strict=True):
            self.stored.add(s)
            for k, v in part.items():
                self.last.setdefault((s, k), TaylorForecaster(self.order, storage=self.storage)).update(self.coord, v)


def _first_tokens(dims: ModelDims, shape: RunShape) -> int:
    return shape.image_tokens + (shape.text_tokens if dims.first.joint_tokens else 0)


def _gated_needs(first_copies: int, last_copies: int, dims: ModelDims, shape: RunShape, what: str) -> tuple[Need, ...]:
    """Per conditioning entry: `first_copies` of the first block's output (or residual) and
    `last_copies` of the stack's output; a call makes the first block's residual or forecast, the
    replacement and the streams' join."""
    first = shape.hidden(dims, _first_tokens(dims, shape))
    last = shape.hidden(dims, shape.stack_tokens(dims))
    kept = shape.streams * (first_copies * first + last_copies * last)
    work = shape.rows * (first + 2 * last)  # after the first block and after the last: between blocks
    return (Need(DEVICE, held=kept, between=work),
            Need(HOST, between=work + first_copies * first + last_copies * last, host=kept, moved=kept,
                 note=f"{what} in host memory"))


def fbcache_memory_needs(config: FirstBlockCacheConfig, dims: ModelDims, shape: RunShape) -> tuple[Need, ...]:
    return _gated_needs(1, 1, dims, shape, "cached residuals")


def cgtaylor_memory_hints(config: CGTaylorConfig) -> list[tuple[str, CGTaylorConfig]]:
    return [("order 0 and first_block_order 0", replace(config, order=0, first_block_order=0))]


def cgtaylor_memory_needs(config: CGTaylorConfig, dims: ModelDims, shape: RunShape) -> tuple[Need, ...]:
    return _gated_needs(config.first_block_order + 1, config.order + 1, dims, shape, "forecast tables")




def _mark_rest_skipped(ctx: RunContext) -> None:
    call = ctx.current_call
    if call is None:
        return
    per_block = ctx.flops.per_block(call.image_tokens, call.text_tokens)
    call.mark_skipped(call.batch * sum(per_block[1:]), f"blocks 1-{len(per_block) - 1}", RAN_GATED)


def gated_block_hook(key: str) -> BlockHook:
    """Run block 0, let the method's state gate the rest, then skip it or store its output."""

    def hook(args: dict, call_block: Callable[[dict], dict], site: BlockSite, ctx: RunContext | None) -> dict:
        if ctx is None:
            return call_block(args)
        state: GatedState = ctx.state(key)
        if site.flat_index == 0:
            to = args["transformer_options"]
            state.streams = list(to.get("uuids") or [None])
            state.coord = float(to["sigmas"][0])
            out = call_block(args)
            state.last_error = float("nan")
            image_key = site.spec.image_key
            state.first_out = final_layout(ctx, out)
            state.skip = state.gate(ctx.step, args[image_key], out[image_key]) and not site.last
            if ctx.current_call is not None:
                ctx.current_call.gate_error = state.last_error
            state.count(ctx.step, state.skip)
            if state.skip:
                _mark_rest_skipped(ctx)
            elif site.last:
                state.store(state.first_out, only(out, ctx.stack_keys))
            if site.last:
                state.first_out = {}
            return out
        if not state.skip:
            out = call_block(args)
            if site.last:
                state.store(state.first_out, only(out, ctx.stack_keys))
                state.first_out = {}
            return out
        if site.last:
            out = complete(state.replacement(state.first_out), site.spec.returns)
            state.first_out = {}
            return out
        return {k: args[k] for k in site.spec.returns}

    return hook

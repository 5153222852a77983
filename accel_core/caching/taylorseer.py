"""TaylorSeer (Liu et al., ICCV 2025, arXiv 2503.06923): compute every `interval` steps, forecast between.

Granularity `output` forecasts the diffusion model's output itself (a DIFFUSION_MODEL wrapper), so a
forecast step runs nothing of the model: no embeddings, no blocks, no head. It holds (order + 1)
latent-sized tensors per cond/uncond entry, the least of the three, and needs no block hook. On
a small model the embeddings and head, which `blocks` still runs on every forecast step, are a
real share of a step (both measured in docs/results/caching.md). Its forecasts are not
normalised by the head, so orders >= 1 extrapolate badly over several steps: `auto` (the default)
takes `output` at order 0 and `blocks` above. Families whose forward offers no DIFFUSION_MODEL
wrapper (SD3 on 0.3.75) use `blocks` instead; the report's method tag says which ran and why.
Granularity `blocks` forecasts the output of the last block (the hidden state the model's head
reads), so a forecast step runs no transformer block at all and the head still applies the
current step's modulation. The memory cost is (order + 1) copies of that hidden state per
cond/uncond entry. Granularity `modules` forecasts, as the paper does, the output of every
attention, cross-attention and MLP module of every block (families whose blocks call them as
submodules: Wan); the blocks' residual adds, norms and per-step modulation still run, for
3 x blocks x (order + 1) hidden states per cond/uncond entry.

Forecasts are polynomials in sigma (the model's own time input), so samplers that evaluate the
model at several sigmas per step (Heun, DPM++ 2S) forecast each evaluation where it lies.

`threshold` > 0 makes the schedule adaptive: `interval` becomes the longest gap, and a step in
between runs in full as soon as the estimated relative change of the forecast feature since the
last full step reaches `threshold`. The estimate is the change of the call's input (the latent
for `output`, the first block's input otherwise) since that full step, times the feature's
change per unit of input change measured between the last two full steps, over the feature's
size (the input-to-output rate of EasyCache / LazyCache, here deciding when to refresh a
forecast instead of when to reuse). Full steps then gather where the features move fastest,
which a fixed interval cannot do. The estimate reads every 8th element of two saved inputs and
outputs, so the memory stays within a quarter of one more copy of each.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from ..memory import DEVICE, HOST, ModelDims, Need, RunShape, Storage
from ..module_wrap import ModuleSlot
from ..report import RAN_FORECAST
from ..run_context import BlockHook, BlockSite, RunContext, complete, join, only, split
from ..token_subset import TokenSubset
from .forecast import TaylorForecaster
from .schedule import IntervalSchedule, PlannedSchedule, StepWindow, scaled, scaled_gap

KEY = "ditaccel.taylorseer"
GRANULARITIES = ("auto", "output", "blocks", "modules")
AUTO, OUTPUT = "auto", "output"  # OUTPUT is also the forecaster key of granularity `output`


@dataclass(frozen=True)
class TaylorSeerConfig:
    interval: int = 3  # a full step every this many steps (adaptive: at most this many between full steps)
    order: int = 0  # Taylor order of the forecast; 0 reuses the last full step
    warmup_steps: int = 2  # the first steps always run in full
    start_percent: float = 0.0  # forecasting starts at this share of the steps
    end_percent: float = 1.0  # and ends at this share; the last step always runs
    granularity: str = AUTO  # what is forecast: the model output, the last block's output, or every module's
    threshold: float = 0.0  # > 0: adaptive; refresh when the estimated relative change reaches it
    reference_steps: int = 0  # presets: interval and warm-up are given for this many steps and scaled
    chosen: str = ""  # why `auto` chose, or what replaced, the granularity (the report's tag says it)
    full_steps: tuple[int, ...] = ()  # from a calibration profile: these steps run in full, the rest forecast

    def __post_init__(self) -> None:
        if not 1 <= self.interval <= 50:
            raise ValueError(f"interval must be between 1 and 50, got {self.interval}")
        if not 0 <= self.order <= 4:
            raise ValueError(f"order must be between 0 and 4, got {self.order}")
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {', '.join(GRANULARITIES)}, got {self.granularity!r}")
        if not 0.0 <= self.threshold <= 10.0:
            raise ValueError(f"threshold must be between 0 and 10 (0: a full step every `interval` steps), "
                             f"got {self.threshold}")
        self.schedule  # validates the window  # noqa: B018

    @property
    def schedule(self) -> IntervalSchedule | PlannedSchedule:
        if self.full_steps:
            return PlannedSchedule(self.full_steps)
        return IntervalSchedule(self.interval, StepWindow(self.warmup_steps, self.start_percent, self.end_percent))

    def at_steps(self, total_steps: int) -> TaylorSeerConfig:
        """The config a run of `total_steps` uses (presets scale interval and warm-up with the steps)."""
        return replace(self, interval=scaled_gap(self.interval, total_steps, self.reference_steps, 1),
                       warmup_steps=scaled(self.warmup_steps, total_steps, self.reference_steps),
                       reference_steps=0)

    def resolved(self, forward_wrapper: bool, family: str) -> TaylorSeerConfig:
        """The granularity this family runs: `auto` picks `output` at order 0 and `blocks` above it
        (extrapolating the raw output over several steps diverges where the head's norm keeps the stack's
        output bounded; tools/benchmarks/sweep_caching.py compares them);
        `output` needs the family's forward to offer a DIFFUSION_MODEL wrapper."""
        if self.granularity == AUTO:
            if self.order == 0 and forward_wrapper:
                return replace(self, granularity=OUTPUT, chosen="auto: order 0")
            why = "order >= 1" if forward_wrapper else f"{family} offers no forward wrapper"
            return replace(self, granularity="blocks", chosen=f"auto: {why}")
        if self.granularity == OUTPUT and not forward_wrapper:
            return replace(self, granularity="blocks", chosen=f"in place of output: {family} offers no forward wrapper")
        return self

    def tag(self) -> str:
        scale = f", scaled from {self.reference_steps} steps" if self.reference_steps else ""
        note = f" ({self.chosen})" if self.chosen else ""
        gap = f"adaptive threshold={self.threshold:g}, max interval={self.interval}" if self.threshold else (
            f"interval={self.interval}")
        if self.full_steps:
            gap = f"planned full steps {','.join(map(str, self.full_steps))}"
        return (f"TaylorSeer({gap}, order={self.order}, warmup={self.warmup_steps}, "
                f"{self.start_percent:g}-{self.end_percent:g}, {self.granularity}{scale}{note})")


PROBE_STRIDE = 8  # the adaptive estimate reads every 8th element


def _probe(t: torch.Tensor) -> torch.Tensor:
    return t.detach().flatten()[::PROBE_STRIDE].float().clone()


def _mean_abs(t: torch.Tensor) -> float:
    return float(t.abs().mean())


@dataclass
class ChangeEstimate:
    """The adaptive schedule's measure: the estimated relative change of the feature since the last full step.

    Fed with the first model call of every full step (its input and the feature it produced);
    between full steps, `estimate(input)` scales the input's change since the last full step by
    the feature's change per unit of input change over the last full gap.
    """

    full_input: torch.Tensor | None = None
    full_output: torch.Tensor | None = None
    pending_input: torch.Tensor | None = None
    rate: float | None = None

    def estimate(self, call_input: torch.Tensor) -> float | None:
        if self.rate is None or self.full_input is None or self.full_output is None:
            return None
        size = _mean_abs(self.full_output)
        if size == 0.0:
            return None
        return self.rate * _mean_abs(_probe(call_input) - self.full_input) / size

    def full_step(self, call_input: torch.Tensor) -> None:
        self.pending_input = _probe(call_input)

    def computed(self, output: torch.Tensor) -> None:
        """The feature of a full step's first call (later calls of the step are not the step's measure)."""
        if self.pending_input is None:
            return
        out = _probe(output)
        if self.full_input is not None and self.full_output is not None and out.shape == self.full_output.shape:
            moved = _mean_abs(self.pending_input - self.full_input)
            if moved > 0.0:
                self.rate = _mean_abs(out - self.full_output) / moved
        self.full_input, self.full_output, self.pending_input = self.pending_input, out, None


@dataclass
class TaylorSeerState:
    """One sampling run's TaylorSeer state, by lifetime: the run's (settings, forecasters, the adaptive
    estimate), the sampler step's (decided at the step's first model call, so every call of a step —
    cond and uncond apart, Heun's second evaluation — follows one decision) and the model call's
    scratch (overwritten by every call).

    Call order in one model call: `begin_call` (decides the step once, then this call: full, or a
    forecast where every forecaster is ready) and `note_call` (the report's gate column); then on a
    full call the model runs and `store` keeps its output (granularity `modules`: `module_computed` per
    wrapped module, `stack_computed` at the last block); on a forecast call `forecast` (`modules`:
    `module_output` per wrapped module) answers instead.
    """

    # per run
    schedule: IntervalSchedule | PlannedSchedule  # which steps run in full (fixed interval or planned)
    total_steps: int  # the run's sampler steps
    order: int  # Taylor order of every forecaster
    threshold: float = 0.0  # > 0: the adaptive rule on top of the schedule
    forecasters: dict[tuple[Hashable, str], TaylorForecaster] = field(default_factory=dict)  # per entry, feature
    change: ChangeEstimate = field(default_factory=ChangeEstimate)  # the adaptive rule's estimate
    storage: Storage = field(default_factory=Storage)  # where the forecast tables live (memory form)
    # per sampler step
    last_full_step: int | None = None  # the latest step that ran in full
    decided_step: int | None = None  # the step `step_full` was decided for
    step_full: bool = True  # this step runs in full
    step_estimate: float = float("nan")  # the adaptive estimate it was decided on
    # per model call (scratch)
    call_full: bool = True  # this call runs the model (a step's forecast call falls back to full until ready)
    call_streams: list[Hashable] = field(default_factory=list)  # the call's cond/uncond entries, in batch order
    call_coord: float = 0.0  # the call's sigma: where forecasts are evaluated and values stored

    def decide_step(self, step: int, call_input: torch.Tensor | None = None) -> bool:
        """Full or forecast, once per sampler step (at its first model call); every call of the step follows it."""
        if step != self.decided_step:
            self.decided_step = step
            self.step_full = self.schedule.is_full(step, self.total_steps, self.last_full_step)
            self.step_estimate = float("nan")
            if self.threshold > 0.0 and call_input is not None:
                if not self.step_full:
                    estimate = self.change.estimate(call_input)
                    self.step_estimate = float("nan") if estimate is None else estimate
                    self.step_full = estimate is None or estimate >= self.threshold
                if self.step_full:
                    self.change.full_step(call_input)
            if self.step_full:
                self.last_full_step = step
        return self.step_full

    def forecaster(self, stream: Hashable, key: str) -> TaylorForecaster:
        slot = (stream, key)
        if slot not in self.forecasters:
            self.forecasters[slot] = TaylorForecaster(self.order, storage=self.storage)
        return self.forecasters[slot]

    def begin_call(self, step: int, streams: list[Hashable], coord: float, keys: tuple[str, ...],
                   call_input: torch.Tensor | None = None) -> None:
        self.call_streams, self.call_coord = streams, coord
        ready = all(self.forecaster(s, k).ready for s in streams for k in keys)
        self.call_full = self.decide_step(step, self._first_stream(call_input)) or not ready

    def _first_stream(self, t: torch.Tensor | None) -> torch.Tensor | None:
        """The first cond entry's rows: the estimate is the same whether cond and uncond share a call or not."""
        if t is None or t.shape[0] % len(self.call_streams):
            return t
        return t.chunk(len(self.call_streams))[0]

    def note_call(self, call: Any) -> None:
        """The report's "gate err" column: the adaptive estimate this step was decided on."""
        if call is not None and self.threshold > 0.0:
            call.gate_error = self.step_estimate

    def store(self, out: dict[str, torch.Tensor]) -> None:
        if self.threshold > 0.0:
            self.change.computed(self._first_stream(next(iter(out.values()))))
        for stream, part in zip(self.call_streams, split(out, len(self.call_streams)), strict=True):
            for key, value in part.items():
                self.forecaster(stream, key).update(self.call_coord, value)

    def forecast(self, keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
        return join([{k: self.forecaster(s, k).predict(self.call_coord) for k in keys} for s in self.call_streams])

    # granularity "modules": the wrapped modules ask these. Their forecasters hold every image token; in a
    # block call that runs part of the tokens (`subset`, from RAS or JiT) the module sees only those.
    def module_output(self, key: str, subset: TokenSubset | None = None) -> torch.Tensor | None:
        if self.call_full:
            return None
        forecast = self._module_forecast(key)
        return forecast if subset is None else subset.gather(forecast)

    def _module_forecast(self, key: str) -> torch.Tensor:
        return torch.cat([self.forecaster(s, key).predict(self.call_coord) for s in self.call_streams])

    def stack_computed(self, out: torch.Tensor) -> None:
        """Granularity `modules`: the last block's output measures the adaptive schedule's change."""
        if self.call_full and self.threshold > 0.0:
            self.change.computed(self._first_stream(out))

    def module_computed(self, key: str, out: torch.Tensor, subset: TokenSubset | None = None) -> None:
        """A computed output is stored for every token: on a subset call, the tokens it did not run take
        their forecast at this step (they have none before the module's first full-token call: then
        nothing is stored)."""
        if not self.call_full:
            return
        if subset is not None:
            if not all(self.forecaster(s, key).ready for s in self.call_streams):
                return
            out = subset.scatter(self._module_forecast(key), out)
        for stream, part in zip(self.call_streams, out.chunk(len(self.call_streams)), strict=True):
            self.forecaster(stream, key).update(self.call_coord, part)


def new_state(config: TaylorSeerConfig, run: RunContext) -> TaylorSeerState:
    config = config.at_steps(run.total_steps)
    return TaylorSeerState(config.schedule, run.total_steps, config.order, config.threshold,
                           storage=Storage(run.form(KEY) == HOST))


def memory_needs(config: TaylorSeerConfig, dims: ModelDims, shape: RunShape) -> tuple[Need, ...]:
    """Per conditioning entry, (order + 1) copies of the forecast feature: the model's output
    (float32), the stack's output, or every wrapped module's output. A full step rebuilds one
    feature's table beside the old one; a forecast step builds its sum and the streams' join."""
    copies = config.order + 1
    if config.granularity == OUTPUT:
        feature, count = shape.batch * shape.latent_values * 4, 1
    elif config.granularity == "modules":
        feature, count = shape.hidden(dims), sum(lst.blocks * lst.modules for lst in dims.lists)
    else:
        feature, count = shape.hidden(dims, shape.stack_tokens(dims)), 1
    table = shape.streams * count * copies * feature
    itemsize = 4 if config.granularity == OUTPUT else dims.hidden_itemsize
    probes = 3 * 4 * -(-feature // itemsize // PROBE_STRIDE) if config.threshold > 0 else 0
    if count == 1:  # around the stack (after the last block, or the whole forward): between blocks
        work = dict(between=max(copies, 2) * feature + shape.streams * feature)
        moved_in = dict(between=work["between"] + copies * feature)
    else:  # a module's forecast, inside its block, joined over the streams
        work = dict(transient=max(copies, 2) * feature + shape.streams * feature)
        moved_in = dict(transient=work["transient"] + copies * feature)
    return (Need(DEVICE, held=table + probes, **work),
            Need(HOST, held=probes, host=table, moved=table, note="forecast tables in host memory", **moved_in))


def memory_hints(config: TaylorSeerConfig) -> list[tuple[str, TaylorSeerConfig]]:
    hints = []
    if config.granularity != OUTPUT:
        hints.append(("granularity 'output'", replace(config, granularity=OUTPUT)))
    if config.order > 0:
        hints.append(("order 0", replace(config, order=0)))
    return hints


def block_hook(config: TaylorSeerConfig, slot: ModuleSlot | None = None,
               module_keys: tuple[str, ...] = ()) -> BlockHook:
    """The block-replace function: decide at the first block, then per granularity

    blocks:  skip the stack (forecast the last block's output) or run it and store that output;
    modules: run every block, its wrapped modules (through `slot`) forecasting or storing.
    """

    def hook(args: dict, call_block: Callable[[dict], dict], site: BlockSite, ctx: RunContext | None) -> dict:
        if ctx is None:
            return call_block(args)
        state: TaylorSeerState = ctx.state(KEY)
        returns = site.spec.returns
        if site.flat_index == 0:
            to = args["transformer_options"]
            uuids = list(to.get("uuids") or [None])
            keys = module_keys or ctx.stack_keys
            state.begin_call(ctx.step, uuids, float(to["sigmas"][0]), keys, args[site.spec.image_key])
            state.note_call(ctx.current_call)
            if not state.call_full and ctx.current_call is not None:
                what = "attention + MLP of all blocks" if slot is not None else "all blocks"
                ctx.current_call.mark_skipped(ctx.current_call.flops_full, what, RAN_FORECAST)
        if slot is not None:
            slot.decide = lambda key: state.module_output(key, ctx.token_subset)
            slot.seen = lambda key, out: state.module_computed(key, out, ctx.token_subset)
            try:
                out = call_block(args)
            finally:
                slot.clear()
            if site.last:
                state.stack_computed(out[ctx.stack_keys[0]])
            return out
        if state.call_full:
            out = call_block(args)
            if site.last:
                state.store(only(out, ctx.stack_keys))
            return out
        if site.last:
            return complete(state.forecast(ctx.stack_keys), returns)
        return {k: args[k] for k in returns}

    return hook


def output_call(state: TaylorSeerState, ctx: RunContext, streams: list[Hashable], coord: float,
                run: Callable[[], Any], call_input: torch.Tensor | None = None) -> Any:
    """Granularity `output`, one model call: the forecast of the model's output, or `run()` stored."""
    state.begin_call(ctx.step, streams, coord, (OUTPUT,), call_input)
    state.note_call(ctx.current_call)
    if not state.call_full:
        if ctx.current_call is not None:
            ctx.current_call.mark_skipped(ctx.current_call.flops_full, "the whole model (output forecast)",
                                          RAN_FORECAST)
        return state.forecast((OUTPUT,))[OUTPUT]
    out = run()
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"DiTAccelTaylorSeer: granularity 'output' forecasts a tensor, but this model's forward "
                        f"returned {type(out).__name__}; use granularity 'blocks'.")
    state.store({OUTPUT: out})
    return out

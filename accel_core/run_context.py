"""Per-sampling-run state, created when a run starts and dropped when it ends.

Methods never keep state anywhere else: a `RunContext` is built by the OUTER_SAMPLE wrapper,
reachable from every hook through `transformer_options`, and gone after the run, so a failed
or interrupted prompt cannot leak into the next one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import torch

from .adapters import BlockList, ModelAdapter
from .memory import DEVICE, NeedsFn
from .metrics import FlopCounter, tensor_bytes
from .report import RAN_REUSED, CallRecord, RunRecord
from .settings.variants import Variant
from .token_subset import TokenSubset

T = TypeVar("T")


class Method(Protocol):
    """What an acceleration method registers on a patched model."""

    key: str  # unique per method kind, e.g. "ditaccel.taylorseer"; a second node of the same kind replaces it
    label: str  # shown in the report

    def new_run_state(self, run: RunContext) -> Any: ...


@dataclass(frozen=True)
class ConfiguredMethod:
    """A method's config plus how to build its per-run state (what comfy_patch registers)."""

    key: str
    config: Any  # as resolved at apply time (a fixed config where no request is given)
    make_state: Callable[[Any, RunContext], Any]
    # a node's preset and inputs (settings.resolve.Request): resolved again for each run's variant and steps
    request: Any = None
    node: str = ""  # the node's name, for memory refusals
    memory: NeedsFn | None = None  # its forms and their extra memory (None: it keeps no tensors)
    # settings that need less memory, for a refusal's message: config -> ((what to set, config), ...)
    memory_hints: Callable[[Any], Sequence[tuple[str, Any]]] | None = None
    # conditioning entries the method adds per positive entry, each a stream of its own for the other
    # methods' per-stream state (SoftPAG's perturbed pass)
    extra_streams: int = 0

    @property
    def label(self) -> str:
        return self.config.tag()

    def new_run_state(self, run: RunContext) -> Any:
        config = self.config
        if self.request is not None:
            resolved = self.request.for_run(run.variant, run.total_steps, self.config, run.latent_positions)
            config = resolved.config
            run.settings[self.key] = resolved.line()
        run.labels[self.key] = config.tag()
        return self.make_state(config, run)


@dataclass(frozen=True)
class BlockSite:
    """Where a block-replace patch sits: its list, its index there, and its index over all lists."""

    spec: BlockList
    index: int
    flat_index: int
    last: bool


# A method's block hook: (the block's args, a function that runs the block (and the patches below this
# one), where the block sits, the run's context or None outside a DiTAccel run) -> the block's output dict.
BlockHook = Callable[[dict, Callable[[dict], dict], BlockSite, "RunContext | None"], dict]


class BlockMarker:
    """Put in a block's transformer_options by a block patch: which block runs, so the attention
    override inside it knows where it is (0.3.75's Wan does not say), and how many attentions ran."""

    def __init__(self, site: BlockSite) -> None:
        self.site = site
        self.calls = 0

    def next_attention(self) -> str:
        """The kind of the attention call now starting in this block ("self", "joint", "cross")."""
        kinds = self.site.spec.attention
        kind = kinds[min(self.calls, len(kinds) - 1)]
        self.calls += 1
        return kind


@dataclass
class RunContext:
    adapter: ModelAdapter
    flops: FlopCounter
    record: RunRecord
    sample_sigmas: list[float]
    steps_done: int = 0
    current_call: CallRecord | None = None
    states: dict[str, Any] = field(default_factory=dict)
    _streams: dict[tuple[str, Hashable], Any] = field(default_factory=dict)
    last_list: BlockList | None = None  # the list that ends this model's block stack (None: the adapter's last)
    token_pad: int = 1  # the multiple the joint sequence's text and image parts are padded to (Z-Image: 32)
    # the image tokens the block call in progress runs, where a spatial method (RAS, JiT) gathered part of
    # them; None: every token. Set around that call only.
    token_subset: TokenSubset | None = None
    variant: Variant | None = None  # the model variant this run shows (settings.variants)
    latent_positions: int = 0  # frames x height x width of the run's latent (a profile's size check)
    settings: dict[str, str] = field(default_factory=dict)  # per method: resolved settings and their source
    labels: dict[str, str] = field(default_factory=dict)  # per method: the settings this run uses
    forms: dict[str, str] = field(default_factory=dict)  # per method: the memory form the plan chose
    memory_extra: int = 0  # device bytes the plan gives the methods (the loader is asked to make room)

    def form(self, key: str) -> str:
        """The memory form method `key` runs in this run (memory.DEVICE unless the plan chose another)."""
        return self.forms.get(key, DEVICE)

    @property
    def stack_list(self) -> BlockList:
        return self.last_list or self.adapter.block_lists[-1]

    @property
    def stack_keys(self) -> tuple[str, ...]:
        """Keys of the block stack's output (what its last block returns with a value)."""
        return self.stack_list.output_keys

    @property
    def total_steps(self) -> int:
        return max(len(self.sample_sigmas) - 1, 0)

    @property
    def step(self) -> int:
        """Index of the sampler step in progress (samplers may call the model several times per step)."""
        return self.steps_done

    def in_window(self, start_percent: float, end_percent: float) -> bool:
        """The step in progress lies in [start_percent, end_percent) of the run (end 1 includes the last)."""
        if self.total_steps == 0:
            return True
        share = self.step / self.total_steps
        return start_percent <= share < end_percent or (end_percent >= 1.0 and share >= 1.0)

    def on_step_done(self, index: int) -> None:
        """The sampler finished step `index`. A step with no model call was answered by a cache
        outside the model call (LazyCache skips the whole prediction): it is recorded as the last
        computed step's calls, reused, so the FLOPs share counts it."""
        calls = self.record.calls if self.record is not None else []
        if calls and calls[-1].step < index:
            last = calls[-1].step
            sigma = self.sample_sigmas[index] if index < len(self.sample_sigmas) else float("nan")
            for c in [c for c in calls if c.step == last]:
                calls.append(dataclasses.replace(c, step=index, sigma=sigma, flops_run=0.0, ran=RAN_REUSED,
                                                 skipped="the whole step (another node reused an output)",
                                                 seconds=0.0, attention={}, gate_error=float("nan"),
                                                 tokens_run=-1, forward_ran=False))
        self.steps_done = index + 1
        if self.record is not None and self.states:
            self.record.state_peak_bytes = max(self.record.state_peak_bytes, tensor_bytes(self.states))

    def state(self, key: str) -> Any:
        return self.states[key]

    def per_stream(self, key: str, stream: Hashable, factory: Callable[[], T]) -> T:
        """State of method `key` for one conditioning stream (a uuid: cond and uncond never share)."""
        slot = (key, stream)
        if slot not in self._streams:
            self._streams[slot] = factory()
        return self._streams[slot]


def stream_labels(cond_or_uncond: Sequence[int] | None) -> tuple[str, ...]:
    return tuple("uncond" if c == 1 else "cond" for c in (cond_or_uncond or ()))


def split(out: dict[str, torch.Tensor], n: int) -> list[dict[str, torch.Tensor]]:
    """A block's outputs cut into the `n` conditioning streams ComfyUI stacked on the batch axis."""
    chunks = {k: v.chunk(n) for k, v in out.items()}
    return [{k: chunks[k][i] for k in out} for i in range(n)]


def join(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The inverse of `split`."""
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def only(out: dict[str, torch.Tensor | None], keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The entries of a block's output that carry tensors."""
    return {k: out[k] for k in keys}


def complete(out: dict[str, torch.Tensor], returns: tuple[str, ...]) -> dict[str, torch.Tensor | None]:
    """A replacement block output with every key the model reads (None where the block drops a stream)."""
    return {k: out.get(k) for k in returns}

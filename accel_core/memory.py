"""The memory contract: what each method keeps and allocates, added up and fitted before sampling.

Every method declares, as a function of the model's dimensions (`ModelDims`), the run's shape
(`RunShape`) and its resolved settings, the extra memory it needs in each form it can run in
(`Need`), in order of preference: as written (`DEVICE`), then cheaper forms — cached tensors in
the model's dtype, transient buffers in chunks, cached tensors held in host memory and moved to
the device when used. `plan` walks the methods stacked on a model in the order they were
applied and gives each the first form that fits what is left of the budget; where none fits, the
prompt is refused before the first step (`MemoryRefused`), naming the node, what it needs, what
is free and a setting that fits.

The budget is the device memory the pack may use beside ComfyUI's own estimate of a sampling's
activations (the loader is then asked to offload weights to make room, see comfy_patch);
`DITACCEL_DEVICE_MEMORY` / `DITACCEL_HOST_MEMORY` set it by hand (e.g. "512MB", "2GB"), which is
how the refusal and the form switch are tested on the CPU.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from .adapters import ModelAdapter
from .metrics import stream_width

DEVICE_ENV = "DITACCEL_DEVICE_MEMORY"
HOST_ENV = "DITACCEL_HOST_MEMORY"

# forms, in the order a method offers them
DEVICE = "device"  # as written: cached tensors on the compute device
MODEL_DTYPE = "model dtype"  # cached tensors kept in the model's dtype instead of float32
CHUNKED = "chunked"  # transient buffers built a slice of the queries at a time
HOST = "host memory"  # cached tensors kept in host memory, moved to the device when used
NONE = "none"  # nothing kept (the method holds no tensors, or does not engage on this device)

# host <-> device copy rate used to estimate what the host form costs per step: a PCIe 4.0 x16
# link's practical rate for pageable memory (its peak is 32 GB/s; unpinned copies reach about a
# third of it). An estimate for the report, not a measurement.
HOST_COPY_BYTES_PER_S = 12e9


@dataclass(frozen=True)
class ListDims:
    blocks: int
    joint_tokens: bool = False  # the list's hidden state carries the text tokens too
    modules: int = 0  # wrapped output modules per block (attention, cross-attention, MLP)
    self_attention: int = 1  # image self-attention sites per block (where a K/V cache applies)
    # the list's last block hands on the text stream too (a double-stream list ending the stack, e.g.
    # a one-list model): the stack's output then has the text tokens, whether joint or apart
    text_out: bool = False

    @property
    def carries_text(self) -> bool:
        return self.joint_tokens or self.text_out


@dataclass(frozen=True)
class ModelDims:
    """What memory formulas read from a model (the loaded one, or a record of a real one)."""

    name: str
    lists: tuple[ListDims, ...]
    width: int  # hidden width of the token stream
    heads: int
    hidden_itemsize: int  # bytes per value of the residual stream between blocks (Wan keeps it in float32)
    compute_itemsize: int  # bytes per value of attention inputs (the model's compute dtype)
    weight_bytes: int = 0
    sparse_runs: bool = True  # the sparse-attention kernels run on this device (CUDA + Triton)

    @property
    def blocks(self) -> int:
        return sum(lst.blocks for lst in self.lists)

    @property
    def last(self) -> ListDims:
        return next((lst for lst in reversed(self.lists) if lst.blocks), self.lists[-1])

    @property
    def first(self) -> ListDims:
        return next((lst for lst in self.lists if lst.blocks), self.lists[0])

    def budget_rule(self) -> int:
        """The contract's target at a node's defaults: max(2 GB, 10 % of the model's weights)."""
        return max(2 * 10**9, self.weight_bytes // 10)


@dataclass(frozen=True)
class RunShape:
    """One sampling run as memory sees it."""

    image_tokens: int
    text_tokens: int
    batch: int  # samples in the latent batch
    streams: int  # conditioning entries (cond, uncond, ...): each keeps its own state
    latent_values: int  # values per sample of the latent the model returns

    @property
    def rows(self) -> int:
        """Batch rows of one model call with every conditioning entry in it."""
        return self.batch * self.streams

    def with_tokens(self, image_tokens: int) -> RunShape:
        scale = image_tokens / max(self.image_tokens, 1)
        return replace(self, image_tokens=image_tokens, latent_values=max(1, round(self.latent_values * scale)))

    def hidden(self, dims: ModelDims, tokens: int | None = None, rows: int | None = None) -> int:
        """Bytes of one residual-stream tensor (rows x tokens x width)."""
        n = self.image_tokens if tokens is None else tokens
        return (self.batch if rows is None else rows) * n * dims.width * dims.hidden_itemsize

    def stack_tokens(self, dims: ModelDims) -> int:
        """Tokens of the block stack's output (joint lists carry the text as well)."""
        return self.image_tokens + (self.text_tokens if dims.last.carries_text else 0)


@dataclass(frozen=True)
class Need:
    """Extra memory of one method in one form."""

    form: str
    held: int = 0  # device bytes kept across steps
    transient: int = 0  # device bytes allocated inside a block (on top of the block's own activations)
    # device bytes allocated between blocks or around the stack, where a block's activations are freed:
    # they count only beyond ComfyUI's own estimate of the sampling's activations
    between: int = 0
    host: int = 0  # host bytes kept across steps (form HOST)
    moved: int = 0  # bytes copied between host and device per step (form HOST)
    note: str = ""

    def device(self, activations: int = 0) -> int:
        """Extra device memory beside ComfyUI's activation estimate `activations`."""
        return self.held + self.transient + max(0, self.between - activations)


NeedsFn = Callable[[Any, ModelDims, RunShape], Sequence[Need]]


def gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def parse_bytes(text: str, name: str) -> int:
    """"2GB", "512 MB", "1e9" -> bytes; an error names the variable and the accepted forms."""
    m = re.fullmatch(r"\s*([0-9.eE+]+)\s*([kKmMgGtT]i?[bB]?|[bB])?\s*", text or "")
    if not m:
        raise ValueError(f"{name}={text!r}: expected a size such as 2GB, 512MB or a number of bytes")
    unit = (m.group(2) or "b").lower().rstrip("b")
    power = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}[unit.rstrip("i")]
    base = 1024 if unit.endswith("i") else 1000
    try:
        return int(float(m.group(1)) * base**power)
    except ValueError:
        raise ValueError(f"{name}={text!r}: expected a size such as 2GB, 512MB or a number of bytes") from None


def env_budget(name: str) -> int | None:
    text = os.environ.get(name, "").strip()
    return parse_bytes(text, name) if text else None


class MemoryRefused(RuntimeError):
    """No form of a node fits: raised before the first step."""


@dataclass(frozen=True)
class Budget:
    device: int  # bytes the pack's methods may use on the compute device
    host: int  # bytes they may keep in host memory
    source: str  # where the device figure comes from (shown in the report and in refusals)
    activations: int = 0  # ComfyUI's own estimate of the sampling's activation memory (kept free by its loader)
    # moving a cache to host memory frees device memory (False on a CPU run, where they are the same
    # memory, unless the device budget is set by hand to stand in for a GPU)
    host_relieves: bool = True


@dataclass(frozen=True)
class Entry:
    """One method stacked on the model, for the planner."""

    key: str
    node: str
    needs: Callable[[RunShape], Sequence[Need]]  # the method's forms at a run shape
    hints: Sequence[tuple[str, Callable[[RunShape], Sequence[Need]]]] = ()  # a setting and its forms


@dataclass
class Plan:
    chosen: dict[str, Need] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    extra: int = 0  # device bytes the chosen forms need beside ComfyUI's activation estimate

    @property
    def held(self) -> int:
        """Bytes the chosen forms keep across steps, on the device and in host memory."""
        return sum(n.held + n.host for n in self.chosen.values())


def _fits(need: Need, device_left: int, host_left: int, budget: Budget) -> bool:
    if need.form == HOST and not budget.host_relieves:
        return False
    return need.device(budget.activations) <= device_left and need.host <= host_left


def _total(needs: Sequence[Need], activations: int) -> int:
    """Kept and in-block bytes add up; the between-block ones of all methods share ComfyUI's estimate."""
    return (sum(n.held + n.transient for n in needs) + max(0, sum(n.between for n in needs) - activations))


def plan(entries: Sequence[Entry], shape: RunShape, budget: Budget, step_seconds: float | None = None) -> Plan:
    """Every method in its first form if they all fit; else, one at a time, the method whose next form
    frees the most device memory moves to it. Where every method is in its last form and they still do
    not fit, the one needing the most is refused (before the first step)."""
    act = budget.activations
    forms = [[n for n in e.needs(shape) if n.form != HOST or budget.host_relieves] for e in entries]
    at = [0] * len(entries)

    def chosen() -> list[Need]:
        return [f[i] for f, i in zip(forms, at, strict=True) if f]

    while _total(chosen(), act) > budget.device:
        savings = [(f[i].device(act) - f[i + 1].device(act), k)
                   for k, (f, i) in enumerate(zip(forms, at, strict=True)) if i + 1 < len(f)]
        if not savings or max(savings)[0] <= 0:
            break
        at[max(savings)[1]] += 1
    if not all(forms) or _total(chosen(), act) > budget.device or sum(n.host for n in chosen()) > budget.host:
        _refuse(entries, forms, shape, budget)
    out = Plan(extra=_total(chosen(), act))
    for entry, f, i in zip(entries, forms, at, strict=True):
        out.chosen[entry.key] = f[i]
        if f[i].form != NONE:
            out.lines.append(f"{entry.node}: {describe(f[i], f, act, step_seconds)}")
    return out


def _refuse(entries: Sequence[Entry], forms: list[list[Need]], shape: RunShape, budget: Budget) -> None:
    """Refuse the method that needs the most in its cheapest form, with what the others leave it."""
    act = budget.activations
    least = [min(f, key=lambda n: n.device(act)) if f else Need(DEVICE) for f in forms]
    worst = max(range(len(entries)), key=lambda k: (not forms[k], least[k].device(act), least[k].host))
    others = [n for k, n in enumerate(least) if k != worst]
    device_left = budget.device - sum(n.held + n.transient for n in others)
    host_left = budget.host - sum(n.host for n in others)
    raise MemoryRefused(_refusal(entries[worst], forms[worst] or list(entries[worst].needs(shape)), shape, budget,
                                 device_left, host_left))


def describe(chosen: Need, forms: Sequence[Need], activations: int = 0, step_seconds: float | None = None) -> str:
    text = f"{chosen.form}, {gb(chosen.held)} kept + {gb(chosen.transient)} inside a block"
    if chosen.between:
        beyond = max(0, chosen.between - activations)
        text += (f" + {gb(chosen.between)} between blocks ("
                 + (f"{gb(beyond)} beyond" if beyond else "within") + " ComfyUI's activation estimate)")
    if chosen.host:
        text += f", {gb(chosen.host)} in host memory"
    if chosen.moved:
        copy = chosen.moved / HOST_COPY_BYTES_PER_S
        against = f" against ~{step_seconds:.1f} s of compute per step" if step_seconds else ""
        text += f" (moves {gb(chosen.moved)} per step: ~{copy:.1f} s{against}, estimated)"
    if forms and chosen is not forms[0]:
        text += f"; {forms[0].form} form needs {gb(forms[0].device(activations))}, over the budget"
    if chosen.note:
        text += f"; {chosen.note}"
    return text


def _refusal(entry: Entry, forms: Sequence[Need], shape: RunShape, budget: Budget, device_left: int,
             host_left: int) -> str:
    least = min(forms, key=lambda n: n.device(budget.activations))
    others = "" if device_left == budget.device else f" (of {gb(budget.device)}; the other nodes use the rest)"
    text = (f"{entry.node}: not enough memory to run at {shape.image_tokens} image tokens x {shape.rows} batch rows: "
            f"it needs {gb(least.device(budget.activations))} of extra device memory ({least.form} form"
            f"{f', plus {gb(least.host)} of host memory' if least.host else ''}); {gb(max(device_left, 0))} is free "
            f"for it{others}, {budget.source}")
    if least.host > host_left:
        text += f"; host memory free: {gb(max(host_left, 0))}"
    hints = [name for name, fn in entry.hints
             if any(_fits(n, device_left, host_left, budget) for n in fn(shape))]
    if hints:
        text += f". Fits with {hints[0]}"
    tokens = _tokens_that_fit(entry, shape, budget, device_left, host_left)
    if tokens:
        text += f"{'; or' if hints else '. Fits'} at up to {tokens} image tokens (a smaller size or fewer frames)"
    return text + "."


def _tokens_that_fit(entry: Entry, shape: RunShape, budget: Budget, device_left: int, host_left: int) -> int:
    lo, hi = 0, shape.image_tokens
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if any(_fits(n, device_left, host_left, budget) for n in entry.needs(shape.with_tokens(mid))):
            lo = mid
        else:
            hi = mid - 1
    return lo


def model_dims(adapter: ModelAdapter, diffusion_model: torch.nn.Module, sparse_runs: bool,
               compute_itemsize: int | None = None) -> ModelDims:
    """Dims of a loaded model, from its adapter record and its modules; `compute_itemsize`: bytes per
    value of the dtype it computes in, where that is not its weights' (ComfyUI's manual cast: bf16 or
    fp8 weights computed in float32 on the CPU)."""
    lists, width = [], 0
    for spec in adapter.block_lists:
        blocks = getattr(diffusion_model, spec.attr, ())
        lists.append(ListDims(len(blocks), spec.joint_tokens, len(spec.output_modules), spec.attention.count("self"),
                              text_out=len(spec.output_keys) > 1))
        if len(blocks) and not width:
            width = stream_width(blocks[0], spec)
    params = list(diffusion_model.parameters())
    weight = sum(p.numel() * p.element_size() for p in params)
    itemsize = compute_itemsize or max((p.element_size() for p in params if p.dim() == 2), default=4)
    return ModelDims(name=adapter.display_name, lists=tuple(lists), width=width,
                     heads=adapter.num_heads(diffusion_model),
                     hidden_itemsize=4 if adapter.stream_float32 else itemsize, compute_itemsize=itemsize,
                     weight_bytes=weight, sparse_runs=sparse_runs)


class Storage:
    """Where a method keeps a cached tensor: on the compute device, or in host memory (form HOST)."""

    def __init__(self, host: bool = False) -> None:
        self.host = host

    def __deepcopy__(self, memo: dict) -> Storage:
        return self

    def keep(self, t: torch.Tensor) -> torch.Tensor:
        return t.to("cpu") if self.host else t

    def copy(self, t: torch.Tensor) -> torch.Tensor:
        """A detached copy of `t`, where this storage keeps it."""
        return t.detach().to("cpu", copy=True) if self.host else t.detach().clone()

    def use(self, t: torch.Tensor, device: torch.device) -> torch.Tensor:
        return t.to(device, non_blocking=True) if self.host else t


ON_DEVICE = Storage(False)

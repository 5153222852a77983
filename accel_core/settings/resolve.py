"""The one preset resolver: a node's preset and inputs, the model's variant and the run's step count -> a config.

A node stores a `Request` (its preset and the inputs it was given). At apply time the request is
resolved for the variant the model's dimensions show, which picks the hooks (TaylorSeer's
granularity, JiT's attention override); when a sampling run starts it is resolved again for the
variant the run shows and its step count, keeping the hook-deciding fields from apply time.
`custom` takes the node's inputs as given, unscaled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

from ..adapters import UnsupportedModelError, adapter_for
from ..attention.config import SparseAttentionConfig
from ..caching.first_block import CGTaylorConfig, FirstBlockCacheConfig
from ..caching.taylorseer import TaylorSeerConfig
from ..quoting import quoted
from ..spatial.jit import JiTConfig, parse_fractions
from ..spatial.ras import RASConfig
from . import records
from .records import PRESET_NAMES, Steps
from .variants import NAMES, Variant, identify

CUSTOM_SOURCE = "custom: the node's inputs, as given"
# a custom input left at these takes the model's balanced value: -1 for numbers, "auto" for the texts and
# choices a method names in `auto_text`
AUTO_NUMBER = -1
AUTO_TEXT = "auto"


def _jit_values(values: dict[str, Any]) -> dict[str, Any]:
    for name in ("stages", "densities"):
        if isinstance(values.get(name), str):
            values[name] = parse_fractions(values[name], name)
    return values


@dataclass(frozen=True)
class MethodSpec:
    node: str
    config: type
    always: tuple[str, ...] = ()  # inputs applied whatever the preset (they choose how, not how much)
    fixed_at_apply: tuple[str, ...] = ()  # fields that decide the hooks: a run keeps the apply-time values
    kind_input: str | None = None  # an input choosing among kinds that may have records of their own
    convert: Callable[[dict[str, Any]], dict[str, Any]] = lambda values: values
    auto_text: tuple[str, ...] = ()  # text inputs whose "auto" means the model's balanced value
    internal: tuple[str, ...] = ("reference_steps", "chosen", "full_steps")  # config fields that are not inputs

    @property
    def inputs(self) -> frozenset[str]:
        return frozenset(f.name for f in fields(self.config) if f.name not in self.internal)


SPECS: dict[str, MethodSpec] = {
    records.TAYLORSEER: MethodSpec("DiTAccelTaylorSeer", TaylorSeerConfig, always=("granularity",),
                                   fixed_at_apply=("granularity", "chosen")),
    records.CG_TAYLOR: MethodSpec("DiTAccelCGTaylor", CGTaylorConfig),
    records.FBCACHE: MethodSpec("DiTAccelFirstBlockCache", FirstBlockCacheConfig),
    records.RAS: MethodSpec("DiTAccelRAS", RASConfig, always=("start_percent", "end_percent")),
    records.JIT: MethodSpec("DiTAccelJiT", JiTConfig, fixed_at_apply=("full_context",), convert=_jit_values,
                            auto_text=("stages", "densities", "interpolate")),
    records.SPARSE: MethodSpec("DiTAccelSparseAttention", SparseAttentionConfig,
                               always=("method", "start_percent", "end_percent", "estimate_skipped"),
                               kind_input="method"),
}


@dataclass(frozen=True)
class Resolved:
    """A config and what it came from."""

    node: str
    config: Any
    preset: str
    variant: Variant | None
    source: str

    def line(self) -> str:
        """The report's line: node, preset, resolved settings, variant and source."""
        where = f" on {self.variant.name}" if self.variant else ""
        return f"{self.node} {self.preset}{where}: {self.config.tag()}; source: {self.source}"


@dataclass(frozen=True)
class Request:
    """What a node was given: its method, preset and optional inputs (None: not given)."""

    method: str
    preset: str
    inputs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", MappingProxyType(dict(self.inputs)))
        spec = SPECS[self.method]
        unknown = sorted(set(self.inputs) - spec.inputs)
        if unknown:
            raise ValueError(f"{spec.node}: {', '.join(quoted(u) for u in unknown)} is not a setting of this node "
                             f"(its settings: {', '.join(sorted(spec.inputs))})")
        if self.preset not in PRESET_NAMES:
            raise ValueError(f"{spec.node}: preset must be one of {', '.join(PRESET_NAMES)}, got {quoted(self.preset)}")

    @property
    def spec(self) -> MethodSpec:
        return SPECS[self.method]

    def table(self, variant: Variant) -> Mapping[str, records.Preset]:
        rec = records.BY_KEY.get(variant.key)
        kind = self.inputs.get(self.spec.kind_input) if self.spec.kind_input else None
        table = None
        if rec is not None:
            table = (rec.methods.get(f"{self.method}/{kind}") if kind else None) or rec.methods.get(self.method)
        if table is None:
            raise UnsupportedModelError(f"{self.spec.node}: no settings record for {variant.name}; use preset "
                                        f"'custom' with your own values")
        return table

    def resolve(self, variant: Variant | None, total_steps: int) -> Resolved:
        spec = self.spec
        given = {k: v for k, v in self.inputs.items() if v is not None}
        if self.preset == "custom":
            autos = [k for k, v in given.items() if self._is_auto(k, v)]
            source = CUSTOM_SOURCE
            if autos:
                balanced, values = self._preset_values("balanced", variant, total_steps)
                given = {k: v for k, v in given.items() if k not in autos}
                given.update({k: values[k] for k in autos if k in values})
                source = (f"custom: the node's inputs; {', '.join(autos)} left at auto take the balanced preset's "
                          f"({balanced.source})")
            return Resolved(spec.node, spec.config(**spec.convert(given)), "custom", variant, source)
        preset, values = self._preset_values(self.preset, variant, total_steps)
        values.update({k: given[k] for k in spec.always if k in given})
        return Resolved(spec.node, spec.config(**spec.convert(values)), self.preset, variant, preset.source)

    def _is_auto(self, name: str, value: Any) -> bool:
        if isinstance(value, str):
            return name in self.spec.auto_text and value.strip() == AUTO_TEXT
        return not isinstance(value, bool) and value == AUTO_NUMBER

    def _preset_values(self, name: str, variant: Variant | None,
                       total_steps: int) -> tuple[records.Preset, dict[str, Any]]:
        if variant is None:
            raise ValueError(f"{self.spec.node}: preset {name!r} needs the model's variant")
        preset = self.table(variant)[name]
        return preset, {k: v.steps(total_steps) if isinstance(v, Steps) else v for k, v in preset.values.items()}

    def for_run(self, variant: Variant | None, total_steps: int, applied: Any, positions: int = 0) -> Resolved:
        """Resolved for a run; the fields that chose the hooks keep their apply-time values. `positions`: the
        run's latent positions (frames x height x width), which a profile's plan checks."""
        resolved = self.resolve(variant, total_steps)
        keep = {name: getattr(applied, name) for name in self.spec.fixed_at_apply}
        return replace(resolved, config=replace(resolved.config, **keep)) if keep else resolved


# variants with no heads record of their own that take another's: same blocks, or the same share of the depth
BORROWED_HEADS = {"sd3.5-medium": "sd3-medium", "sd3.5-large": "sd3-medium", "flux-schnell": "flux-dev",
                  "chroma": "flux-dev"}


@dataclass(frozen=True)
class Described:
    """A node's settings fixed at apply time (no preset), with the source the report names."""

    node: str
    what: str  # e.g. "heads auto"
    source: str

    def for_run(self, variant: Variant | None, total_steps: int, applied: Any, positions: int = 0) -> Resolved:
        return Resolved(self.node, applied, self.what, variant, self.source)


def default_heads(variant: Variant, first_list_kind: str | None, first_list_blocks: int,
                  use_record: bool = True) -> tuple[str, str]:
    """SoftPAG's heads when its input is "auto": (heads in its grammar, source). `use_record` False: the
    share-of-depth rule (a record's blocks that the loaded model does not have)."""
    if use_record and variant.key in records.SOFTPAG_HEADS:
        return records.SOFTPAG_HEADS[variant.key]
    borrowed = BORROWED_HEADS.get(variant.key) if use_record else None
    if borrowed:
        heads, source = records.SOFTPAG_HEADS[borrowed]
        if borrowed == "sd3-medium":  # the same share of a deeper stack
            heads = f"{round(records.SOFTPAG_SHARE * first_list_blocks)}:all"
        return heads, f"derived: {NAMES[borrowed]}'s layers; not measured (from: {source})"
    block = min(first_list_blocks - 1, round(records.SOFTPAG_SHARE * first_list_blocks))
    kind = f"{first_list_kind}:" if first_list_kind else ""
    return (f"{kind}{block}:all", f"derived: layer-level perturbation at SD3 medium's share of the depth (layer 9 "
                                  f"of 24) of the first block list; nothing published for {variant.name}; not measured")


# the step count an apply-time resolution uses (the hooks it picks do not depend on it)
APPLY_STEPS = 28


def at_apply(setting: Any, model: Any, node: str) -> tuple[Any, Any]:
    """(the config to choose hooks with, the request to resolve per run) for a node's Request; a config
    given directly (tests, benchmarks) is used as it is, on every run."""
    if not hasattr(setting, "for_run"):  # a Request, or a request planned from a calibration profile
        return setting, None
    dm = model.get_model_object("diffusion_model")
    return setting.resolve(identify(adapter_for(dm, method=node), dm), APPLY_STEPS).config, setting

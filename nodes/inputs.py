"""Checks shared by the nodes' validate_inputs, run by ComfyUI when a prompt is queued (before sampling).

ComfyUI skips its own range and option checks for every input a node's validate_inputs names.
Its own checks cover INT inputs fully (NaN, infinity and null fail its integer conversion; the
range is checked) and file the error under that input alone, so the nodes leave INT inputs to
it. Its min / max check lets a FLOAT NaN through and 0.3.75 does not check V3 combo values, so
each node's validate_inputs names its FLOAT, combo and text inputs one by one (never **kwargs:
ComfyUI would then skip its checks of every input) and `schema_error` judges them against the
node's own schema. An error is one short line that starts with the input's name and quotes at
most ~80 characters of the bad value. ComfyUI files a validate_inputs error under every input
the prompt gives that function: it has no way to say which one failed.
"""

from __future__ import annotations

import math
from typing import Any

from comfy_api.latest import io

from ..accel_core.quoting import quoted
from ..accel_core.settings.records import PRESET_NAMES
from ..accel_core.settings.resolve import AUTO_NUMBER as AUTO

# what the adapters cover
FAMILIES = "Wan 2.x, Flux, SD3 / SD3.5, HunyuanVideo, Qwen-Image, Chroma, Lumina 2 / Z-Image or HiDream-I1"
MAX_TEXT = 4096  # longest text input the pack reads (heads, seeds, stages ...)
AUTO_TIP = " -1 (auto): the loaded model's balanced value."
# the least real value of each auto number: /prompt refuses anything between -1 and it
AUTO_FLOOR = {"interval": 1, "order": 0, "first_block_order": 0, "warmup_steps": 0, "threshold": 0.0,
              "max_skips": 0, "sample_ratio": 0.05, "dense_steps": 0, "final_dense_steps": 0, "high_ratio": 0.0,
              "starvation_scale": 0.0, "relax": 1, "density": 0.01, "dense_blocks": 0}


def auto_int(name: str, hi: int, tooltip: str) -> io.Int.Input:
    return io.Int.Input(name, default=AUTO, min=AUTO, max=hi, optional=True, tooltip=f"custom: {tooltip}{AUTO_TIP}")


def auto_float(name: str, hi: float, step: float, tooltip: str) -> io.Float.Input:
    return io.Float.Input(name, default=float(AUTO), min=float(AUTO), max=hi, step=step, optional=True,
                          tooltip=f"custom: {tooltip}{AUTO_TIP}")


class _Absent:
    """The default of every validate_inputs parameter: ComfyUI passes an input there only when the prompt
    gives it, and passes a JSON null as None, so "left out" (the schema's default applies) and "null"
    (refused) stay apart."""

    def __repr__(self) -> str:
        return "<absent>"


ABSENT: Any = _Absent()


def range_error(name: str, value: float, lo: float | None, hi: float | None) -> str | None:
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        lo_text = "-inf" if lo is None else f"{lo:g}"
        hi_text = "inf" if hi is None else f"{hi:g}"
        return f"{name} must lie in [{lo_text}, {hi_text}], got {value}"
    return None


def choice_error(name: str, value: str, choices: tuple[str, ...] | list[str]) -> str | None:
    """0.3.75 does not check V3 combo values against their options: the nodes do."""
    if value not in choices:
        return f"{name} must be one of {', '.join(choices)}, got {quoted(value)}"
    return None


def window_error(start_percent: float, end_percent: float) -> str | None:
    """start_percent below end_percent (each one's range is the schema's, judged by `schema_error` first)."""
    start, end = given(start_percent), given(end_percent)
    if start is not None and end is not None and start >= end:
        return f"start_percent ({start}) must be below end_percent ({end})"
    return None


def schema_error(node: type[io.ComfyNode], input_types: dict[str, Any] | None = None, **values: Any) -> str | None:
    """The first problem among the given widget values, judged against `node`'s own schema: null, a value
    of the wrong kind, NaN or infinity, a number outside the input's range, a combo value that is not one
    of its options, a text longer than MAX_TEXT.

    A linked input reaches validate_inputs as None, as a JSON null does. ComfyUI's own conversion refuses
    a null number and turns a null text into "None", but lets a null combo through (0.3.75), so a node
    with combo inputs takes ComfyUI's `input_types` (the types of its linked inputs) and passes it here;
    ComfyUI then leaves the type check of those links to the node, which this does too.
    """
    specs = {spec.id: spec for spec in node.define_schema().inputs}
    linked = input_types or {}
    links_known = input_types is not None  # else a None is a link, whose value validation cannot see
    for name, received in linked.items():
        if name in specs and not _types_meet(received, str(specs[name].io_type)):
            return f"{name}: the linked output gives {received}, this input takes {specs[name].io_type}"
    for name, value in values.items():
        if value is ABSENT or name in linked:
            continue
        spec = specs[name]
        if value is None:
            if not links_known:
                continue
            return f"{name}: got null; give a value or leave the input out"
        if isinstance(spec, (io.Int.Input, io.Float.Input)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return f"{name} must be a number, got {quoted(value)}"
            if not math.isfinite(value):
                return f"{name} must be a finite number, got {value}"
            if error := range_error(name, value, spec.min, spec.max):
                return error
            if spec.default == AUTO and value != AUTO and value < AUTO_FLOOR.get(name, AUTO):
                return f"{name} must be -1 (auto) or lie in [{AUTO_FLOOR[name]:g}, {spec.max:g}], got {value}"
        elif isinstance(spec, io.Combo.Input):
            if error := choice_error(name, value, spec.options):
                return error
        elif isinstance(spec, io.String.Input):
            if not isinstance(value, str):
                return f"{name} must be text, got {quoted(value)}"
            if len(value) > MAX_TEXT:
                return f"{name} is too long: {len(value)} characters (at most {MAX_TEXT})"
    return None


def _types_meet(received: Any, wanted: str) -> bool:
    """ComfyUI's rule for a link: the same type, "*" on either side, or comma-separated unions that overlap;
    an output that lists its options (a combo) meets a combo input."""
    if isinstance(received, (list, tuple)):
        return wanted == "COMBO"
    got = {t.strip() for t in str(received).split(",")}
    want = {t.strip() for t in wanted.split(",")}
    return "*" in got or "*" in want or bool(got & want)


def given(value: Any) -> Any:
    """A validate_inputs value as the node's own parsers take it (None where the prompt left it out)."""
    return None if value is ABSENT else value


PRESET_TIP = ("quality / balanced / fast: the settings record of the loaded model (its published settings where "
              "there are any; see docs/results/settings.md), resolved for the run's step count; the report names "
              "each value's source. custom: the inputs below, as given.")


def preset_input() -> io.Combo.Input:
    return io.Combo.Input("preset", options=list(PRESET_NAMES), default="balanced", tooltip=PRESET_TIP)


STACKS = " Stacks with the other DiTAccel nodes."


def model_input(tooltip: str = f"The diffusion model ({FAMILIES}).") -> io.Model.Input:
    return io.Model.Input("model", tooltip=tooltip)


def window_inputs(starts: str, ends: str, end_note: str = "") -> list[io.Float.Input]:
    """start_percent and end_percent: "<starts> at this share of the steps." and the same for the end."""
    return [io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.01, optional=True,
                           tooltip=f"{starts} at this share of the steps."),
            io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.01, optional=True,
                           tooltip=f"{ends} at this share of the steps{end_note}.")]


def check(node: type[io.ComfyNode], input_types: dict[str, Any] | None, **values: Any) -> bool | str:
    """validate_inputs of a node: the named widgets against its schema, then its step window where it has one."""
    if error := schema_error(node, input_types, **values):
        return error
    if "start_percent" in values:
        return window_error(values["start_percent"], values["end_percent"]) or True
    return True

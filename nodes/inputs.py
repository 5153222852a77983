"""Checks shared by the nodes' validate_inputs (ComfyUI skips its own range check for inputs named there)."""

from __future__ import annotations

# what the adapters cover
FAMILIES = "Wan 2.x, Flux, SD3 / SD3.5, HunyuanVideo, Qwen-Image, Chroma, Lumina 2 / Z-Image or HiDream-I1"


def range_error(name: str, value: float | None, lo: float, hi: float) -> str | None:
    if value is not None and not lo <= value <= hi:
        return f"{name} must lie in [{lo:g}, {hi:g}], got {value}"
    return None


def choice_error(name: str, value: str | None, choices: tuple[str, ...] | list[str]) -> str | None:
    """0.3.75 does not check V3 combo values against their options: the nodes do."""
    if value is not None and value not in choices:
        return f"{name} must be one of {', '.join(choices)}, got {value!r}"
    return None


def window_error(start_percent: float | None, end_percent: float | None) -> str | None:
    """start_percent / end_percent: each in [0, 1], start below end."""
    for name, value in (("start_percent", start_percent), ("end_percent", end_percent)):
        if error := range_error(name, value, 0.0, 1.0):
            return error
    if start_percent is not None and end_percent is not None and start_percent >= end_percent:
        return f"start_percent ({start_percent}) must be below end_percent ({end_percent})"
    return None

"""Named settings of the caching methods: `quality`, `balanced`, `fast`, and `custom` (raw inputs).

PROVISIONAL: these values are not yet calibrated on the trained embedded model; the caching
benchmark (issue 4) sets them and the README will carry its table.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .first_block import CGTaylorConfig, FirstBlockCacheConfig
from .taylorseer import TaylorSeerConfig

PRESET_NAMES = ("quality", "balanced", "fast", "custom")

TAYLORSEER = {
    "quality": TaylorSeerConfig(interval=2, order=2, warmup_steps=4),
    "balanced": TaylorSeerConfig(interval=3, order=2, warmup_steps=3),
    "fast": TaylorSeerConfig(interval=5, order=2, warmup_steps=2),
}
CG_TAYLOR = {
    "quality": CGTaylorConfig(threshold=0.02, max_skips=2),
    "balanced": CGTaylorConfig(threshold=0.05, max_skips=3),
    "fast": CGTaylorConfig(threshold=0.10, max_skips=5),
}
FIRST_BLOCK_CACHE = {
    "quality": FirstBlockCacheConfig(threshold=0.04, max_skips=2),
    "balanced": FirstBlockCacheConfig(threshold=0.08, max_skips=3),
    "fast": FirstBlockCacheConfig(threshold=0.15, max_skips=5),
}


# inputs that apply whatever the preset (they choose how, not how much)
ALWAYS_APPLIED = ("granularity",)


def _pick(table: dict[str, Any], cls: type, preset: str, custom: dict[str, Any]) -> Any:
    if preset == "custom":
        return cls(**{k: v for k, v in custom.items() if v is not None})
    if preset not in table:
        raise ValueError(f"preset must be one of {', '.join(PRESET_NAMES)}, got {preset!r}")
    extra = {k: custom[k] for k in ALWAYS_APPLIED if custom.get(k) is not None and k in cls.__dataclass_fields__}
    return replace(table[preset], **extra)


def taylorseer(preset: str, custom: dict[str, Any]) -> TaylorSeerConfig:
    return _pick(TAYLORSEER, TaylorSeerConfig, preset, custom)


def cg_taylor(preset: str, custom: dict[str, Any]) -> CGTaylorConfig:
    return _pick(CG_TAYLOR, CGTaylorConfig, preset, custom)


def first_block_cache(preset: str, custom: dict[str, Any]) -> FirstBlockCacheConfig:
    return _pick(FIRST_BLOCK_CACHE, FirstBlockCacheConfig, preset, custom)

"""Named settings of the caching methods: `quality`, `balanced`, `fast`, and `custom` (raw inputs).

Picked from `tools/benchmarks/sweep_caching.py` (quality and FLOPs in process on the "tune" captions and
seeds; `tools/benchmarks/bench_caching.py --sweep --split tune` times the same grid on the server; the
README's table is measured on other captions and seeds) on the embedded model at 28 and 50 euler steps. The values
are given for 28 steps and scale with the run's step count (`reference_steps`): warm-ups in
proportion, intervals and skip limits with the square root of the step ratio (schedule.scaled_gap).
TaylorSeer's presets use the adaptive schedule: it places its full steps better than the fixed
interval that was `balanced` before (interval 5, warm-up 4), on held-out captions 39.9 dB at 34 %
FLOPs against 36.7 dB at 32 % at 28 steps, 32.6 dB at 24 % against 30.3 dB at 28 % at 50 steps
(tools/benchmarks/bench_caching.py); the thresholds come from tools/benchmarks/sweep_caching.py --only adaptive.
On the embedded model TaylorSeer's order 0 (reuse the last full step's output) measured best at
every interval; orders 1 and 2 extrapolate its features badly over 3+ steps, so the presets use 0
(raise `order` with `custom` on models whose features change smoothly, as the paper's FLUX runs
do). A longer warm-up (4 steps) bought more than the same full steps spent later: the layout is
set in the first steps. CG-Taylor always runs block 1 of the embedded model's 6 plus the
embeddings, so a gated step is far from free there: with every step gated but the first and
the last it reaches 2.97x at 50 steps (the benchmark's ceiling row), at 10.5 dB.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .first_block import CGTaylorConfig, FirstBlockCacheConfig
from .taylorseer import TaylorSeerConfig

PRESET_NAMES = ("quality", "balanced", "fast", "custom")

# adaptive: `interval` is the longest gap; the threshold is not scaled (it measures the change since the last
# full step, whatever the step count)
TAYLORSEER = {
    "quality": TaylorSeerConfig(interval=6, order=0, warmup_steps=2, threshold=0.03, reference_steps=28),
    "balanced": TaylorSeerConfig(interval=8, order=0, warmup_steps=2, threshold=0.1, reference_steps=28),
    "fast": TaylorSeerConfig(interval=14, order=0, warmup_steps=2, threshold=0.5, reference_steps=28),
}
CG_TAYLOR = {
    "quality": CGTaylorConfig(threshold=0.1, max_skips=6, order=1, warmup_steps=2, reference_steps=28),
    "balanced": CGTaylorConfig(threshold=0.6, max_skips=8, order=0, warmup_steps=2, reference_steps=28),
    "fast": CGTaylorConfig(threshold=2.0, max_skips=12, order=0, warmup_steps=2, reference_steps=28),
}
FIRST_BLOCK_CACHE = {
    "quality": FirstBlockCacheConfig(threshold=0.1, max_skips=6, warmup_steps=2, reference_steps=28),
    "balanced": FirstBlockCacheConfig(threshold=0.2, max_skips=6, warmup_steps=2, reference_steps=28),
    "fast": FirstBlockCacheConfig(threshold=0.5, max_skips=6, warmup_steps=2, reference_steps=28),
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

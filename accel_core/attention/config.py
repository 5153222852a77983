"""Settings of the sparse-attention node and its presets."""

from __future__ import annotations

from dataclasses import dataclass

METHODS = ("grat", "pisa", "svg2", "draft", "rettention")
PRESET_NAMES = ("quality", "balanced", "fast", "custom")


@dataclass(frozen=True)
class SparseAttentionConfig:
    method: str = "draft"
    density: float = 0.2  # share of key blocks kept (SVG2: the cap of its top-p budget)
    dense_steps: int = 4  # first sampler steps with full attention
    dense_blocks: int = 1  # first transformer blocks with full attention
    start_percent: float = 0.0
    end_percent: float = 1.0
    query_tile: int = 16  # a query block is query_tile² image tokens
    key_tile: int = 8  # a key block is key_tile² image tokens
    min_tokens: int = 1024  # fewer image tokens than this: attention stays dense (nothing to gain)
    grat_pattern: str = "neighbors"
    estimate_skipped: bool = True  # estimate the skipped blocks from their means (PISA always does)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not 0.0 < self.density <= 1.0:
            raise ValueError(f"density must be in (0, 1], got {self.density}")
        if self.query_tile % self.key_tile:
            raise ValueError("query_tile must be a multiple of key_tile")

    def tag(self) -> str:
        return (f"sparse attention {self.method} density {self.density:g}, dense steps {self.dense_steps}, "
                f"dense blocks {self.dense_blocks}")


# Calibrated on the embedded model at 1024 px (tools/benchmarks/bench_sparse_e2e.py --split tune).
PRESETS: dict[str, dict[str, float | int]] = {
    "quality": {"density": 0.3, "dense_steps": 6, "dense_blocks": 1},
    "balanced": {"density": 0.2, "dense_steps": 4, "dense_blocks": 1},
    "fast": {"density": 0.12, "dense_steps": 3, "dense_blocks": 0},
}


def preset_config(preset: str, method: str, **custom: float | int) -> SparseAttentionConfig:
    """The config for `preset` (custom: the raw inputs) with the chosen method."""
    if preset == "custom":
        return SparseAttentionConfig(method=method, **custom)
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESET_NAMES)}, got {preset!r}")
    window = {k: v for k, v in custom.items() if k in ("start_percent", "end_percent", "estimate_skipped")}
    return SparseAttentionConfig(method=method, **PRESETS[preset], **window)

"""Settings of the sparse-attention node (its presets are settings records: accel_core/settings/records.py)."""

from __future__ import annotations

from dataclasses import dataclass

METHODS = ("grat", "pisa", "svg2", "draft", "rettention")


@dataclass(frozen=True)
class SparseAttentionConfig:
    method: str = "draft"  # which selection of key blocks (METHODS)
    density: float = 0.2  # share of key blocks kept (SVG2: the cap of its top-p budget)
    dense_steps: int = 4  # first sampler steps with full attention
    dense_blocks: int = 1  # first transformer blocks with full attention
    start_percent: float = 0.0  # sparse attention starts at this share of the steps
    end_percent: float = 1.0  # and ends at this share
    query_tile: int = 16  # a query block is query_tile² image tokens
    key_tile: int = 8  # a key block is key_tile² image tokens
    min_tokens: int = 1024  # fewer image tokens than this: attention stays dense (nothing to gain)
    grat_pattern: str = "neighbors"  # GRAT's static pattern of key tiles around each query tile
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

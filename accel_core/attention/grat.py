"""GRAT (Ren et al. 2025): static, content-free patterns over groups of neighbouring tokens.

All queries of a query block share one key set, chosen from the blocks' positions only:
`neighbors` (GRAT-B: the nearest key blocks) or `criss_cross` (GRAT-X: key blocks in the same
row band or column band first, nearest first). The paper fixes the neighbourhood; here the
number of blocks follows `density` so every method answers to the same budget.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from .layout import TileLayout
from .selection import Selection, budget, top_k

PATTERNS = ("neighbors", "criss_cross")


@lru_cache(maxsize=32)
def pattern_scores(layout: TileLayout, pattern: str) -> torch.Tensor:
    """(nQb, nKb): higher = kept first."""
    qc, kc = layout.query_centroids(), layout.key_centroids()
    delta = (qc.unsqueeze(1) - kc.unsqueeze(0)).abs()  # (nQb, nKb, 3): frames, rows, columns
    # frames count as far as a tile: temporal neighbours rank like spatial ones
    delta[..., 0] *= layout.key_tile
    distance = delta.amax(-1)
    if pattern == "neighbors":
        return -distance
    # criss-cross: same frame and same row band or column band first
    band = (layout.query_tile + layout.key_tile) / 2
    in_cross = (delta[..., 0] == 0) & ((delta[..., 1] < band) | (delta[..., 2] < band))
    return in_cross.float() * 1e6 - distance


def select(q: torch.Tensor, layout: TileLayout, density: float, pattern: str = "neighbors") -> Selection:
    scores = pattern_scores(layout, pattern).to(q.device)
    index, count = top_k(scores, budget(density, scores.shape[-1]))
    b, h = q.shape[:2]
    return Selection(index.expand(b, h, *index.shape), count.expand(b, h, *count.shape))

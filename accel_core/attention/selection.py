"""The common interface of the sparse-attention methods: which key blocks each query block keeps.

A method turns q and k (B, H, N, D), already in tile order, into a `Selection`. Helpers here
turn block scores into index lists (top-k per row, top-p per row, a per-head global share).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Selection:
    kv_index: torch.Tensor  # (B, H, nQb, K) key-block ids
    kv_count: torch.Tensor  # (B, H, nQb) how many of them are used
    q_perm: torch.Tensor | None = None  # (B, H, N): a further per-head reordering of the queries
    k_perm: torch.Tensor | None = None  # (B, H, N): of keys and values

    def density(self, n_key_blocks: int) -> float:
        return float(self.kv_count.float().mean()) / max(1, n_key_blocks)


def budget(density: float, n_key_blocks: int) -> int:
    return max(1, min(n_key_blocks, math.ceil(density * n_key_blocks)))


def top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row keeps its k highest-scoring key blocks."""
    index = torch.topk(scores, k, dim=-1).indices.int()
    return index, torch.full(scores.shape[:-1], k, dtype=torch.int32, device=scores.device)


def from_mask(keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(…, nQb, nKb) bool → kept ids first in each row, and their count."""
    count = keep.sum(-1).int()
    width = max(1, int(count.max()))
    index = torch.sort(keep.to(torch.uint8), dim=-1, descending=True, stable=True).indices[..., :width]
    return index.int(), count


def top_p(probs: torch.Tensor, p: float, cap: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row keeps blocks in descending probability until their sum reaches p (at least one,
    at most cap)."""
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
    before = torch.cumsum(sorted_probs, -1) - sorted_probs  # mass of the blocks ranked higher
    count = (before < p).sum(-1).clamp(1, cap).int()
    return order[..., :cap].int(), count


def global_share(probs: torch.Tensor, share: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per head, keep the `share` of all (query block, key block) entries with the highest
    probability, and every row's best entry."""
    flat = probs.flatten(-2)
    keep_n = max(1, min(flat.shape[-1], math.ceil(share * flat.shape[-1])))
    threshold = torch.topk(flat, keep_n, dim=-1).values[..., -1:]
    keep = probs >= threshold.unsqueeze(-1)
    keep |= probs >= probs.amax(-1, keepdim=True)
    return from_mask(keep)

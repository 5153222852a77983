"""DraftAttention (Shen et al. 2025): a low-resolution attention map picks the blocks.

q and k are average-pooled per key block; the pooled ("draft") attention map, weighted by the
blocks' token counts, is averaged over the sub-blocks of each query block; per head, the
`density` share of all entries with the highest draft probability is kept (the paper's global
percentile), and every row keeps at least its best block.
"""

from __future__ import annotations

import math

import torch

from ...kernels.block_sparse_reference import block_mean_reference, n_blocks
from .layout import TileLayout
from .selection import Selection, global_share


def draft_probs(q: torch.Tensor, k: torch.Tensor, layout: TileLayout, scale: float) -> torch.Tensor:
    """(B, H, nQb, nKb) draft attention probabilities."""
    n = k.shape[-2]
    qm, km = block_mean_reference(q, layout.block_k), block_mean_reference(k, layout.block_k)
    nkb = km.shape[-2]
    sizes = torch.full((nkb,), float(layout.block_k), device=q.device)
    sizes[-1] = n - (nkb - 1) * layout.block_k
    logits = torch.matmul(qm, km.transpose(-1, -2)) * scale + sizes.log()
    probs = torch.softmax(logits, dim=-1)  # per query sub-block
    per = layout.block_q // layout.block_k
    nqb = n_blocks(q.shape[-2], layout.block_q)
    probs = torch.nn.functional.pad(probs, (0, 0, 0, nqb * per - probs.shape[-2]))
    weights = torch.nn.functional.pad(torch.ones(qm.shape[-2], device=q.device), (0, nqb * per - qm.shape[-2]))
    summed = probs.unflatten(-2, (nqb, per)).sum(-2)
    return summed / weights.view(nqb, per).sum(-1, keepdim=True)


def select(q: torch.Tensor, k: torch.Tensor, layout: TileLayout, density: float) -> Selection:
    probs = draft_probs(q, k, layout, 1.0 / math.sqrt(q.shape[-1]))
    index, count = global_share(probs, density)
    return Selection(index, count)

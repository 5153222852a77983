"""PISA (Li et al. 2026): exact attention on the critical blocks, a Taylor estimate of the rest.

`add_estimate` also serves the other methods when `estimate_skipped` is on (the compensation
SVG-EAR adds to SVG2): their skipped blocks are then estimated instead of dropped.

Blocks are ranked by q̄_i·k̄_j·scale + log(‖H_j‖ + 1e-5), H_j = Σ_t (k_t − k̄_j) v_tᵀ (blocks whose
keys spread widely are worth computing exactly); the top `density` share is computed exactly.
Every other block j contributes its zeroth-order term exp(q·k̄_j·scale)·Σv to the numerator and
exp(q·k̄_j·scale)·|B_j| to the denominator (with the second-order variance term
below), plus the first-order term scale·qᵀH weighted by the
estimated mass over the number of blocks, with one H shared by all blocks (as the reference
code does: a per-block first-order term would cost as much as dense attention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ...kernels.block_sparse_reference import block_mask, block_mean_reference, n_blocks
from .layout import TileLayout
from .selection import Selection, budget, top_k


@dataclass
class BlockStats:
    k_mean: torch.Tensor  # (B, H, nKb, D)
    v_sum: torch.Tensor  # (B, H, nKb, D)
    sizes: torch.Tensor  # (nKb,)
    spread: torch.Tensor  # (B, H, nKb, D, D): H_j
    k_var: torch.Tensor  # (B, H, nKb, D): per-channel variance of the keys in each block


def block_stats(k: torch.Tensor, v: torch.Tensor, block: int) -> BlockStats:
    n = k.shape[-2]
    nkb = n_blocks(n, block)
    pad = nkb * block - n
    k_mean = block_mean_reference(k, block)
    sizes = torch.full((nkb,), float(block), device=k.device)
    sizes[-1] = block - pad
    vf = torch.nn.functional.pad(v.float(), (0, 0, 0, pad)).unflatten(-2, (nkb, block))
    kf = torch.nn.functional.pad(k.float(), (0, 0, 0, pad)).unflatten(-2, (nkb, block))
    valid = (torch.arange(nkb * block, device=k.device) < n).float().view(nkb, block, 1)
    centred = (kf - k_mean.unsqueeze(-2)) * valid
    spread = torch.matmul(centred.transpose(-1, -2), vf)
    k_var = (centred * centred).sum(-2) / sizes.view(-1, 1)
    return BlockStats(k_mean, vf.sum(-2), sizes, spread, k_var)


def select(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: TileLayout,
           density: float) -> tuple[Selection, BlockStats]:
    scale = 1.0 / math.sqrt(q.shape[-1])
    stats = block_stats(k, v, layout.block_k)
    q_mean = block_mean_reference(q, layout.block_q)
    bias = torch.log(torch.linalg.matrix_norm(stats.spread) + 1e-5)
    scores = torch.matmul(q_mean, stats.k_mean.transpose(-1, -2)) * scale + bias.unsqueeze(-2)
    index, count = top_k(scores, budget(density, scores.shape[-1]))
    return Selection(index, count, approximate_rest=True), stats


def add_estimate(q: torch.Tensor, out: torch.Tensor, lse: torch.Tensor, selection: Selection, stats: BlockStats,
                 block_q: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge the exact part (out, lse over the kept blocks) with the estimate of the skipped ones;
    returns the output and the log of the estimated full denominator."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    nkb = stats.k_mean.shape[-2]
    kept = block_mask(selection.kv_index, selection.kv_count, nkb)  # (B, H, nQb, nKb)
    kept = kept.repeat_interleave(block_q, dim=-2)[..., : q.shape[-2], :]
    qf = q.float()
    s = torch.matmul(qf, stats.k_mean.transpose(-1, -2)) * scale  # (B, H, N, nKb)
    # Σ_t exp(q·k_t) over a block is n·exp(q·k̄)·E[exp(q·(k_t − k̄))]; the expectation's second-order
    # term with a diagonal covariance, ½·Σ_d q_d²σ²_d, removes most of the zeroth order's underestimate
    # of spread-out blocks (measured on the embedded model's captured q/k/v)
    s = s + 0.5 * scale * scale * torch.matmul(qf * qf, stats.k_var.transpose(-1, -2))
    s = s.masked_fill(kept, float("-inf"))
    m = torch.maximum(s.amax(-1), lse)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    w = torch.exp(s - m.unsqueeze(-1))  # skipped blocks' weight per token, relative to exp(m)
    exact = torch.exp(lse - m)
    approx_mass = w @ stats.sizes  # (B, H, N)
    numerator = exact.unsqueeze(-1) * out.float() + w @ stats.v_sum
    shared_spread = stats.spread.sum(-3)  # (B, H, D, D)
    numerator += scale * (w.sum(-1) / nkb).unsqueeze(-1) * torch.matmul(qf, shared_spread)
    denominator = exact + approx_mass
    denominator = denominator.clamp_min(1e-30)
    return (numerator / denominator.unsqueeze(-1)).to(out.dtype), m + denominator.log()

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
    shared_spread: torch.Tensor  # (B, H, D, D): Σ_j H_j
    k_var: torch.Tensor  # (B, H, nKb, D): per-channel variance of the keys in each block
    spread_norm: torch.Tensor | None = None  # (B, H, nKb): ‖H_j‖, for PISA's ranking only


def block_stats(k: torch.Tensor, v: torch.Tensor, block: int, per_block_spread: bool = False) -> BlockStats:
    n = k.shape[-2]
    nkb = n_blocks(n, block)
    pad = nkb * block - n
    k_mean = block_mean_reference(k, block)
    sizes = torch.full((nkb,), float(block), device=k.device)
    sizes[-1] = block - pad
    vf = torch.nn.functional.pad(v.float(), (0, 0, 0, pad)).unflatten(-2, (nkb, block))
    kf = torch.nn.functional.pad(k.float(), (0, 0, 0, pad)).unflatten(-2, (nkb, block))
    centred = kf - k_mean.unsqueeze(-2)
    if pad:
        centred[..., -1, block - pad:, :] = 0.0
    k_var = (centred * centred).sum(-2) / sizes.view(-1, 1)
    # Σ_j H_j is one (D x N)(N x D) product; the per-block H_j only for PISA's ranking
    flat_c, flat_v = centred.flatten(-3, -2), vf.flatten(-3, -2)
    shared = torch.matmul(flat_c.transpose(-1, -2), flat_v)
    norm = torch.linalg.matrix_norm(torch.matmul(centred.transpose(-1, -2), vf)) if per_block_spread else None
    return BlockStats(k_mean, vf.sum(-2), sizes, shared, k_var, norm)


def select(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: TileLayout,
           density: float) -> tuple[Selection, BlockStats]:
    scale = 1.0 / math.sqrt(q.shape[-1])
    stats = block_stats(k, v, layout.block_k, per_block_spread=True)
    q_mean = block_mean_reference(q, layout.block_q)
    bias = torch.log(stats.spread_norm + 1e-5)
    scores = torch.matmul(q_mean, stats.k_mean.transpose(-1, -2)) * scale + bias.unsqueeze(-2)
    index, count = top_k(scores, budget(density, scores.shape[-1]))
    return Selection(index, count), stats


def add_estimate(q: torch.Tensor, out: torch.Tensor, lse: torch.Tensor, selection: Selection, stats: BlockStats,
                 block_q: int, chunk_blocks: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge the exact part (out, lse over the kept blocks) with the estimate of the skipped ones;
    returns the output and the log of the estimated full denominator.

    `chunk_blocks` > 0: the (tokens x key blocks) scores are built that many query blocks at a time
    (memory form CHUNKED); each query's result depends on its own row only."""
    n = q.shape[-2]
    nkb = stats.k_mean.shape[-2]
    nqb = n_blocks(n, block_q)
    kept = block_mask(selection.kv_index, selection.kv_count, nkb).unsqueeze(-2)  # (B, H, nQb, 1, nKb)
    step = chunk_blocks if 0 < chunk_blocks < nqb else nqb
    merged = merged_lse = None
    for first in range(0, nqb, step):
        last = min(first + step, nqb)
        rows = slice(first * block_q, min(last * block_q, n))
        # the chunk's queries in float32, padded to whole blocks (only the last chunk has padding)
        pad = (last - first) * block_q - (rows.stop - rows.start)
        qf = torch.nn.functional.pad(q[..., rows, :].float(), (0, 0, 0, pad))
        part, part_lse = _estimate_rows(qf, out[..., rows, :], lse[..., rows], kept[:, :, first:last], stats, block_q)
        del qf
        if step == nqb:
            return part, part_lse
        if merged is None:
            merged, merged_lse = out.new_empty(out.shape), lse.new_empty(lse.shape, dtype=part_lse.dtype)
        merged[..., rows, :] = part
        merged_lse[..., rows] = part_lse
        del part, part_lse
    return merged, merged_lse


def _estimate_rows(qf: torch.Tensor, out: torch.Tensor, lse: torch.Tensor, kept: torch.Tensor, stats: BlockStats,
                   block_q: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`add_estimate` on the query blocks in `qf` (float32, padded to whole blocks); `out` and `lse`
    hold their real rows."""
    scale = 1.0 / math.sqrt(qf.shape[-1])
    b, h, n = lse.shape
    nkb = stats.k_mean.shape[-2]
    nqb = qf.shape[-2] // block_q
    # Σ_t exp(q·k_t) over a block is n·exp(q·k̄)·E[exp(q·(k_t − k̄))]; the expectation's second-order
    # term with a diagonal covariance, ½·Σ_d q_d²σ²_d, removes most of the zeroth order's underestimate
    # of spread-out blocks (measured on the embedded model's captured q/k/v). In place: this runs on
    # every sparse call and its (tokens x key blocks) tensors are the largest it makes.
    s = torch.matmul(qf, (stats.k_mean * scale).transpose(-1, -2))
    s.add_(torch.matmul(qf * qf, (stats.k_var * (0.5 * scale * scale)).transpose(-1, -2)))
    s.view(b, h, nqb, block_q, nkb).masked_fill_(kept, float("-inf"))
    s = s[..., :n, :]
    m = torch.maximum(s.amax(-1), lse)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    w = s.sub_(m.unsqueeze(-1)).exp_()  # skipped blocks' weight per token, relative to exp(m)
    exact = torch.exp(lse - m)
    denominator = (w @ stats.sizes).add_(exact).clamp_min_(1e-30)
    numerator = torch.matmul(w, stats.v_sum).addcmul_(exact.unsqueeze(-1), out.float())
    first_order = (w.sum(-1) * (scale / nkb)).unsqueeze(-1)
    numerator.addcmul_(first_order, torch.matmul(qf[..., :n, :], stats.shared_spread))
    return numerator.div_(denominator.unsqueeze(-1)).to(out.dtype), m + denominator.log()

"""Block-sparse attention in plain PyTorch that really skips work (no dense mask): the CPU path.

Same contract as `block_sparse_reference.block_sparse_attention_reference`. Query blocks are
sorted by how many key blocks they keep and processed in chunks; each chunk gathers only its
listed key blocks and runs one batched attention over them, so the cost follows the density.
"""

from __future__ import annotations

import math

import torch

from .block_sparse_reference import n_blocks

# Scores held at once per chunk (elements); bounds memory, large enough for efficient matmuls.
CHUNK_SCORES = 1 << 23


def _fused(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
           scale: float) -> tuple[torch.Tensor, torch.Tensor] | None:
    """ATen's CPU flash attention, which also returns the log-sum-exp; None where unavailable."""
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is None or q.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        return None
    try:
        out, lse = op(q, k, v, 0.0, False, attn_mask=mask, scale=scale)
    except (RuntimeError, TypeError):
        return None
    return out, lse.float()


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor | None,
            scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """q (R, 1, bq, D), k/v (R, 1, L, D), allowed (R, 1, 1, L) bool or None → out, lse (R, 1, bq)."""
    mask = None
    if allowed is not None:
        mask = torch.zeros(allowed.shape, dtype=q.dtype, device=q.device).masked_fill_(~allowed, float("-inf"))
    fused = _fused(q, k, v, mask, scale)
    if fused is not None:
        return fused
    s = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale
    if allowed is not None:
        s = s.masked_fill(~allowed, float("-inf"))
    lse = torch.logsumexp(s, dim=-1)
    p = torch.exp(s - lse.unsqueeze(-1))
    return torch.matmul(p, v.float()).to(q.dtype), lse


def _blocks(x: torch.Tensor, length: int) -> torch.Tensor:
    """(BH, N, D) zero-padded to `length` tokens; no copy when it already has them."""
    if x.shape[1] == length:
        return x.contiguous()
    return torch.nn.functional.pad(x, (0, 0, 0, length - x.shape[1]))


def block_sparse_attention_cpu(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kv_index: torch.Tensor,
                               kv_count: torch.Tensor, block_q: int, block_k: int,
                               scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    b, h, nq, d = q.shape
    nk = k.shape[-2]
    nqb, nkb = n_blocks(nq, block_q), n_blocks(nk, block_k)
    bh = b * h
    counts = kv_count.reshape(-1).long()
    index = kv_index.reshape(bh * nqb, -1).long()
    kmax = index.shape[-1]
    # padding costs a copy of q, k and v: only when a block is short or a row lists fewer blocks
    # than its chunk (then the extra all-padding key block number nkb is the target of the unused slots)
    ragged = bool((counts < kmax).any())
    kblocks = nkb + 1 if ragged else nkb
    qb = _blocks(q.reshape(bh, nq, d), nqb * block_q).view(bh * nqb, block_q, d)
    kb = _blocks(k.reshape(bh, nk, d), kblocks * block_k).view(bh * kblocks, block_k, d)
    vb = _blocks(v.reshape(bh, nk, d), kblocks * block_k).view(bh * kblocks, block_k, d)
    key_valid = torch.arange(kblocks * block_k, device=q.device) < nk

    if ragged:
        slots = torch.arange(kmax, device=q.device)
        index = torch.where(slots < counts.unsqueeze(-1), index, torch.full_like(index, nkb))
    base = torch.arange(bh, device=q.device).repeat_interleave(nqb) * kblocks
    global_index = index + base.unsqueeze(-1)
    key_valid_blocks = key_valid.view(kblocks, block_k)

    out = torch.zeros(bh * nqb, block_q, d, dtype=q.dtype, device=q.device)
    lse = torch.full((bh * nqb, block_q), float("-inf"), device=q.device)
    order = torch.argsort(counts, descending=True)
    sorted_counts = counts[order].tolist()
    start = 0
    rows_total = sum(1 for c in sorted_counts if c > 0)  # rows keeping nothing stay out 0, lse -inf
    while start < rows_total:
        c = sorted_counts[start]
        rows = max(1, CHUNK_SCORES // (block_q * c * block_k))
        stop = min(rows_total, start + rows)
        chunk = order[start:stop]
        sel = global_index[chunk, :c]  # (R, c)
        kg = kb.index_select(0, sel.reshape(-1)).view(len(chunk), 1, c * block_k, d)
        vg = vb.index_select(0, sel.reshape(-1)).view(len(chunk), 1, c * block_k, d)
        valid = key_valid_blocks.index_select(0, index[chunk, :c].reshape(-1)).view(len(chunk), 1, 1, c * block_k)
        allowed = None if bool(valid.all()) else valid
        o, part_lse = _attend(qb[chunk].unsqueeze(1), kg, vg, allowed, scale)
        out[chunk] = o.squeeze(1)
        lse[chunk] = part_lse.squeeze(1)
        start = stop
    out = out.view(bh, nqb * block_q, d)[:, :nq].reshape(b, h, nq, d)
    lse = lse.view(bh, nqb * block_q)[:, :nq].reshape(b, h, nq)
    return out, lse

"""Plain-PyTorch references for block-sparse attention and its pieces (correctness, not speed).

Layout shared by every implementation in `kernels/`:
- q: (B, H, Nq, D); k, v: (B, H, Nk, D), tokens already in block order (any permutation is
  applied before and undone after).
- Query blocks are `block_q` consecutive rows, key blocks `block_k` consecutive keys; the
  last block of each may be short.
- `kv_index` (B, H, nQb, K) integer key-block ids per query block, `kv_count` (B, H, nQb): only
  the first `kv_count` entries of a row are used (the rest is padding, any value); the ids
  in a row must be distinct (the kernels would count a repeated block twice).
- Results: `out` (B, H, Nq, D) in q's dtype and `lse` (B, H, Nq) float32, the natural-log
  sum of exp(scale · q·k) over the keys kept; a row that keeps nothing has out 0, lse -inf.
"""

from __future__ import annotations

import math

import torch


def n_blocks(n: int, block: int) -> int:
    return -(-n // block)


def block_mask(kv_index: torch.Tensor, kv_count: torch.Tensor, n_key_blocks: int) -> torch.Tensor:
    """(B, H, nQb, nKb) bool: key block kept for a query block."""
    k = kv_index.shape[-1]
    valid = torch.arange(k, device=kv_index.device) < kv_count.unsqueeze(-1)
    mask = torch.zeros(*kv_index.shape[:-1], n_key_blocks + 1, dtype=torch.bool, device=kv_index.device)
    index = torch.where(valid, kv_index.long(), torch.full_like(kv_index.long(), n_key_blocks))
    mask.scatter_(-1, index, True)
    return mask[..., :n_key_blocks]


def token_mask(kv_index: torch.Tensor, kv_count: torch.Tensor, nq: int, nk: int, block_q: int,
               block_k: int) -> torch.Tensor:
    """(B, H, Nq, Nk) bool, the block mask expanded to tokens."""
    mask = block_mask(kv_index, kv_count, n_blocks(nk, block_k))
    mask = mask.repeat_interleave(block_q, dim=-2)[..., :nq, :]
    return mask.repeat_interleave(block_k, dim=-1)[..., :nk]


def block_sparse_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kv_index: torch.Tensor,
                                     kv_count: torch.Tensor, block_q: int, block_k: int,
                                     scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense scores with the block mask applied, in float32."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    mask = token_mask(kv_index, kv_count, q.shape[-2], k.shape[-2], block_q, block_k)
    s = torch.einsum("bhqd,bhkd->bhqk", q.float(), k.float()) * scale
    s = s.masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(s, dim=-1)
    p = torch.exp(s - torch.where(torch.isinf(lse), 0.0, lse).unsqueeze(-1))
    out = torch.einsum("bhqk,bhkd->bhqd", p, v.float())
    return out.to(q.dtype), lse


def block_mean_reference(x: torch.Tensor, block: int) -> torch.Tensor:
    """(B, H, N, D) → (B, H, nb, D): mean of each block of `block` tokens (the short last block
    averages the tokens it has), in float32."""
    n = x.shape[-2]
    nb = n_blocks(n, block)
    pad = nb * block - n
    xf = torch.nn.functional.pad(x.float(), (0, 0, 0, pad))
    sums = xf.unflatten(-2, (nb, block)).sum(-2)
    counts = torch.full((nb,), float(block), device=x.device)
    counts[-1] = block - pad
    return sums / counts.unsqueeze(-1)


def permute_reference(x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Gather tokens: out[..., i, :] = x[..., perm[..., i], :]; `perm` is (N,), or (B, H, N)."""
    if perm.dim() == 1:
        return x.index_select(-2, perm)
    return torch.gather(x, -2, perm.long().unsqueeze(-1).expand(*perm.shape, x.shape[-1]))


def unpermute_reference(x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Scatter back: out[..., perm[..., i], :] = x[..., i, :] (the inverse of `permute_reference`)."""
    out = torch.empty_like(x)
    if perm.dim() == 1:
        out.index_copy_(-2, perm.long(), x)  # index_copy_ takes only int64 indices
        return out
    return out.scatter_(-2, perm.long().unsqueeze(-1).expand(*perm.shape, x.shape[-1]), x)

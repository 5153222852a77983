"""Runs a `Selection`: the Triton kernel on a GPU that can take the inputs, else the CPU path.

Both share the contract of `kernels.block_sparse_reference`; permutations a method asks for
(SVG2's clusters) are applied here and undone on the output.
"""

from __future__ import annotations

import torch

from ...kernels.block_sparse_cpu import block_sparse_attention_cpu
from ...kernels.block_sparse_reference import n_blocks
from .selection import Selection

try:  # the Triton kernels are optional: without Triton everything runs on the torch path
    from ...kernels import block_sparse_triton
except ImportError:  # pragma: no cover - depends on the install
    block_sparse_triton = None

BACKEND_TRITON = "triton"
BACKEND_TORCH = "torch"


def triton_ready() -> bool:
    """The Triton kernels can run here (a CUDA device is checked by the caller)."""
    return block_sparse_triton is not None and block_sparse_triton.triton_available()


def backend_for(q: torch.Tensor, block_q: int, block_k: int) -> tuple[str, str | None]:
    """(backend, why not Triton) for these inputs."""
    if not q.is_cuda:
        return BACKEND_TORCH, None
    if block_sparse_triton is None or not block_sparse_triton.triton_available():
        return BACKEND_TORCH, "Triton not available"
    reason = block_sparse_triton.supports(q, block_q, block_k)
    return (BACKEND_TORCH, reason) if reason else (BACKEND_TRITON, None)


def gather_tokens(x: torch.Tensor, perm: torch.Tensor | None) -> torch.Tensor:
    """x (..., N, D) reordered by a per-head permutation perm (..., N); None: unchanged."""
    if perm is None:
        return x
    return torch.gather(x, -2, perm.unsqueeze(-1).expand(*perm.shape, x.shape[-1]))


def scatter_tokens(x: torch.Tensor, perm: torch.Tensor | None) -> torch.Tensor:
    """The inverse of `gather_tokens`, for outputs (..., N, D) and log-sum-exps (..., N)."""
    if perm is None:
        return x
    if x.dim() == perm.dim():  # lse (B, H, N)
        return torch.empty_like(x).scatter_(-1, perm, x)
    return torch.empty_like(x).scatter_(-2, perm.unsqueeze(-1).expand(*perm.shape, x.shape[-1]), x)


def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, selection: Selection, block_q: int,
        block_k: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """out (B, H, N, D) and lse (B, H, N) in the caller's token order, and the backend used."""
    backend, _ = backend_for(q, block_q, block_k)
    qs = gather_tokens(q, selection.q_perm)
    ks, vs = gather_tokens(k, selection.k_perm), gather_tokens(v, selection.k_perm)
    fn = block_sparse_attention_cpu
    if backend == BACKEND_TRITON:
        fn = block_sparse_triton.block_sparse_attention_triton
    out, lse = fn(qs, ks, vs, selection.kv_index, selection.kv_count, block_q, block_k)
    return scatter_tokens(out, selection.q_perm), scatter_tokens(lse, selection.q_perm), backend


def dense_selection(q: torch.Tensor, k: torch.Tensor, block_q: int, block_k: int) -> Selection:
    """Every key block for every query block (full attention through the same kernels, with lse)."""
    b, h = q.shape[:2]
    nqb, nkb = n_blocks(q.shape[-2], block_q), n_blocks(k.shape[-2], block_k)
    index = torch.arange(nkb, dtype=torch.int32, device=q.device).expand(b, h, nqb, nkb)
    return Selection(index, torch.full((b, h, nqb), nkb, dtype=torch.int32, device=q.device))

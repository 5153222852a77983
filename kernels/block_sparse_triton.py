"""Triton kernels for block-sparse attention and its pieces; same layout and contracts as
`block_sparse_reference` (see its docstring).

Triton is optional: without it, or with neither a GPU nor `TRITON_INTERPRET=1`, this module still
imports, `triton_available()` says False, `supports()` gives the reason and the entry points raise
RuntimeError.

Key-block ids in one row of `kv_index` must be distinct (the reference builds a mask, so a
repeated id counts once there, but the kernel would visit that block twice). Ids outside
[0, number of key blocks) are skipped rather than read out of bounds.
"""

from __future__ import annotations

import math
import os

import torch

try:
    import triton
    import triton.language as tl

    _TRITON_ERROR: str | None = None
except Exception as exc:  # missing or broken (e.g. no matching backend): the pack must load anyway
    triton = None
    tl = None
    _TRITON_ERROR = f"triton failed to import ({type(exc).__name__}: {exc})"

MAX_HEAD_DIM = 256
_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_LOG2E = 1.4426950408889634


def triton_available() -> bool:
    return triton is not None and (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1")


def kernels_interpreted() -> bool:
    """Whether the kernels will run in the CPU interpreter. @triton.jit reads TRITON_INTERPRET when it
    decorates, and triton.language's own helpers (tl.zeros, tl.sum, tl.max) are decorated when triton
    is first imported, so the variable must be set before that import (torch may import triton
    itself), not just before this module's."""
    if triton is None:
        return False
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(_attn_fwd_kernel, InterpretedFunction) and isinstance(tl.zeros, InterpretedFunction)


def _require_triton() -> None:
    if triton is None:
        raise RuntimeError(f"block-sparse Triton kernels unavailable: {_TRITON_ERROR}")
    if not triton_available():
        raise RuntimeError("block-sparse Triton kernels need a CUDA GPU, or TRITON_INTERPRET=1 to run them "
                           "(slowly) on the CPU")
    if not torch.cuda.is_available() and not kernels_interpreted():
        raise RuntimeError("TRITON_INTERPRET=1 was set after triton (or this module) was imported, so the kernels "
                           "would be compiled for a GPU; set it before anything imports triton")


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _pad_dim(d: int) -> int:
    # tl.dot needs every extent >= 16 and tl.arange needs a power of two; the padding is masked.
    return max(16, triton.next_power_of_2(d))


def supports(q: torch.Tensor, block_q: int, block_k: int) -> str | None:
    """None when `block_sparse_attention_triton` takes these inputs, else why not."""
    if triton is None:
        return "triton not importable"
    if not triton_available():
        return "no CUDA device (and TRITON_INTERPRET unset)"
    if not torch.cuda.is_available() and not kernels_interpreted():
        return "TRITON_INTERPRET set after triton was imported"
    if q.dim() != 4:
        return f"q has {q.dim()} dims, expected 4 (B, H, N, D)"
    if q.dtype not in _DTYPES:
        return f"dtype {str(q.dtype).removeprefix('torch.')}"
    if q.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        return f"device {q.device.type}"
    if q.shape[-1] > MAX_HEAD_DIM:
        return f"head dim {q.shape[-1]} > {MAX_HEAD_DIM}"
    for block in (block_q, block_k):
        if not isinstance(block, int) or not _is_pow2(block):
            return f"block {block} not a power of two"
        if block < 16:
            return f"block {block} < 16"
    return None


if triton is not None:

    @triton.jit
    def _dot(a, b, IEEE: tl.constexpr):
        # Only fp32 operands get "ieee"; other dtypes keep the backend default, since the allowed
        # precision names differ between backends (AMD has no "tf32" on some chips).
        if IEEE:
            return tl.dot(a, b, input_precision="ieee")
        else:
            return tl.dot(a, b)

    @triton.jit
    def _attn_fwd_kernel(Q, K, V, Out, LSE, KV_INDEX, KV_COUNT,
                         sqb, sqh, sqn, sqd,
                         skb, skh, skn, skd,
                         svb, svh, svn, svd,
                         sob, soh, son, sod,
                         slb, slh, sln,
                         sib, sih, siq, sik,
                         scb, sch, scq,
                         H, NQ, NK, D, DV, K_MAX, qk_scale,
                         BLOCK_Q: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
                         BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, IEEE: tl.constexpr, UPCAST: tl.constexpr):
        # A query block (up to 256 tokens in the pack's tile layout) is split over BLOCK_Q // BLOCK_M
        # programs: a 256 x 128 fp32 accumulator would not fit a GPU program's registers.
        tile = tl.program_id(0)
        qb = tile // (BLOCK_Q // BLOCK_M)
        sub = tile % (BLOCK_Q // BLOCK_M)
        bh = tl.program_id(1)
        # int64 offsets: B*H*N*D passes 2**31 for long video sequences, and so can one batch
        # entry of a (B, N, H, D) tensor viewed as (B, H, N, D), whose token stride is H*D.
        b = (bh // H).to(tl.int64)
        h = (bh % H).to(tl.int64)

        rows = qb.to(tl.int64) * BLOCK_Q + sub * BLOCK_M + tl.arange(0, BLOCK_M)
        cols = tl.arange(0, BLOCK_K)
        d = tl.arange(0, BLOCK_D)
        dv = tl.arange(0, BLOCK_DV)
        row_ok = rows < NQ

        q = tl.load(Q + b * sqb + h * sqh + rows[:, None] * sqn + d[None, :] * sqd,
                    mask=row_ok[:, None] & (d[None, :] < D), other=0.0)
        if UPCAST:
            q = q.to(tl.float32)
        k_base = K + b * skb + h * skh
        v_base = V + b * svb + h * svh
        idx_base = KV_INDEX + b * sib + h * sih + qb * siq
        count = tl.load(KV_COUNT + b * scb + h * sch + qb * scq)
        count = tl.minimum(count, K_MAX)  # entries past the row's width are not ids

        m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
        acc = tl.zeros([BLOCK_M, BLOCK_DV], dtype=tl.float32)

        for i in range(0, count):
            kb = tl.load(idx_base + i * sik)
            keys = kb.to(tl.int64) * BLOCK_K + cols
            key_ok = (keys >= 0) & (keys < NK)
            k = tl.load(k_base + keys[:, None] * skn + d[None, :] * skd,
                        mask=key_ok[:, None] & (d[None, :] < D), other=0.0)
            if UPCAST:
                k = k.to(tl.float32)
            s = _dot(q, tl.trans(k), IEEE) * qk_scale
            s = tl.where(key_ok[None, :], s, float("-inf"))

            m_new = tl.maximum(m_i, tl.max(s, 1))
            # A block with no valid key (bad id) leaves m at -inf; -inf - -inf would be NaN.
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            p = tl.math.exp2(s - m_safe[:, None])
            alpha = tl.math.exp2(m_i - m_safe)
            l_i = l_i * alpha + tl.sum(p, 1)

            v = tl.load(v_base + keys[:, None] * svn + dv[None, :] * svd,
                        mask=key_ok[:, None] & (dv[None, :] < DV), other=0.0)
            # Rounding p to v's dtype first keeps the upcast path numerically equal to the GPU's.
            pv = p.to(v.dtype)
            if UPCAST:
                pv = pv.to(tl.float32)
                v = v.to(tl.float32)
            acc = acc * alpha[:, None] + _dot(pv, v, IEEE)
            m_i = m_new

        has_keys = l_i > 0.0
        out = acc / tl.where(has_keys, l_i, 1.0)[:, None]
        # m_i and the exponents are in log2 units (scale folded with log2 e); lse is natural log.
        lse = tl.where(has_keys, (m_i + tl.math.log2(tl.where(has_keys, l_i, 1.0))) * 0.6931471805599453,
                       float("-inf"))
        tl.store(Out + b * sob + h * soh + rows[:, None] * son + dv[None, :] * sod, out.to(Out.dtype.element_ty),
                 mask=row_ok[:, None] & (dv[None, :] < DV))
        tl.store(LSE + b * slb + h * slh + rows * sln, lse, mask=row_ok)

    @triton.jit
    def _block_mean_kernel(X, OUT, sxg, sxn, sxd, sog, son, sod, N, D, block,
                           BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
        g = tl.program_id(0).to(tl.int64)
        blk = tl.program_id(1)
        r = tl.arange(0, BLOCK_N)
        d = tl.arange(0, BLOCK_D)
        rows = blk * block + r
        ok = (r < block) & (rows < N)
        x = tl.load(X + g * sxg + rows[:, None] * sxn + d[None, :] * sxd, mask=ok[:, None] & (d[None, :] < D),
                    other=0.0)
        n = tl.minimum(block, N - blk * block)
        mean = tl.sum(x.to(tl.float32), 0) / n.to(tl.float32)
        tl.store(OUT + g * sog + blk * son + d * sod, mean, mask=d < D)

    @triton.jit
    def _permute_kernel(X, P, OUT, sxg, sxn, sxd, spg, spn, sog, son, sod, M, D,
                        SCATTER: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
        g = tl.program_id(0).to(tl.int64)
        i = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        d = tl.arange(0, BLOCK_D)
        ok = i < M
        src = tl.load(P + g * spg + i * spn, mask=ok, other=0).to(tl.int64)  # src * stride can pass 2**31
        mask = ok[:, None] & (d[None, :] < D)
        if SCATTER:
            x = tl.load(X + g * sxg + i[:, None] * sxn + d[None, :] * sxd, mask=mask)
            tl.store(OUT + g * sog + src[:, None] * son + d[None, :] * sod, x, mask=mask)
        else:
            x = tl.load(X + g * sxg + src[:, None] * sxn + d[None, :] * sxd, mask=mask)
            tl.store(OUT + g * sog + i[:, None] * son + d[None, :] * sod, x, mask=mask)


QUERY_TILE = 64  # query rows per program


def block_sparse_attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kv_index: torch.Tensor,
                                  kv_count: torch.Tensor, block_q: int, block_k: int,
                                  scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Flash-attention forward over only the listed key blocks; returns (out, lse) like the reference."""
    _require_triton()
    reason = supports(q, block_q, block_k)
    if reason is not None:
        raise ValueError(f"block_sparse_attention_triton: {reason}")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"q, k, v dtypes differ: {q.dtype}, {k.dtype}, {v.dtype}")
    B, H, nq, d = q.shape
    nk = k.shape[-2]
    dv = v.shape[-1]
    if k.shape != (B, H, nk, d) or v.shape[:-1] != (B, H, nk):
        raise ValueError(f"shapes do not match: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if dv > MAX_HEAD_DIM:
        raise ValueError(f"block_sparse_attention_triton: value head dim {dv} > {MAX_HEAD_DIM}")
    nqb = triton.cdiv(nq, block_q)
    if kv_index.shape[:-1] != (B, H, nqb) or kv_count.shape != (B, H, nqb):
        raise ValueError(f"kv_index {tuple(kv_index.shape)} / kv_count {tuple(kv_count.shape)} do not match "
                         f"(B, H, nQb) = {(B, H, nqb)}")
    if kv_index.dtype.is_floating_point or kv_count.dtype.is_floating_point:
        raise ValueError("kv_index and kv_count must be integer tensors")
    kv_index = kv_index.to(q.device)
    kv_count = kv_count.to(q.device)
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)

    out = torch.empty((B, H, nq, dv), dtype=q.dtype, device=q.device)
    lse = torch.empty((B, H, nq), dtype=torch.float32, device=q.device)
    if out.numel() == 0 and lse.numel() == 0:
        return out, lse
    block_d, block_dv = _pad_dim(d), _pad_dim(dv)
    # The interpreter's tl.dot multiplies bf16 operands as their raw uint16 bit patterns (numpy has
    # no bf16); bf16 → fp32 is exact, so upcasting there gives the GPU's bf16 products.
    upcast = q.dtype == torch.bfloat16 and kernels_interpreted()
    block_m = min(block_q, QUERY_TILE)
    _attn_fwd_kernel[(nqb * (block_q // block_m), B * H)](
        q, k, v, out, lse, kv_index, kv_count,
        *q.stride(), *k.stride(), *v.stride(), *out.stride(), *lse.stride(),
        *kv_index.stride(), *kv_count.stride(),
        H, nq, nk, d, dv, kv_index.shape[-1], scale * _LOG2E,
        BLOCK_Q=block_q, BLOCK_M=block_m, BLOCK_K=block_k, BLOCK_D=block_d, BLOCK_DV=block_dv,
        # fp32 would otherwise go through TF32 on the GPU (~1e-3 relative error).
        IEEE=q.dtype == torch.float32, UPCAST=upcast,
        num_warps=4 if max(block_d, block_dv) <= 64 else 8,
    )
    return out, lse


def block_mean_triton(x: torch.Tensor, block: int) -> torch.Tensor:
    """(..., N, D) → (..., nb, D) float32 block means, like `block_mean_reference`."""
    _require_triton()
    if not isinstance(block, int) or block < 1:
        raise ValueError(f"block must be a positive int, got {block!r}")
    if x.dim() < 2:
        raise ValueError(f"x needs at least 2 dims (N, D), got {tuple(x.shape)}")
    n, d = x.shape[-2:]
    if n == 0:
        raise ValueError("block_mean_triton: x has no tokens")
    nb = triton.cdiv(n, block)
    lead = x.shape[:-2]
    x3 = x.reshape(-1, n, d)
    out = torch.empty((x3.shape[0], nb, d), dtype=torch.float32, device=x.device)
    if out.numel():
        _block_mean_kernel[(x3.shape[0], nb)](x3, out, *x3.stride(), *out.stride(), n, d, block,
                                              BLOCK_N=triton.next_power_of_2(block),
                                              BLOCK_D=triton.next_power_of_2(d))
    return out.reshape(*lead, nb, d)


def _permute(x: torch.Tensor, perm: torch.Tensor, scatter: bool) -> torch.Tensor:
    _require_triton()
    if x.dim() < 2:
        raise ValueError(f"x needs at least 2 dims (N, D), got {tuple(x.shape)}")
    if perm.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"perm must be int32 or int64, got {perm.dtype}")
    n, d = x.shape[-2:]
    m = perm.shape[-1]
    if perm.dim() != 1 and perm.shape[:-1] != x.shape[:-2]:
        raise ValueError(f"perm {tuple(perm.shape)} must be (N,) or match x's leading dims {tuple(x.shape[:-2])}")
    if scatter and m != n:
        raise ValueError(f"unpermute needs perm of length N={n}, got {m}")
    lead = x.shape[:-2]
    x3 = x.reshape(-1, n, d)
    g = x3.shape[0]
    perm = perm.to(x.device)
    # A 1-D perm is shared by every (batch, head): group stride 0 instead of a broadcast copy.
    p2 = perm.view(1, m) if perm.dim() == 1 else perm.reshape(g, m)
    spg = 0 if perm.dim() == 1 else p2.stride(0)
    out = torch.empty((g, n if scatter else m, d), dtype=x.dtype, device=x.device)
    if out.numel():
        block_n = 32
        _permute_kernel[(g, triton.cdiv(m, block_n))](x3, p2, out, *x3.stride(), spg, p2.stride(1), *out.stride(),
                                                       m, d, SCATTER=scatter, BLOCK_N=block_n,
                                                       BLOCK_D=triton.next_power_of_2(d))
    return out.reshape(*lead, out.shape[-2], d)


def permute_triton(x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """out[..., i, :] = x[..., perm[..., i], :], like `permute_reference`."""
    return _permute(x, perm, scatter=False)


def unpermute_triton(x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """out[..., perm[..., i], :] = x[..., i, :], like `unpermute_reference`."""
    return _permute(x, perm, scatter=True)

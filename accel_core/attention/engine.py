"""Sparse attention over image tokens in raster order: layout, method, kernel, per-site state."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from ..memory import CHUNKED, DEVICE, HOST, Storage
from . import draft, grat, pisa, rettention, svg2
from .config import SparseAttentionConfig
from .dispatch import dense_selection, gather_tokens, run, scatter_tokens
from .layout import TileLayout
from .selection import Selection


@dataclass
class SiteState:
    """What one attention site (block, stream set, shape) keeps between steps of one run."""

    centroids: svg2.Centroids | None = None
    reshape: rettention.Reshape | None = None


@dataclass
class Outcome:
    out: torch.Tensor  # (B, H, N, D), raster order
    lse: torch.Tensor  # (B, H, N): log of the (estimated) softmax denominator, to merge with other keys
    kept: float  # share of key blocks computed exactly
    backend: str


def _select(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: TileLayout, config: SparseAttentionConfig,
            state: SiteState) -> tuple[Selection, Any]:
    method = config.method
    if method == "grat":
        return grat.select(q, layout, config.density, config.grat_pattern), None
    if method == "draft":
        return draft.select(q, k, layout, config.density), None
    if method == "pisa":
        return pisa.select(q, k, v, layout, config.density)
    if method == "svg2":
        selection, state.centroids = svg2.select(q, k, layout.block_q, layout.block_k, config.density,
                                                 state.centroids)
        return selection, None
    # rettention: a very sparse local window (the paper's band, in two dimensions)
    return grat.select(q, layout, config.density, "neighbors"), None


def estimate_chunk(head_dim: int, block_q: int, block_k: int) -> int:
    """Query blocks per chunk of the skipped-block estimate in form CHUNKED: a chunk's (tokens x key
    blocks) scores are about the size of the queries themselves (N / block_k key blocks against
    head_dim channels)."""
    return max(1, head_dim * block_k // block_q)


def sparse_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: TileLayout,
                     config: SparseAttentionConfig, step: int, state: SiteState, form: str = DEVICE) -> Outcome:
    """q, k, v (B, H, N, D) image tokens in the model's raster order; `form`: the memory form
    (Re-ttention's residual in the model's dtype or host memory; the estimate in chunks)."""
    order, inverse = layout.order().to(q.device), layout.inverse().to(q.device)
    qt, kt, vt = (x.index_select(-2, order) for x in (q, k, v))
    selection, extra = _select(qt, kt, vt, layout, config, state)
    # a method's own reordering (SVG2's clusters) is applied once here, so kernel and estimate share it
    q_perm, k_perm = selection.q_perm, selection.k_perm
    qt, kt, vt = gather_tokens(qt, q_perm), gather_tokens(kt, k_perm), gather_tokens(vt, k_perm)
    selection = replace(selection, q_perm=None, k_perm=None)
    bq, bk = layout.block_q, layout.block_k
    out, lse, backend = run(qt, kt, vt, selection, bq, bk)
    kept = selection.density(-(-k.shape[-2] // bk))
    if config.method == "rettention":
        if state.reshape is None or rettention.is_refresh_step(step, config.dense_steps):
            full, full_lse, _ = run(qt, kt, vt, dense_selection(qt, kt, bq, bk), bq, bk)
            dtype = torch.float32 if form == DEVICE else q.dtype
            state.reshape = rettention.refresh(full, full_lse, out, lse, dtype, Storage(form == HOST))
            out, lse, kept = full, full_lse, 1.0
        else:
            out, lse = rettention.apply(out, lse, state.reshape, Storage(form == HOST))
    elif config.method == "pisa" or config.estimate_skipped:
        stats = extra if config.method == "pisa" else pisa.block_stats(kt, vt, bk)
        chunk = estimate_chunk(q.shape[-1], bq, bk) if form == CHUNKED else 0
        out, lse = pisa.add_estimate(qt, out, lse, selection, stats, bq, chunk)
    out, lse = scatter_tokens(out, q_perm), scatter_tokens(lse, q_perm)
    return Outcome(out.index_select(-2, inverse), lse.index_select(-1, inverse), kept, backend)

"""Sparse attention over image tokens in raster order: layout, method, kernel, per-site state."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from ..memory import CHUNKED, DEVICE, HOST, MODEL_DTYPE, NONE, ModelDims, Need, RunShape, Storage
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
    blocks) scores are a quarter of the size the queries themselves take (N / block_k key blocks
    against head_dim channels), whatever the token count."""
    return max(1, head_dim * block_k // (4 * block_q))


# methods that keep nothing per head between steps: form CHUNKED runs them a group of heads at a time
STATELESS = ("grat", "draft", "pisa")
HEAD_GROUPS = 8


def head_group(heads: int) -> int:
    """Heads per group in form CHUNKED."""
    return -(-heads // HEAD_GROUPS)


def sparse_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: TileLayout,
                     config: SparseAttentionConfig, step: int, state: SiteState, form: str = DEVICE) -> Outcome:
    """q, k, v (B, H, N, D) image tokens in the model's raster order; `form`: the memory form
    (Re-ttention's residual in the model's dtype or host memory; CHUNKED: the stateless methods a group
    of heads at a time, their tiled copies and estimate scaled down with it, into one output)."""
    heads = q.shape[1]
    if form != CHUNKED or config.method not in STATELESS or heads == 1:
        return _sparse_attention(q, k, v, layout, config, step, state, form)
    size = head_group(heads)
    out = lse = None
    kept = 0.0
    backend = ""
    for h in range(0, heads, size):
        part = _sparse_attention(q[:, h:h + size], k[:, h:h + size], v[:, h:h + size], layout, config, step, state,
                                 form)
        if out is None:
            out = part.out.new_empty((*q.shape[:2], *part.out.shape[2:]))
            lse = part.lse.new_empty((*q.shape[:2], *part.lse.shape[2:]))
        out[:, h:h + size] = part.out
        lse[:, h:h + size] = part.lse
        kept += part.kept * part.out.shape[1] / heads
        backend = part.backend
        del part
    return Outcome(out, lse, kept, backend)


def _sparse_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: TileLayout,
                      config: SparseAttentionConfig, step: int, state: SiteState, form: str) -> Outcome:
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


def memory_needs(config: SparseAttentionConfig, dims: ModelDims, shape: RunShape) -> tuple[Need, ...]:
    """Per call, inside the block: the tiled copies of q, k, v and the output (four attention-sized
    tensors); with the skipped-block estimate (PISA, or `estimate_skipped`), two float32
    (tokens x key blocks) score tensors per head and the padded float32 queries twice. Re-ttention
    keeps, per sparse block and conditioning set, a float32 residual of the attention output and a
    per-query ratio."""
    if not dims.sparse_runs:
        return (Need(NONE, note="attention stays dense on this device (no CUDA + Triton)"),)
    if shape.image_tokens < config.min_tokens:
        return (Need(NONE, note=f"attention stays dense under {config.min_tokens} image tokens"),)
    rows, n, width, heads = shape.rows, shape.image_tokens, dims.width, dims.heads
    block_q, block_k = config.query_tile**2, config.key_tile**2
    padded = -(-n // block_q) * block_q
    key_blocks = -(-n // block_k)
    base = 4 * rows * n * width * dims.compute_itemsize
    if config.method == "rettention":
        sites = max(dims.blocks - config.dense_blocks, 0)
        ratio = sites * rows * heads * n * 4
        residual = sites * rows * n * width
        forms = [Need(DEVICE, held=ratio + 4 * residual, transient=base)]
        if dims.compute_itemsize < 4:
            forms.append(Need(MODEL_DTYPE, held=ratio + dims.compute_itemsize * residual, transient=base,
                              note="residual in the model's dtype"))
        one_site = (ratio + dims.compute_itemsize * residual) // max(sites, 1)
        forms.append(Need(HOST, transient=base + one_site, host=ratio + dims.compute_itemsize * residual,
                          moved=ratio + dims.compute_itemsize * residual, note="residual in host memory"))
        return tuple(forms)
    head_dim = width // heads
    chunk_rows = estimate_chunk(head_dim, block_q, block_k) * block_q
    group = head_group(heads) if config.method in STATELESS else heads
    with_estimate = config.method == "pisa" or config.estimate_skipped

    def estimate(h: int, query_rows: int) -> int:
        merged = n if query_rows < padded else 0
        return estimate_bytes(rows, h, query_rows, key_blocks, head_dim, merged, dims.compute_itemsize) \
            if with_estimate else 0

    if not with_estimate and group == heads:
        return (Need(DEVICE, transient=base),)
    chunked = estimate(group, min(chunk_rows, padded))
    if group < heads:  # a group's tiled copies, and the output and lse of every head they are written into
        chunked += base * group // heads + rows * n * width * dims.compute_itemsize + rows * heads * n * 4
    else:
        chunked += base
    return (Need(DEVICE, transient=base + estimate(heads, padded)),
            Need(CHUNKED, transient=chunked, note=f"{group} of {heads} heads at a time, the skipped-block estimate "
                                                  f"{chunk_rows} queries at a time"))


def estimate_bytes(rows: int, heads: int, query_rows: int, key_blocks: int, head_dim: int, out_rows: int = 0,
                   out_itemsize: int = 4) -> int:
    """The skipped-block estimate's peak: two float32 (queries x key blocks) score tensors and the
    float32 queries twice, per head, for `query_rows` queries at a time; run in chunks, it also
    writes every query's output and lse (`out_rows`) into one tensor."""
    merged = rows * heads * out_rows * (head_dim * out_itemsize + 4)
    return 2 * rows * heads * query_rows * (key_blocks + head_dim) * 4 + merged


def memory_hints(config: SparseAttentionConfig) -> list[tuple[str, SparseAttentionConfig]]:
    if config.method == "rettention":
        return [("method 'draft'", replace(config, method="draft"))]
    if config.method != "pisa" and config.estimate_skipped:
        return [("estimate_skipped off", replace(config, estimate_skipped=False))]
    return []

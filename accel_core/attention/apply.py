"""Attaching sparse attention to a ComfyUI model (imports ComfyUI only through comfy_patch).

A block patch marks which block is running (0.3.75's Wan does not say); the attention override
then decides per call: image self-attention (or the image rows of joint attention) in a sparse
block and step runs through `engine`; everything else goes to the previous override or
ComfyUI's own function, and the report counts which and why.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..adapters import HOOK_ATTENTION, HOOK_BLOCK_REPLACE
from ..comfy_patch import attach, set_attention_override, set_block_patches
from ..memory import DEVICE
from ..run_context import BlockMarker, BlockSite, ConfiguredMethod, RunContext
from ..settings.resolve import Request, at_apply
from . import engine
from .config import SparseAttentionConfig
from .dispatch import backend_for
from .layout import TileLayout

KEY = "ditaccel.sparse_attention"
BLOCK_KEY = "ditaccel_sparse_block"
NEEDS = frozenset({HOOK_BLOCK_REPLACE, HOOK_ATTENTION})
NODE = "DiTAccelSparseAttention"


@dataclass
class SparseRunState:
    config: SparseAttentionConfig  # as resolved for this run
    sites: dict[tuple, engine.SiteState] = field(default_factory=dict)
    form: str = DEVICE  # the memory form the run's plan chose

    def site(self, key: tuple) -> engine.SiteState:
        return self.sites.setdefault(key, engine.SiteState())


def block_hook() -> Callable[..., dict]:
    def hook(args: dict, call_block: Callable[[dict], dict], site: BlockSite, ctx: RunContext | None) -> dict:
        to = args.get("transformer_options") or {}
        return call_block({**args, "transformer_options": {**to, BLOCK_KEY: BlockMarker(site)}})

    return hook


def _to_bhnd(x: torch.Tensor, heads: int, skip_reshape: bool) -> torch.Tensor:
    if skip_reshape:
        return x
    if x.dim() == 4:  # (B, L, H, D): SD3's MMDiT hands v over unflattened
        return x.transpose(1, 2)
    b, n, hd = x.shape
    return x.view(b, n, heads, hd // heads).transpose(1, 2)


def _from_bhnd(x: torch.Tensor, skip_output_reshape: bool) -> torch.Tensor:
    if skip_output_reshape:
        return x
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def joint_image_start(n: int, n_img: int, n_txt: int, text_first: bool, pad: int = 1) -> int | None:
    """Where the image's tokens start in a joint sequence of n tokens, or None when the sequence holds
    other tokens as well. With `pad` > 1 the model pads the text part and the image part each to a
    multiple of it with learned tokens (Z-Image): those count as extra keys, not as image."""
    def padded(count: int) -> int:
        return -(-count // pad) * pad

    if n == n_img + n_txt:
        return n_txt if text_first else 0
    if pad > 1 and n == padded(n_img) + padded(n_txt):
        return padded(n_txt) if text_first else 0
    return None


def dense_reason(config: SparseAttentionConfig, ctx: RunContext, site: BlockSite, kind: str, q: torch.Tensor,
                 k: torch.Tensor, mask: Any, n_img: int, skip_reshape: bool, n_txt: int = 0) -> str | None:
    """Why this attention call stays with the previous function (None: it goes sparse)."""
    if kind == "cross":
        return "previous (cross-attention)"
    if mask is not None:
        return "previous (attention mask)"
    if n_img < config.min_tokens:
        return f"dense (under {config.min_tokens} image tokens)"
    if ctx.step < config.dense_steps:
        return "dense (dense step)"
    if not ctx.in_window(config.start_percent, config.end_percent):
        return "dense (outside start/end)"
    if site.flat_index < config.dense_blocks:
        return "dense (dense block)"
    n = q.shape[-2] if skip_reshape else q.shape[1]
    if n != k.shape[-2 if skip_reshape else 1] or n < n_img or (kind == "self" and n != n_img):
        return "previous (token count not the image's)"
    if kind == "joint" and joint_image_start(n, n_img, n_txt, site.spec.text_first, ctx.token_pad) is None:
        # other tokens beside the text, the image and their padding (Qwen-Image-Edit's and Flux Kontext's
        # reference images): where the image sits in the sequence is not known here
        return "previous (tokens beside the text and the image)"
    return None


def attention_hook() -> Callable[..., torch.Tensor]:
    def attention(call_next: Callable[..., torch.Tensor], ctx: RunContext | None, q: torch.Tensor,
                  k: torch.Tensor, v: torch.Tensor, heads: int, *args: Any, **kwargs: Any) -> torch.Tensor:
        to = kwargs.get("transformer_options") or {}
        marker: BlockMarker | None = to.get(BLOCK_KEY)
        call = ctx.current_call if ctx is not None else None
        if marker is None or call is None or KEY not in ctx.states:
            return call_next(q, k, v, heads, *args, **kwargs)
        config: SparseAttentionConfig = ctx.state(KEY).config
        kind = marker.next_attention()
        mask = args[0] if args else kwargs.get("mask")
        skip_reshape = bool(kwargs.get("skip_reshape"))
        reason = dense_reason(config, ctx, marker.site, kind, q, k, mask, call.image_tokens, skip_reshape,
                              call.text_tokens)
        if reason is None and q.is_cuda:
            layout = TileLayout(call.grid, config.query_tile, config.key_tile)
            _, why_not = backend_for(_to_bhnd(q, heads, skip_reshape), layout.block_q, layout.block_k)
            reason = f"previous (Triton: {why_not})" if why_not else None
        if reason is not None:
            call.note_attention(reason)
            return call_next(q, k, v, heads, *args, **kwargs)

        def sparse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, *args: Any,
                   **kwargs: Any) -> torch.Tensor:
            return _sparse_call(config, ctx, marker, q, k, v, heads, kwargs)

        # the previous overrides run on top of the sparse computation (it is their base function)
        return call_next.with_base(sparse)(q, k, v, heads, *args, **kwargs)

    return attention


def _sparse_call(config: SparseAttentionConfig, ctx: RunContext, marker: BlockMarker, q: torch.Tensor,
                 k: torch.Tensor, v: torch.Tensor, heads: int, kwargs: dict) -> torch.Tensor:
    call = ctx.current_call
    skip_reshape = bool(kwargs.get("skip_reshape"))
    qh, kh, vh = (_to_bhnd(x, heads, skip_reshape) for x in (q, k, v))
    layout = TileLayout(call.grid, config.query_tile, config.key_tile)
    n, n_img = qh.shape[-2], call.image_tokens
    # joint attention: the text (and any padding) before or after the image's tokens
    start = 0 if n == n_img else joint_image_start(n, n_img, call.text_tokens, marker.site.spec.text_first,
                                                   ctx.token_pad)
    img = slice(start, start + n_img)
    state: SparseRunState = ctx.state(KEY)
    # keyed by the conditionings' uuids, not only cond/uncond: a SoftPAG perturbed pass or several
    # positive prompts share the label, and Re-ttention's residual belongs to one conditioning
    uuids = tuple(str(u) for u in (kwargs.get("transformer_options") or {}).get("uuids") or ())
    site = state.site((marker.site.flat_index, marker.calls, uuids or call.streams, tuple(qh.shape)))
    outcome = engine.sparse_attention(qh[..., img, :], kh[..., img, :], vh[..., img, :], layout, config, ctx.step,
                                      site, state.form)
    out = outcome.out
    if n != n_img:
        def others(x: torch.Tensor) -> torch.Tensor:
            return torch.cat((x[..., :start, :], x[..., start + n_img:, :]), dim=-2)

        out_img = _merge_text_keys(qh[..., img, :], others(kh), others(vh), outcome)
        # text (and pad) rows attend to everything, as in the model
        out_other = torch.nn.functional.scaled_dot_product_attention(others(qh), kh, vh)
        out = torch.cat((out_other[..., :start, :], out_img.to(out_other.dtype), out_other[..., start:, :]), dim=-2)
    saved = 4.0 * qh.shape[0] * qh.shape[1] * n_img * n_img * qh.shape[-1] * (1.0 - outcome.kept)
    call.note_attention(f"sparse ({config.method}, {outcome.backend})", saved)
    return _from_bhnd(out.to(q.dtype), bool(kwargs.get("skip_output_reshape")))


def _merge_text_keys(q: torch.Tensor, k_txt: torch.Tensor, v_txt: torch.Tensor,
                     image_part: engine.Outcome) -> torch.Tensor:
    """Image rows: the image-key part (out, lse) merged with exact attention to the text keys."""
    s = torch.matmul(q.float(), k_txt.float().transpose(-1, -2)) / math.sqrt(q.shape[-1])
    lse_txt = torch.logsumexp(s, -1)
    out_txt = torch.matmul(torch.softmax(s, -1), v_txt.float())
    lse = torch.logaddexp(image_part.lse, lse_txt)
    w_img = torch.exp(image_part.lse - lse).unsqueeze(-1)
    return w_img * image_part.out.float() + (1 - w_img) * out_txt


def apply_sparse_attention(model: Any, config: SparseAttentionConfig | Request) -> Any:
    config, request = at_apply(config, model, NODE)

    def new_state(c: SparseAttentionConfig, run: RunContext) -> SparseRunState:
        return SparseRunState(c, form=run.form(KEY))

    method = ConfiguredMethod(KEY, config, new_state, request, node=NODE, memory=engine.memory_needs,
                              memory_hints=engine.memory_hints)
    m, adapter = attach(model, method, NEEDS, name=NODE)
    set_block_patches(m, adapter, KEY, block_hook())
    set_attention_override(m, KEY, attention_hook())
    return m

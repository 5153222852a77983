"""Running a Wan block on part of the image tokens, as RAS and JiT both do: the plan of the call in
progress, the block's arguments gathered to the plan's tokens and its output scattered back, and the
self-attention that lets the chosen tokens see every token's (partly cached) keys and values.

A call's order: the method's block hook makes a `CallPlan` at the first block (`subset_plan` tells
the call's record what was left out), `run_block` runs each block on the plan's tokens, and
`cached_context_attention` swaps in the whole image's keys and values inside each block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..memory import Storage
from ..report import RAN_SUBSET
from ..run_context import BlockMarker, BlockSite, RunContext
from ..token_subset import TokenSubset, gather_tokens, same_rows, scatter_tokens
from .tokens import rows_for_call

MARK_KEY = "ditaccel_spatial_block"  # transformer_options entry: the block site the attention call is in


@dataclass
class CallPlan:
    """What the call in progress runs: every token, or `index` (rows, n) of them."""

    key: tuple
    index: torch.Tensor | None = None
    uniform: bool = True  # every row of `index` keeps the same tokens

    def with_index(self, index: torch.Tensor) -> CallPlan:
        self.index, self.uniform = index, same_rows(index)
        return self


def call_key(to: dict, x: torch.Tensor) -> tuple:
    return tuple(str(u) for u in to.get("uuids") or ()), x.shape[0], x.shape[1]


def velocity(args: dict) -> torch.Tensor:
    """The sampler's velocity from a post-CFG function's arguments: (x - denoised) / sigma."""
    x, denoised = args["input"], args["denoised"]
    sigma = args["sigma"].reshape(-1, *([1] * (x.dim() - 1))).clamp_min(1e-8)
    return (x - denoised) / sigma


def gather_block_args(args: dict, index: torch.Tensor, uniform: bool | None = None) -> dict:
    """A Wan block's arguments restricted to the tokens in `index`."""
    x = args["img"]
    out = {**args, "img": gather_tokens(x, index, uniform=uniform)}
    pe = args.get("pe")
    if isinstance(pe, torch.Tensor) and pe.dim() > 1 and pe.shape[1] == x.shape[1]:
        out["pe"] = gather_tokens(pe, index, uniform=uniform)
    vec = args.get("vec")
    if isinstance(vec, torch.Tensor) and vec.dim() == 4 and vec.shape[1] > 1:  # Wan 2.2 5B: per token or frame
        out["vec"] = gather_tokens(per_token_modulation(vec, x.shape[1]), index, uniform=uniform)
    return out


def per_token_modulation(vec: torch.Tensor, tokens: int) -> torch.Tensor:
    """Wan 2.2's (B, n, 6, C) modulation spread to one entry per token, as the block's own `repeat_e`
    spreads it (n is the token count, or the frame count when a denoise mask gives each frame its
    timestep)."""
    n = vec.shape[1]
    if n == tokens:
        return vec
    repeats = tokens // n
    if repeats * n == tokens:
        return vec.repeat_interleave(repeats, dim=1)
    return vec.repeat_interleave(repeats + 1, dim=1)[:, :tokens]


def subset_plan(plan: CallPlan, ctx: RunContext, x: torch.Tensor, per_sample: torch.Tensor, chunks: int,
                n_keys: int | None, left_out: str) -> CallPlan:
    """`plan` set to run each sample's tokens in `per_sample` (its cond and uncond rows alike), and the
    call's record told so: tokens run and the FLOPs skipped (`n_keys`: image keys each query sees,
    where that is more than the subset)."""
    plan.with_index(rows_for_call(per_sample, chunks))
    call = ctx.current_call
    n, full = per_sample.shape[1], x.shape[1]
    call.tokens_run = n
    call.mark_skipped(call.flops_full - ctx.flops.stack(n, call.text_tokens, batch=x.shape[0], n_keys=n_keys),
                      f"{full - n} of {full} tokens {left_out}", RAN_SUBSET)
    return plan


def run_block(args: dict, call_block: Callable[[dict], dict], site: BlockSite, plan: CallPlan, ctx: RunContext,
              base: torch.Tensor | None = None) -> dict:
    """The block on every token, or on the plan's tokens with its output scattered into `base`
    (default: the block's input, so the tokens left out pass through unchanged). While the block runs
    on part of the tokens, `ctx.token_subset` says which (for caches inside the block)."""
    marked = {**args, "transformer_options": {**args["transformer_options"], MARK_KEY: BlockMarker(site)}}
    if plan.index is None:
        return call_block(marked)
    ctx.token_subset = TokenSubset(plan.index, plan.uniform)
    try:
        out = call_block(gather_block_args(marked, plan.index, plan.uniform))
    finally:
        ctx.token_subset = None
    return {**out, "img": scatter_tokens(args["img"] if base is None else base, plan.index, out["img"])}


def cached_context_attention(key: str) -> Callable[..., torch.Tensor]:
    """Self-attention of a subset call: the chosen tokens' queries see every token's key and value
    (fresh for the chosen tokens, cached for the others); a full call refreshes the cache.

    The whole-image keys and values are swapped in at the bottom of the attention chain (as the base
    function), so overrides applied before this one (SoftPAG's head mix) see the subset's own
    q, k, v and stay consistent. `key`: the method whose per-run state holds `current` (the call's
    plan) and `keys_values`.
    """

    def attention(call_next: Callable[..., torch.Tensor], ctx: RunContext | None, q: torch.Tensor,
                  k: torch.Tensor, v: torch.Tensor, heads: int, *args: Any, **kwargs: Any) -> torch.Tensor:
        to = kwargs.get("transformer_options") or {}
        marker: BlockMarker | None = to.get(MARK_KEY)
        state = ctx.states.get(key) if ctx is not None else None
        if marker is None or state is None or state.current is None or marker.next_attention() != "self" \
                or kwargs.get("skip_reshape") or k.dim() != 3:
            return call_next(q, k, v, heads, *args, **kwargs)
        plan: CallPlan = state.current
        slot = (plan.key, marker.site.flat_index)
        storage: Storage = state.storage
        if plan.index is None:
            state.keys_values[slot] = (storage.copy(k), storage.copy(v))
            return call_next(q, k, v, heads, *args, **kwargs)
        base = call_next.base  # type: ignore[attr-defined]

        def whole_image(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, *a: Any,
                        **kw: Any) -> torch.Tensor:
            k_all, v_all = state.keys_values[slot]
            # the cache is this state's own tensor: update it in place (where it lives), then use it here
            index = plan.index.to(k_all.device)
            k_all.scatter_(1, index.unsqueeze(-1).expand(-1, -1, k.shape[-1]), k.to(k_all.device, k_all.dtype))
            v_all.scatter_(1, index.unsqueeze(-1).expand(-1, -1, v.shape[-1]), v.to(v_all.device, v_all.dtype))
            return base(q, storage.use(k_all, q.device), storage.use(v_all, q.device), heads, *a, **kw)

        return call_next.with_base(whole_image)(q, k, v, heads, *args, **kwargs)

    return attention


def subset_block_hook(key: str, begin_call: Callable[[Any, RunContext, dict], CallPlan],
                      keep_last_output: bool = False) -> Callable[..., dict]:
    """The block hook of a method that runs part of the tokens: `begin_call(state, ctx, args)` plans the
    call at its first block (`state.current`), every block runs on the plan, the last one clears it.
    With `keep_last_output`, the last block's tokens left out keep the output they had when last
    computed (`state.hidden`, per call key) instead of passing their input through."""

    def hook(args: dict, call_block: Callable[[dict], dict], site: BlockSite, ctx: RunContext | None) -> dict:
        if ctx is None:
            return call_block(args)
        state = ctx.state(key)
        if site.flat_index == 0 or state.current is None:
            state.current = begin_call(state, ctx, args)
        plan: CallPlan = state.current
        base = state.hidden[plan.key] if keep_last_output and site.last and plan.index is not None else None
        out = run_block(args, call_block, site, plan, ctx, base)
        if site.last:
            if keep_last_output:
                state.hidden[plan.key] = out["img"]
            state.current = None
        return out

    return hook

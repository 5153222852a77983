"""Attaching RAS and JiT to a ComfyUI model (imports ComfyUI only through comfy_patch).

Both run the blocks on part of the image tokens. Their block patch sits under the pack's other
block patches (`innermost`), gathers the chosen tokens (hidden state, RoPE table, per-token
modulation) before the block and scatters the block's output back into a whole-image tensor,
so every other method sees whole images. A post-CFG function sees the guided output the
sampler integrates: RAS ranks tokens from it, JiT rewrites the tokens it did not compute.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..adapters import HOOK_ATTENTION, HOOK_BLOCK_REPLACE, UnsupportedModelError, adapter_for
from ..comfy_patch import (
    METHODS_KEY,
    add_post_cfg,
    attach,
    run_context,
    set_attention_override,
    set_block_patches,
    transformer_options,
)
from ..memory import HOST, Storage
from ..report import RAN_SUBSET
from ..run_context import BlockMarker, BlockSite, ConfiguredMethod, RunContext
from ..settings.resolve import Request, at_apply
from ..token_subset import TokenSubset, gather_tokens, same_rows, scatter_tokens
from . import jit, ras
from .tokens import rows_for_call, to_pixels

NEEDS = frozenset({HOOK_BLOCK_REPLACE, HOOK_ATTENTION})
SUPPORTED = ("wan",)
MARK_KEY = "ditaccel_spatial_block"


def check_family(adapter: Any, node: str) -> None:
    if adapter.family not in SUPPORTED:
        raise UnsupportedModelError(
            f"{node}: {adapter.display_name} is not supported yet: its blocks take joint text + image streams, "
            f"which running part of the tokens does not split yet. Supported: Wan 2.x.")


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


# --- RAS ---------------------------------------------------------------------------------------

RAS_NODE = "DiTAccelRAS"


class RASObserver:
    """Post-CFG: record the guided update each evaluation makes (the next step's ranking)."""

    owner = ras.KEY
    post_cfg_order = 1  # after the guidance terms (SoftPAG), before JiT's fill

    def __deepcopy__(self, memo: dict) -> RASObserver:
        return self

    def __call__(self, args: dict) -> torch.Tensor:
        ctx = run_context(args["model_options"].get("transformer_options", {}))
        state = ctx.states.get(ras.KEY) if ctx is not None else None
        if state is not None:
            state.observe(velocity(args))
        return args["denoised"]


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


def _ras_begin_call(state: ras.RASState, ctx: RunContext, args: dict) -> CallPlan:
    to = args["transformer_options"]
    x = args["img"]
    plan = CallPlan(call_key(to, x))
    call = ctx.current_call
    if call is None or x.shape[1] != call.image_tokens or plan.key not in state.hidden:
        return plan
    chosen = state.selection(ctx.step, x.shape[1])
    chunks = max(len(to.get("cond_or_uncond") or ()), 1)
    if chosen is None or chosen.shape[0] * chunks != x.shape[0]:
        return plan
    return subset_plan(plan, ctx, x, chosen, chunks, n_keys=x.shape[1], left_out="reused")


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


def ras_block_hook() -> Callable[..., dict]:
    def hook(args: dict, call_block: Callable[[dict], dict], site: BlockSite, ctx: RunContext | None) -> dict:
        if ctx is None:
            return call_block(args)
        state: ras.RASState = ctx.state(ras.KEY)
        if site.flat_index == 0 or state.current is None:
            state.current = _ras_begin_call(state, ctx, args)
        plan: CallPlan = state.current
        # the last block's tokens left out keep the output they had when last computed
        base = state.hidden[plan.key] if site.last and plan.index is not None else None
        out = run_block(args, call_block, site, plan, ctx, base)
        if site.last:
            state.hidden[plan.key] = out["img"]
            state.current = None
        return out

    return hook


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


def refuse_both(model: Any, node: str) -> None:
    """RAS and JiT each decide which tokens the blocks run: one model takes one of them."""
    table = transformer_options(model).get(METHODS_KEY)
    keys = set(table.methods) if table is not None else set()
    if {ras.KEY, jit.KEY} <= keys:
        raise ValueError(f"{node}: DiTAccelRAS and DiTAccelJiT both choose which image tokens the blocks run; "
                         f"use one of them on a model.")


def _ras_state(config: ras.RASConfig, run: RunContext) -> ras.RASState:
    return ras.RASState(config=config, plan=config.plan(run.total_steps), patch=run.adapter.patch_size,
                        storage=Storage(run.form(ras.KEY) == HOST))


def apply_ras(model: Any, config: ras.RASConfig | Request) -> Any:
    check_family(adapter_for(model.get_model_object("diffusion_model"), method=RAS_NODE), RAS_NODE)
    config, request = at_apply(config, model, RAS_NODE)
    method = ConfiguredMethod(ras.KEY, config, _ras_state, request, node=RAS_NODE, memory=ras.memory_needs)
    m, adapter = attach(model, method, NEEDS, name=RAS_NODE)
    check_family(adapter, RAS_NODE)
    refuse_both(m, RAS_NODE)
    set_block_patches(m, adapter, ras.KEY, ras_block_hook(), innermost=True)
    set_attention_override(m, ras.KEY, cached_context_attention(ras.KEY))
    add_post_cfg(m, RASObserver())
    return m


# --- JiT ---------------------------------------------------------------------------------------

JIT_NODE = "DiTAccelJiT"


def _jit_begin_call(state: jit.JiTState, ctx: RunContext, args: dict) -> CallPlan:
    to = args["transformer_options"]
    x = args["img"]
    plan = CallPlan(call_key(to, x))
    call = ctx.current_call
    chunks = max(len(to.get("cond_or_uncond") or ()), 1)
    if call is None or x.shape[1] != call.image_tokens or x.shape[0] % chunks:
        state.used_mask = None
        return plan
    mask = state.anchors(ctx.step, x.shape[0] // chunks, call.grid)
    if mask is None or (state.config.full_context and plan.key not in state.seen):
        state.used_mask = None
        state.seen.add(plan.key)
        return plan
    state.used_mask = mask
    per_sample = mask.nonzero()[:, 1].view(mask.shape[0], -1)
    keys = x.shape[1] if state.config.full_context else None  # full context: anchors attend to every token
    return subset_plan(plan, ctx, x, per_sample, chunks, n_keys=keys, left_out="interpolated")


def jit_block_hook() -> Callable[..., dict]:
    def hook(args: dict, call_block: Callable[[dict], dict], site: BlockSite, ctx: RunContext | None) -> dict:
        if ctx is None:
            return call_block(args)
        state: jit.JiTState = ctx.state(jit.KEY)
        if site.flat_index == 0 or state.current is None:
            state.current = _jit_begin_call(state, ctx, args)
        out = run_block(args, call_block, site, state.current, ctx)
        if site.last:
            state.current = None
        return out

    return hook


class JiTFill:
    """Post-CFG, after every other function: the velocity of the tokens the model did not compute is
    the anchors' velocity spread over the image; tokens joining this step are pulled toward the
    anchors' clean-image estimate (the micro-flow), through the velocity the sampler integrates."""

    owner = jit.KEY
    post_cfg_order = 2  # last: it rewrites the tokens the model did not compute

    def __deepcopy__(self, memo: dict) -> JiTFill:
        return self

    def __call__(self, args: dict) -> torch.Tensor:
        ctx = run_context(args["model_options"].get("transformer_options", {}))
        state: jit.JiTState | None = ctx.states.get(jit.KEY) if ctx is not None else None
        if state is None:
            return args["denoised"]
        x, denoised = args["input"], args["denoised"]
        sigma = args["sigma"].reshape(-1, *([1] * (x.dim() - 1))).clamp_min(1e-8)
        if state.noise is None or state.noise.shape != x.shape:
            state.noise = x / sigma  # the run's starting noise (x = sigma_max * noise on an empty latent)
        mask = state.used_mask if state.used_mask is not None and state.used_mask.shape[0] == x.shape[0] else None
        joining = (state.joined_step == ctx.step and state.joined is not None and state.last_clean is not None
                   and state.last_clean.shape == x.shape and ctx.step + 1 < len(ctx.sample_sigmas))
        if mask is not None:
            density = float(mask.float().mean())
            known = self._pixels(state, mask, x)
            width = jit.spread_sigma(density) * state.patch[1]
            if state.config.interpolate == "velocity":
                denoised = x - sigma * jit.spread((x - denoised) / sigma, known, width)
            else:
                denoised = jit.spread(denoised, known, width)
        if joining:
            state.joined_step = None  # once per stage change, whatever the sampler's evaluations per step
            before = state.last_mask
            clean = jit.spread(state.last_clean, self._pixels(state, before, x),
                               jit.spread_sigma(float(before.float().mean())) * state.patch[1])
            target = clean * (1 - sigma) + sigma * state.noise
            dt = ctx.sample_sigmas[ctx.step + 1] - float(args["sigma"].flatten()[0])
            if abs(dt) > 1e-8:
                joined = self._pixels(state, state.joined, x).unsqueeze(1)
                v = jit.pull_velocity((x - denoised) / sigma, x, target, joined, state.config.relax, dt)
                denoised = x - sigma * v
        state.last_velocity = (x - denoised) / sigma
        state.last_clean = denoised
        state.last_mask = mask if mask is not None else torch.ones(x.shape[0], state.tokens, dtype=torch.bool)
        return denoised

    @staticmethod
    def _pixels(state: jit.JiTState, mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """A per-token mask on the latent's pixels: (B, T, H, W) for video latents, (B, H, W) for images."""
        size = tuple(jit.as_video(x).shape[2:])
        pixels = to_pixels(mask.float(), state.grid, state.patch, size) > 0.5
        return pixels if x.dim() == 5 else pixels[:, 0]


def _jit_state(config: jit.JiTConfig, run: RunContext) -> jit.JiTState:
    return jit.JiTState(config=config, total_steps=run.total_steps, patch=run.adapter.patch_size,
                        storage=Storage(run.form(jit.KEY) == HOST))


def apply_jit(model: Any, config: jit.JiTConfig | Request) -> Any:
    check_family(adapter_for(model.get_model_object("diffusion_model"), method=JIT_NODE), JIT_NODE)
    config, request = at_apply(config, model, JIT_NODE)
    method = ConfiguredMethod(jit.KEY, config, _jit_state, request, node=JIT_NODE, memory=jit.memory_needs,
                              memory_hints=jit.memory_hints)
    m, adapter = attach(model, method, NEEDS, name=JIT_NODE)
    check_family(adapter, JIT_NODE)
    refuse_both(m, JIT_NODE)
    set_block_patches(m, adapter, jit.KEY, jit_block_hook(), innermost=True)
    if config.full_context:
        set_attention_override(m, jit.KEY, cached_context_attention(jit.KEY))
    add_post_cfg(m, JiTFill())
    return m

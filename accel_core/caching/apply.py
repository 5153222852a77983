"""Attaching the caching methods to a ComfyUI model (imports ComfyUI through comfy_patch)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..adapters import HOOK_BLOCK_REPLACE, HOOK_FORWARD, UnsupportedModelError, adapter_for
from ..comfy_patch import (
    attach,
    clear_block_patches,
    forward_options,
    run_context,
    set_block_patches,
    set_forward_wrapper,
    set_module_wrappers,
)
from ..memory import HOST, Storage
from ..module_wrap import ModuleSlot
from ..run_context import ConfiguredMethod, RunContext
from ..settings.resolve import Request, at_apply
from . import first_block, taylorseer

NEEDS = frozenset({HOOK_BLOCK_REPLACE})


def _apply(model: Any, method: ConfiguredMethod, hook: Callable, node: str) -> Any:
    m, adapter = attach(model, method, NEEDS, name=node)
    set_block_patches(m, adapter, method.key, hook)
    return m


def apply_taylorseer(model: Any, config: taylorseer.TaylorSeerConfig | Request) -> Any:
    node = "DiTAccelTaylorSeer"
    adapter = adapter_for(model.get_model_object("diffusion_model"), method=node)
    config, request = at_apply(config, model, node)
    config = config.resolved(adapter.offers(HOOK_FORWARD), adapter.display_name)
    method = ConfiguredMethod(taylorseer.KEY, config, taylorseer.new_state, request, node=node,
                              memory=taylorseer.memory_needs, memory_hints=taylorseer.memory_hints)
    if config.granularity == taylorseer.OUTPUT:
        m, _ = attach(model, method, frozenset({HOOK_FORWARD}), name=node)
        clear_block_patches(m, taylorseer.KEY)  # a TaylorSeer applied before in another granularity
        set_forward_wrapper(m, taylorseer.KEY, _taylorseer_output)
        return m
    if config.granularity == "blocks":
        m = _apply(model, method, taylorseer.block_hook(config), node)
        set_forward_wrapper(m, taylorseer.KEY, None)
        return m
    m, adapter = attach(model, method, NEEDS, name=node)
    set_forward_wrapper(m, taylorseer.KEY, None)
    if not all(spec.output_modules for spec in adapter.block_lists):
        raise UnsupportedModelError(
            f"{node}: granularity 'modules' needs blocks that call attention and MLP as submodules (Wan 2.x); "
            f"{adapter.display_name} computes attention inside its blocks. Use granularity 'blocks'.")
    slot = ModuleSlot()
    keys = tuple(set_module_wrappers(m, adapter, taylorseer.KEY, slot))
    set_block_patches(m, adapter, taylorseer.KEY, taylorseer.block_hook(config, slot, keys))
    return m


def _taylorseer_output(executor: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    to = forward_options(args, kwargs)
    ctx = run_context(to)
    if ctx is None or taylorseer.KEY not in ctx.states:
        return executor(*args, **kwargs)
    x = args[0] if args and isinstance(args[0], torch.Tensor) else kwargs.get("x")
    return taylorseer.output_call(ctx.state(taylorseer.KEY), ctx, list(to.get("uuids") or [None]),
                                  float(to["sigmas"][0]), lambda: executor(*args, **kwargs), x)


def _fbcache_state(config: first_block.FirstBlockCacheConfig, run: RunContext) -> first_block.FirstBlockCacheState:
    config = config.at_steps(run.total_steps)
    return first_block.FirstBlockCacheState(window=config.window, max_skips=config.max_skips,
                                            total_steps=run.total_steps, threshold=config.threshold,
                                            storage=Storage(run.form(first_block.FBCACHE_KEY) == HOST))


def _cgtaylor_state(config: first_block.CGTaylorConfig, run: RunContext) -> first_block.CGTaylorState:
    config = config.at_steps(run.total_steps)
    return first_block.CGTaylorState(window=config.window, max_skips=config.max_skips, total_steps=run.total_steps,
                                     threshold=config.threshold, order=config.order,
                                     first_block_order=config.first_block_order,
                                     storage=Storage(run.form(first_block.CGTAYLOR_KEY) == HOST))


def apply_first_block_cache(model: Any, config: first_block.FirstBlockCacheConfig | Request) -> Any:
    node = "DiTAccelFirstBlockCache"
    config, request = at_apply(config, model, node)
    method = ConfiguredMethod(first_block.FBCACHE_KEY, config, _fbcache_state, request, node=node,
                              memory=first_block.fbcache_memory_needs)
    return _apply(model, method, first_block.gated_block_hook(first_block.FBCACHE_KEY), node)


def apply_cg_taylor(model: Any, config: first_block.CGTaylorConfig | Request) -> Any:
    node = "DiTAccelCGTaylor"
    config, request = at_apply(config, model, node)
    method = ConfiguredMethod(first_block.CGTAYLOR_KEY, config, _cgtaylor_state, request, node=node,
                              memory=first_block.cgtaylor_memory_needs,
                              memory_hints=first_block.cgtaylor_memory_hints)
    return _apply(model, method, first_block.gated_block_hook(first_block.CGTAYLOR_KEY), node)

"""Attaching RAS and JiT to a ComfyUI model: the wiring only (imports ComfyUI only through comfy_patch).

Both run the blocks on part of the image tokens (`subset_call`). Their block hook (`ras.block_hook`,
`jit.block_hook`) sits under the pack's other block patches (`innermost`), so every other method
sees whole images. A post-CFG function sees the guided output the sampler integrates: RAS ranks
tokens from it (`RASObserver`), JiT rewrites the tokens it did not compute (`JiTFill`, `jit.fill`).
"""

from __future__ import annotations

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
from ..run_context import ConfiguredMethod, RunContext
from ..settings.resolve import Request, at_apply
from . import jit, ras
from .subset_call import cached_context_attention, velocity

NEEDS = frozenset({HOOK_BLOCK_REPLACE, HOOK_ATTENTION})
SUPPORTED = ("wan",)


def check_family(adapter: Any, node: str) -> None:
    if adapter.family not in SUPPORTED:
        raise UnsupportedModelError(
            f"{node}: {adapter.display_name} is not supported yet: its blocks take joint text + image streams, "
            f"which running part of the tokens does not split yet. Supported: Wan 2.x.")


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
    set_block_patches(m, adapter, ras.KEY, ras.block_hook(), innermost=True)
    set_attention_override(m, ras.KEY, cached_context_attention(ras.KEY))
    add_post_cfg(m, RASObserver())
    return m


# --- JiT ---------------------------------------------------------------------------------------

JIT_NODE = "DiTAccelJiT"


class JiTFill:
    """Post-CFG, after every other function: JiT's fill of the tokens the model did not compute (`jit.fill`)."""

    owner = jit.KEY
    post_cfg_order = 2  # last: it rewrites the tokens the model did not compute

    def __deepcopy__(self, memo: dict) -> JiTFill:
        return self

    def __call__(self, args: dict) -> torch.Tensor:
        ctx = run_context(args["model_options"].get("transformer_options", {}))
        state: jit.JiTState | None = ctx.states.get(jit.KEY) if ctx is not None else None
        if state is None:
            return args["denoised"]
        return jit.fill(state, ctx, args["input"], args["denoised"], args["sigma"])


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
    set_block_patches(m, adapter, jit.KEY, jit.block_hook(), innermost=True)
    if config.full_context:
        set_attention_override(m, jit.KEY, cached_context_attention(jit.KEY))
    add_post_cfg(m, JiTFill())
    return m

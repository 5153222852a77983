"""Attaching SoftPAG to a ComfyUI model (imports ComfyUI only through comfy_patch)."""

from __future__ import annotations

from typing import Any

import torch

from ..adapters import HOOK_ATTENTION, HOOK_BLOCK_REPLACE
from ..comfy_patch import (
    add_post_cfg,
    attach,
    run_conds,
    run_context,
    set_attention_override,
    set_block_patches,
)
from ..run_context import ConfiguredMethod
from . import softpag
from .head_spec import HeadSelection, parse, resolve

NEEDS = frozenset({HOOK_BLOCK_REPLACE, HOOK_ATTENTION})
NODE = "DiTAccelSoftPAG"


class SoftPAGGuidance:
    """The post-CFG function: one perturbed pass of the cond entries, then denoised + w (cond - perturbed)."""

    owner = softpag.KEY

    def __init__(self, config: softpag.SoftPAGConfig, selection: HeadSelection) -> None:
        self.config = config
        self.selection = selection

    def __deepcopy__(self, memo: dict) -> SoftPAGGuidance:
        return self

    def __call__(self, args: dict) -> torch.Tensor:
        denoised = args["denoised"]
        options = args["model_options"]
        if not self.config.active or not softpag.in_window(self.config, run_context(options.get("transformer_options",
                                                                                                  {}))):
            return denoised
        extra = {softpag.PASS_KEY: softpag.PerturbedPass(self.selection, self.config.strength)}
        (perturbed,) = run_conds(args["model"], [softpag.perturbed_conds(args["cond"])], args["input"], args["sigma"],
                                 options, extra)
        return denoised + (args["cond_denoised"] - perturbed) * self.config.scale


def attention_shape(model: Any, adapter: Any) -> tuple[dict[str, int], int]:
    """Blocks per block list (by replace name) and attention heads per block of `model`."""
    diffusion_model = model.get_model_object("diffusion_model")
    counts = {spec.replace_name: len(getattr(diffusion_model, spec.attr, ())) for spec in adapter.block_lists}
    return counts, adapter.num_heads(diffusion_model)


def selection_for(model: Any, adapter: Any, heads: str) -> HeadSelection:
    counts, num_heads = attention_shape(model, adapter)
    return resolve(parse(heads), adapter, counts, num_heads)


def apply_softpag(model: Any, config: softpag.SoftPAGConfig) -> Any:
    method = ConfiguredMethod(softpag.KEY, config, lambda c, run: None)
    m, adapter = attach(model, method, NEEDS, name=NODE)
    selection = selection_for(m, adapter, config.heads)
    set_block_patches(m, adapter, softpag.KEY, softpag.block_hook(),
                      block_filter=lambda site: bool(selection.for_block(site.spec.replace_name, site.index)))
    set_attention_override(m, softpag.KEY, softpag.attention_hook())
    add_post_cfg(m, SoftPAGGuidance(config, selection))
    return m

"""Attaching SoftPAG to a ComfyUI model (imports ComfyUI only through comfy_patch)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from ..adapters import HOOK_ATTENTION, HOOK_BLOCK_REPLACE, adapter_for
from ..comfy_patch import (
    add_post_cfg,
    attach,
    run_conds,
    run_context,
    set_attention_override,
    set_block_patches,
)
from ..run_context import ConfiguredMethod
from ..settings.resolve import Described, default_heads
from ..settings.variants import identify
from . import softpag
from .head_spec import KINDS, HeadSelection, HeadSpecError, parse, resolve

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


def auto_heads(model: Any, adapter: Any) -> tuple[str, str]:
    """The heads SoftPAG takes for "auto" on this model, and their source: the variant's record where the
    model has those blocks, else the share-of-depth rule."""
    dm = model.get_model_object("diffusion_model")
    variant = identify(adapter, dm)
    counts, num_heads = attention_shape(model, adapter)
    first = adapter.block_lists[0]
    kind = next((k for k, name in KINDS.items() if name == first.replace_name), None)
    kind = kind if len(adapter.block_lists) > 1 else None
    heads, source = default_heads(variant, kind, counts[first.replace_name])
    try:
        resolve(parse(heads), adapter, counts, num_heads)
    except HeadSpecError as e:
        rule, why = default_heads(variant, kind, counts[first.replace_name], use_record=False)
        heads, source = rule, f"{why} (the record's {heads!r} does not fit this model: {e})"
    return heads, f"{variant.name}: {source}"


def apply_softpag(model: Any, config: softpag.SoftPAGConfig) -> Any:
    adapter = adapter_for(model.get_model_object("diffusion_model"), NEEDS, NODE)
    described = Described(NODE, f"heads {config.heads!r}", "the node's inputs, as given")
    if config.heads.strip() == softpag.AUTO:
        heads, source = auto_heads(model, adapter)
        config = replace(config, heads=heads)
        described = Described(NODE, "heads auto", source)
    method = ConfiguredMethod(softpag.KEY, config, lambda c, run: None, described, node=NODE,
                              memory=softpag.memory_needs, extra_streams=1)
    m, adapter = attach(model, method, NEEDS, name=NODE)
    selection = selection_for(m, adapter, config.heads)
    set_block_patches(m, adapter, softpag.KEY, softpag.block_hook(),
                      block_filter=lambda site: bool(selection.for_block(site.spec.replace_name, site.index)))
    set_attention_override(m, softpag.KEY, softpag.attention_hook())
    add_post_cfg(m, SoftPAGGuidance(config, selection))
    return m

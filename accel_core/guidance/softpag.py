"""SoftPAG (Ahn et al., NeurIPS 2025, arXiv 2506.10978): perturbation guidance on chosen attention heads.

The perturbed pass replaces the attention map A of each chosen head of each chosen block by
A' = (1 - u) A + u I. Since A' V = (1 - u) A V + u V, the map is never built: the normal
attention output of the head is mixed with its values, so any attention backend (and any
attention override installed before) keeps working. Only attention whose map is square is
perturbed: self-attention (Wan) and joint text + image attention (Flux); cross-attention to
the text is left alone. Guidance: denoised + w (cond - cond_perturbed), added after CFG, so it
composes with CFG on and off. u = 0 or w = 0 skips the extra pass: the image of no guidance.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..memory import DEVICE, ModelDims, Need, RunShape
from ..run_context import BlockHook, BlockMarker, BlockSite, RunContext
from .head_spec import HeadSelection, parse

AUTO = "auto"  # `heads`: the settings record's heads for the loaded model

KEY = "ditaccel.softpag"
PASS_KEY = "ditaccel_softpag_pass"  # transformer_options entry that marks the perturbed pass
BLOCK_KEY = "ditaccel_block"  # transformer_options entry a block patch adds for the attention inside it
PERTURBED_STREAM = uuid.UUID("6b1f3b2e-0d0c-4d5e-9a71-0f3c2b9d5a11")


@dataclass(frozen=True)
class SoftPAGConfig:
    heads: str  # which heads to perturb: "[kind:]block:heads" entries separated by ';' (heads.parse), or auto
    strength: float = 1.0  # u: the chosen heads' attention map becomes (1 - u) A + u I
    scale: float = 3.0  # w: denoised + w (cond - perturbed cond)
    start_percent: float = 0.0  # guidance starts at this share of the steps
    end_percent: float = 1.0  # and ends at this share

    def __post_init__(self) -> None:
        if self.heads.strip() != AUTO:  # "auto" is resolved per model when the node is applied
            parse(self.heads)  # raises HeadSpecError naming the bad token
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"strength must be between 0 and 1, got {self.strength}")
        if not 0.0 <= self.scale <= 100.0:
            raise ValueError(f"scale must be between 0 and 100, got {self.scale}")
        if not 0.0 <= self.start_percent < self.end_percent <= 1.0:
            raise ValueError(f"start_percent ({self.start_percent}) must be below end_percent ({self.end_percent}), "
                             f"both in [0, 1]")

    @property
    def active(self) -> bool:
        return self.strength > 0.0 and self.scale > 0.0

    def tag(self) -> str:
        return (f"SoftPAG(heads={self.heads!r}, u={self.strength:g}, w={self.scale:g}, "
                f"{self.start_percent:g}-{self.end_percent:g})")


def mix_heads(out: torch.Tensor, v: torch.Tensor, heads: int, chosen: tuple[int, ...], u: float,
              skip_reshape: bool = False, skip_output_reshape: bool = False) -> torch.Tensor:
    """(1 - u) out + u v on the chosen heads, in ComfyUI's attention layouts.

    v is (B, L, H*D) or (B, L, H, D), or (B, H, L, D) with skip_reshape; out is (B, L, H*D), or
    (B, H, L, D) with skip_output_reshape.
    """
    if not skip_reshape and v.dim() == 4:  # (B, L, H, D): SD3's MMDiT hands v over unflattened
        v = v.flatten(2)
    if skip_reshape and not skip_output_reshape:
        b, h, n, d = v.shape
        v = v.transpose(1, 2).reshape(b, n, h * d)
    elif not skip_reshape and skip_output_reshape:
        b, n, hd = v.shape
        v = v.reshape(b, n, heads, hd // heads).transpose(1, 2)
    weight = torch.zeros(heads, dtype=out.dtype, device=out.device)
    weight[list(chosen)] = u
    if skip_output_reshape:  # (B, H, L, D)
        weight = weight.view(1, heads, 1, 1)
    else:  # (B, L, H*D): each head owns D consecutive channels
        weight = weight.repeat_interleave(out.shape[-1] // heads).view(1, 1, -1)
    return out + weight * (v.to(out.dtype) - out)


@dataclass
class PerturbedPass:
    selection: HeadSelection
    strength: float




def block_hook() -> BlockHook:
    def hook(args: dict, call_block: Callable[[dict], dict], site: BlockSite, ctx: RunContext | None) -> dict:
        to = args.get("transformer_options") or {}
        if PASS_KEY not in to:
            return call_block(args)
        return call_block({**args, "transformer_options": {**to, BLOCK_KEY: BlockMarker(site)}})

    return hook


def attention_hook() -> Callable[..., torch.Tensor]:
    def attention(call_next: Callable[..., torch.Tensor], ctx: RunContext | None, q: torch.Tensor,
                  k: torch.Tensor, v: torch.Tensor, heads: int, *args: Any, **kwargs: Any) -> torch.Tensor:
        # Qwen-Image passes its attention mask positionally, after `heads`
        out = call_next(q, k, v, heads, *args, **kwargs)
        to = kwargs.get("transformer_options") or {}
        marker: BlockMarker | None = to.get(BLOCK_KEY)
        perturbed: PerturbedPass | None = to.get(PASS_KEY)
        if marker is None or perturbed is None:
            return out
        if marker.next_attention() not in ("self", "joint"):
            return out
        chosen = perturbed.selection.for_block(marker.site.spec.replace_name, marker.site.index)
        if not chosen:
            return out
        return mix_heads(out, v, heads, chosen, perturbed.strength, bool(kwargs.get("skip_reshape")),
                         bool(kwargs.get("skip_output_reshape")))

    return attention


def perturbed_conds(cond: list[dict]) -> list[dict]:
    """The cond entries under a stream id of their own, so per-stream caches never mix the passes."""
    return [{**c, "uuid": uuid.uuid5(PERTURBED_STREAM, str(c.get("uuid")))} for c in cond]


def memory_needs(config: SoftPAGConfig, dims: ModelDims, shape: RunShape) -> tuple[Need, ...]:
    """The perturbed pass runs the cond entries once more (within ComfyUI's estimate, which sizes a call
    for cond and uncond together); inside a perturbed block, mixing the chosen heads makes three
    attention-output-sized tensors; after it, the perturbed prediction and the guidance term (float32
    latents). Nothing is kept across steps. Its conditioning entries are streams of their own for the
    other methods' per-stream state (`extra_streams`)."""
    tokens = shape.image_tokens + shape.text_tokens
    return (Need(DEVICE, transient=3 * shape.batch * tokens * dims.width * dims.compute_itemsize,
                 between=2 * shape.batch * shape.latent_values * 4),)


def in_window(config: SoftPAGConfig, ctx: RunContext | None) -> bool:
    return ctx is None or ctx.in_window(config.start_percent, config.end_percent)

"""Which model of a family is loaded: read from the model's class and dimensions, refined by what a run shows.

A settings record is chosen per variant (Flux-dev or schnell, Wan 1.3B or 14B ...). Dimensions
tell most variants apart; where they do not (Wan 2.1 14B and both Wan 2.2 A14B experts are all
width 5120 x 40 blocks) the run's sigma range decides: an expert sampled by a KSamplerAdvanced
covers only part of the schedule. Every choice carries the reason the report prints.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..adapters import ModelAdapter


@dataclass(frozen=True)
class Variant:
    family: str  # the adapter's family
    key: str  # e.g. "flux-dev"; the settings records are keyed by it
    name: str  # shown in the report
    why: str  # what identified it


# Wan widths (`dim`) of the published checkpoints; the embedded models are far narrower
WAN_WIDTHS = {1536: "wan2.1-1.3b", 5120: "wan2.1-14b", 3072: "wan2.2-5b"}
EMBEDDED_MAX_WIDTH = 512  # the pack's own embedded models (width 256); no published Wan is this narrow
WAN_NAMES = {"embedded-image": "the embedded image model", "embedded-video": "the embedded video model",
             "wan2.1-1.3b": "Wan 2.1 1.3B", "wan2.1-14b": "Wan 2.1 14B", "wan2.2-5b": "Wan 2.2 5B",
             "wan2.2-a14b-high": "Wan 2.2 A14B high-noise expert", "wan2.2-a14b-low": "Wan 2.2 A14B low-noise expert"}
# a run whose first sigma lies below this share of the schedule's top starts partway (a second-stage sampler)
STARTS_LATE = 0.98
SINGLE = {"hunyuan_video": ("hunyuan-video", "HunyuanVideo"), "qwen_image": ("qwen-image", "Qwen-Image"),
          "chroma": ("chroma", "Chroma"), "hidream": ("hidream-i1", "HiDream-I1")}
NAMES = {**WAN_NAMES, "flux-dev": "Flux.1-dev", "flux-schnell": "Flux.1-schnell", "sd3-medium": "SD3 medium",
         "sd3.5-medium": "SD3.5 medium", "sd3.5-large": "SD3.5 large", "lumina2": "Lumina 2", "z-image": "Z-Image",
         **{key: name for key, name in SINGLE.values()}}


def _variant(family: str, key: str, why: str) -> Variant:
    return Variant(family, key, NAMES[key], why)


def _wan(dm: torch.nn.Module) -> Variant:
    dim, depth = int(getattr(dm, "dim", 0)), len(getattr(dm, "blocks", ()))
    if dim <= EMBEDDED_MAX_WIDTH:
        return _variant("wan", "embedded-image", f"width {dim} x {depth} blocks: the pack's embedded model")
    if int(getattr(dm, "in_dim", 16)) == 48:  # Wan 2.2 5B's VAE
        return _variant("wan", "wan2.2-5b", f"width {dim}, {getattr(dm, 'in_dim', '?')} latent channels")
    if dim in WAN_WIDTHS:
        return _variant("wan", WAN_WIDTHS[dim], f"width {dim}")
    nearest = min(WAN_WIDTHS, key=lambda w: abs(w - dim))
    return _variant("wan", WAN_WIDTHS[nearest], f"width {dim} matches no published Wan; the nearest is {nearest}")


def _sd3(dm: torch.nn.Module) -> Variant:
    blocks = list(getattr(dm, "joint_blocks", ()))
    if len(blocks) >= 30:
        return _variant("sd3", "sd3.5-large", f"{len(blocks)} joint blocks")
    if any(getattr(getattr(b, "x_block", None), "x_block_self_attn", False) for b in blocks):
        return _variant("sd3", "sd3.5-medium", "joint blocks with an extra image self-attention")
    return _variant("sd3", "sd3-medium", f"{len(blocks)} joint blocks, no extra image self-attention")


def identify(adapter: ModelAdapter, dm: torch.nn.Module) -> Variant:
    """The variant the loaded model's dimensions show (before any run)."""
    family = adapter.family
    if family == "wan":
        return _wan(dm)
    if family == "flux":
        guided = bool(getattr(getattr(dm, "params", None), "guidance_embed", False))
        return _variant("flux", "flux-dev" if guided else "flux-schnell",
                        "takes a guidance input (guidance-distilled)" if guided else "no guidance input")
    if family == "sd3":
        return _sd3(dm)
    if family == "lumina2":
        if getattr(dm, "pad_tokens_multiple", None) or int(getattr(dm, "dim", 0)) == 3840:
            return _variant("lumina2", "z-image", "pads its token groups (Z-Image's layout)")
        return _variant("lumina2", "lumina2", "no token padding")
    key, _ = SINGLE[family]
    return _variant(family, key, "one variant per family")


def refine(variant: Variant, sigmas: list[float], sigma_max: float, frames: int) -> Variant:
    """The variant this run shows: the embedded video model samples clips; a width-5120 Wan sampled over only
    part of the schedule is a Wan 2.2 A14B expert (high noise: it stops early; low noise: it starts late)."""
    if variant.key == "embedded-image" and frames > 1:
        return replace(variant, key="embedded-video", name=NAMES["embedded-video"],
                       why=f"{variant.why}, sampling {frames} latent frames")
    if variant.key != "wan2.1-14b" or len(sigmas) < 2:
        return variant
    late = sigmas[0] < STARTS_LATE * sigma_max
    early = sigmas[-1] > 0.0
    span = f"the run samples sigma {sigmas[0]:.3g} to {sigmas[-1]:.3g} of {sigma_max:.3g}"
    if early and not late:
        return _variant("wan", "wan2.2-a14b-high", f"{variant.why}; {span} (stops early: the high-noise expert)")
    if late and not early:
        return _variant("wan", "wan2.2-a14b-low", f"{variant.why}; {span} (starts late: the low-noise expert)")
    return replace(variant, why=f"{variant.why}; {span}")

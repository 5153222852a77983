"""Sampling in this process, without a server: load a model file, seeded conditioning, ComfyUI's sampler.

Used by the patching-layer tests and the family matrix. Call ``dit_runtime.in_process()`` before
importing this module: it makes ComfyUI importable, on the CPU.
"""

from __future__ import annotations

from typing import Any

import comfy.sample
import comfy.sd
import torch

from tools.runtime import dit_runtime, model_files

WAN_FILE = model_files.WAN_DIT_FILE


def load_model(file_name: str) -> Any:
    path = dit_runtime.layout().models / "diffusion_models" / file_name
    return comfy.sd.load_diffusion_model(str(path))


def conditioning(seed: int, tokens: int = 7, dim: int = 4096, pooled: int = 0) -> list:
    g = torch.Generator().manual_seed(seed)
    extra = {"pooled_output": torch.randn(1, pooled, generator=g)} if pooled else {}
    return [[torch.randn(1, tokens, dim, generator=g), extra]]


def sample(model: Any, steps: int = 4, cfg: float = 2.0, seed: int = 0, sampler: str = "euler",
           batch: int = 1, size: tuple[int, int] = (64, 64), video: bool = True,
           positive: list | None = None, negative: list | None = None, pooled: int = 0,
           frames: int = 1) -> torch.Tensor:
    """A (video: B, 16, T, H/8, W/8; else B, 16, H/8, W/8) latent sampled from zeros; `frames` in pixels
    (Wan's VAE: 1 + 4 per latent frame)."""
    h, w = size[0] // 8, size[1] // 8
    latent = torch.zeros(batch, 16, (frames - 1) // 4 + 1, h, w) if video else torch.zeros(batch, 16, h, w)
    noise = comfy.sample.prepare_noise(latent, seed)
    positive = positive or conditioning(1, pooled=pooled)
    negative = negative or conditioning(2, pooled=pooled)
    return comfy.sample.sample(model, noise, steps, cfg, sampler, "simple", positive, negative, latent,
                               seed=seed, disable_pbar=True)

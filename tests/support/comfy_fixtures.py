"""In-process ComfyUI helpers for the patching-layer tests: real models, real samplers, no server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import comfy.sample
import comfy.sd
import dit_runtime
import model_files
import torch


def load_model(file_name: str) -> Any:
    path = dit_runtime.layout().models / "diffusion_models" / file_name
    return comfy.sd.load_diffusion_model(str(path))


def conditioning(seed: int, tokens: int = 7, dim: int = 4096, pooled: int = 0) -> list:
    g = torch.Generator().manual_seed(seed)
    extra = {"pooled_output": torch.randn(1, pooled, generator=g)} if pooled else {}
    return [[torch.randn(1, tokens, dim, generator=g), extra]]


def attention_counts(model: Any) -> dict[str, int]:
    """What the attention calls of the model's latest run did, summed over its model calls (DiTAccelReport's
    per-call counts, e.g. {"sparse (draft, torch)": 10, "dense (dense step)": 2})."""
    from comfyui_ditaccel.accel_core.comfy_patch import report_holder

    counts: dict[str, int] = {}
    for call in report_holder(model).latest.calls:
        for what, n in call.attention.items():
            counts[what] = counts.get(what, 0) + n
    return counts


def sample(model: Any, steps: int = 4, cfg: float = 2.0, seed: int = 0, sampler: str = "euler",
           batch: int = 1, size: tuple[int, int] = (64, 64), video: bool = True,
           positive: list | None = None, negative: list | None = None, pooled: int = 0) -> torch.Tensor:
    h, w = size[0] // 8, size[1] // 8
    latent = torch.zeros(batch, 16, 1, h, w) if video else torch.zeros(batch, 16, h, w)
    noise = comfy.sample.prepare_noise(latent, seed)
    positive = positive or conditioning(1, pooled=pooled)
    negative = negative or conditioning(2, pooled=pooled)
    return comfy.sample.sample(model, noise, steps, cfg, sampler, "simple", positive, negative, latent,
                               seed=seed, disable_pbar=True)


WAN_FILE = model_files.WAN_DIT_FILE


@dataclass
class ProbeState:
    block_calls: list[tuple[int, int, int]] = field(default_factory=list)  # (step, flat block, batch)
    attention_calls: int = 0


@dataclass
class ProbeMethod:
    """A pass-through test method that records what the hooks saw."""

    key: str = "test.probe"
    label: str = "Probe"
    runs_started: int = 0
    fail_at_step: int | None = None
    states: list[ProbeState] = field(default_factory=list)

    def new_run_state(self, run: Any) -> ProbeState:
        self.runs_started += 1
        state = ProbeState()
        self.states.append(state)
        return state

    def __deepcopy__(self, memo: dict) -> ProbeMethod:
        return self

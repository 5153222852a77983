"""What DiTAccelCalibrate and DiTAccelLoadProfile do: sample once at full compute and build the profile;
read a saved one. Each returns the node's outputs and the line its UI shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..adapters import adapter_for
from ..comfy_patch import METHODS_KEY, sample_with_progress, transformer_options
from ..settings.variants import identify
from . import plot, profile, recorder, store
from .profiled import model_fingerprint


def calibrate(model: Any, positive: Any, negative: Any, latent_image: dict, seed: int, steps: int, cfg: float,
              sampler_name: str, scheduler: str, folder: Path | None) -> tuple[tuple[Any, ...], str]:
    """((latent, profile, plot), text); the profile is saved into `folder` unless it is None."""
    table = transformer_options(model).get(METHODS_KEY)
    if table is not None and table.methods:
        raise ValueError("model: DiTAccelCalibrate measures the model at full compute; it has "
                         f"{', '.join(table.methods)} attached. Connect the model before the acceleration nodes.")
    dm = model.get_model_object("diffusion_model")
    adapter = adapter_for(dm, method="DiTAccelCalibrate")
    recording = recorder.Recording()
    samples = sample_with_progress(recorder.apply_calibrate(model, recording, steps), positive, negative,
                                   latent_image, seed, steps, cfg, sampler_name, scheduler)
    final = profile.probe(samples)
    result = profile.build(model_fingerprint(model), adapter.family, identify(adapter, dm).name,
                           sampler_name, scheduler, int(samples[0, 0].numel()), recording.sigmas,
                           recording.features, {e: final for e in recording.features}, cfg=cfg)
    text = f"profile {result.name}: {steps} steps, cfg {cfg:g}, entries {', '.join(result.entries)}"
    if folder is not None:
        text += f"; saved to {store.save(result, folder)}"
    out = dict(latent_image, samples=samples)
    out.pop("noise_mask", None)
    return (out, result, plot.render(result)), text


def load(folder: Path, name: str) -> tuple[tuple[Any, ...], str]:
    """((profile,), text) of the saved profile `name`."""
    p = store.read(folder, name)
    text = (f"profile {p.name}: {p.family} ({p.variant}), {p.steps} steps {p.sampler}/{p.scheduler}, "
            f"{p.size_bucket[:-3]} latent positions, entries {', '.join(p.entries)}")
    return (p,), text

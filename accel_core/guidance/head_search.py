"""Running HeadHunter on a ComfyUI model: candidate heads, the objective, the plot of the search."""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..adapters import adapter_for
from ..comfy_patch import sample_and_decode
from ..quoting import is_index, quoted
from ..settings.variants import identify
from . import objectives, scene_detector
from .apply import apply_softpag, attention_shape, selection_for
from .head_spec import HeadSelection, HeadSpecError
from .headhunter import Head, SearchResult, budget, search
from .softpag import SoftPAGConfig

OBJECTIVES = ("adherence", *objectives.STATISTICS, "reference")


def parse_seeds(text: str) -> list[int]:
    tokens = [t.strip() for t in text.replace(";", ",").split(",") if t.strip()]
    if not tokens or not all(is_index(t) for t in tokens):
        raise ValueError(f"seeds must be non-negative integers (ASCII digits) separated by ',', got {quoted(text)}")
    return [int(t) for t in tokens]


def objective_function(objective: str, caption: str, reference: torch.Tensor | None) -> Callable[[torch.Tensor], float]:
    if objective in objectives.STATISTICS:
        return objectives.STATISTICS[objective]
    if objective == "reference":
        if reference is None:
            raise ValueError("objective 'reference' needs the `reference` image input connected")
        return objectives.closeness(reference)
    if objective == "adherence":
        colour, shape = scene_detector.primary_object(caption)

        def adherence(images: torch.Tensor) -> float:
            return float(np.mean([scene_detector.adherence_score(img.float().cpu().numpy(), colour, shape)
                                  for img in images]))

        return adherence
    raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")


def candidate_heads(model: Any, layers: str) -> tuple[list[Head], HeadSelection, Any]:
    adapter = adapter_for(model.get_model_object("diffusion_model"), method="DiTAccelHeadHunter")
    try:
        if layers.strip() == "all":
            selection = HeadSelection.every_head(*attention_shape(model, adapter))
        else:
            selection = selection_for(model, adapter, layers)
    except HeadSpecError as e:
        raise HeadSpecError(str(e).replace("heads:", "layers:", 1)) from None
    return selection.triples(), selection, adapter


@dataclass(frozen=True)
class SearchSetup:
    positive: list
    negative: list
    latent: dict
    vae: Any
    seeds: list[int]
    steps: int
    cfg: float
    sampler_name: str
    scheduler: str
    strength: float
    scale: float


# guidance-distilled variants: they take the guidance strength as an input and are sampled at CFG 1 (real CFG
# doubles the cost and over-saturates); the others at a usual real CFG
DISTILLED = {"flux-dev": "Flux.1-dev is guidance-distilled (its guidance input; BFL's reference runs no CFG)",
             "flux-schnell": "Flux.1-schnell is timestep-distilled and runs without CFG",
             "hunyuan-video": "HunyuanVideo's released model is CFG-distilled (embedded guidance)"}
REAL_CFG = 5.0


def search_cfg(model: Any, cfg: float) -> tuple[float, str]:
    """The CFG the search samples at: `cfg`, or with 0 (auto) 1 on guidance-distilled variants, 5 elsewhere."""
    if cfg > 0:
        return cfg, ""
    dm = model.get_model_object("diffusion_model")
    variant = identify(adapter_for(dm, method="DiTAccelHeadHunter"), dm)
    if variant.key in DISTILLED:
        return 1.0, f"cfg auto: 1 ({DISTILLED[variant.key]})"
    return REAL_CFG, f"cfg auto: {REAL_CFG:g} ({variant.name} samples with real CFG)"


def run_search(model: Any, setup: SearchSetup, layers: str, rounds: int, top_k: int,
               score_images: Callable[[torch.Tensor], float]) -> tuple[SearchResult, str]:
    pool, selection, adapter = candidate_heads(model, layers)
    runs = _runs(len(pool), len(setup.seeds), rounds, top_k)
    logging.info("DiTAccelHeadHunter: %d candidate heads, %d rounds keeping %d each, %d seeds: %d sampling runs of "
                 "%d steps at CFG %g", len(pool), rounds, top_k, len(setup.seeds), runs, setup.steps, setup.cfg)

    def spec_of(heads: frozenset[Head]) -> str:
        return HeadSelection.from_heads(heads, selection.num_heads).to_spec(adapter)

    def score(heads: frozenset[Head]) -> float:
        m = model
        if heads:
            m = apply_softpag(model, SoftPAGConfig(spec_of(heads), setup.strength, setup.scale))
        return statistics.mean(
            score_images(sample_and_decode(m, setup.positive, setup.negative, setup.latent, setup.vae, seed,
                                           setup.steps, setup.cfg, setup.sampler_name, setup.scheduler))
            for seed in setup.seeds)

    result = search(pool, score, rounds, top_k)
    return result, spec_of(frozenset(result.chosen))


def planned_runs(model: Any, setup: SearchSetup, layers: str, rounds: int, top_k: int) -> int:
    """The sampling runs a search with these settings costs (seeds x (CFG-only + every scored head set))."""
    pool, _, _ = candidate_heads(model, layers)
    return _runs(len(pool), len(setup.seeds), rounds, top_k)


def _runs(pool_size: int, seeds: int, rounds: int, top_k: int) -> int:
    return seeds * (1 + budget(pool_size, rounds, top_k))


def summary(result: SearchResult, spec: str, objective: str, runs: int = 0, cfg_note: str = "") -> str:
    lines = [f"HeadHunter, objective {objective}: CFG only {result.baseline:.4f}; chosen heads: {spec}",
             f"{result.evaluations} scored head sets" + (f", {runs} sampling runs" if runs else "")
             + (f"; {cfg_note}" if cfg_note else "")]
    for i, r in enumerate(result.rounds):
        picked = ", ".join(f"{n.split('_')[0]}:{b}:{h}" for n, b, h in r.picked)
        lines.append(f"round {i + 1}: best {r.best:.4f} with {picked} (of {len(r.scores)} candidates)")
    return "\n".join(lines)


def plot(result: SearchResult, objective: str, width: int = 640, height: int = 360) -> torch.Tensor:
    """Every candidate's score per round (dots), the best (line) and CFG only (dashed): IMAGE (1, H, W, 3)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    left, right, top, bottom = 60, width - 20, 30, height - 40
    d.rectangle([left, top, right, bottom], outline="black")
    values = [result.baseline] + [s for r in result.rounds for s in r.scores.values()]
    lo, hi = min(values), max(values)
    hi = hi if hi > lo else lo + 1.0
    n = max(len(result.rounds), 1)

    def y(v: float) -> float:
        return bottom - (v - lo) / (hi - lo) * (bottom - top)

    def x(i: int) -> float:
        return left + (i + 0.5) / n * (right - left)

    for px in range(left, right, 12):
        d.line([px, y(result.baseline), px + 6, y(result.baseline)], fill=(200, 60, 60))
    for i, r in enumerate(result.rounds):
        for v in r.scores.values():
            d.ellipse([x(i) - 2, y(v) - 2, x(i) + 2, y(v) + 2], fill=(150, 150, 150))
    best = [(x(i), y(r.best)) for i, r in enumerate(result.rounds)]
    if len(best) > 1:
        d.line(best, fill=(40, 110, 200), width=2)
    for px, py in best:
        d.ellipse([px - 4, py - 4, px + 4, py + 4], fill=(40, 110, 200))
    d.text((left, 8), f"HeadHunter: {objective} per round (grey: candidates, blue: best, red dashes: CFG only)",
           fill="black")
    d.text((4, top), f"{hi:.3g}", fill="black")
    d.text((4, bottom - 10), f"{lo:.3g}", fill="black")
    d.text((left, bottom + 10), "round 1", fill="black")
    d.text((right - 60, bottom + 10), f"round {n}", fill="black")
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).unsqueeze(0)


def run_node(model: Any, positive: Any, negative: Any, latent: dict, vae: Any, seeds: str, layers: str, rounds: int,
           top_k: int, objective: str, caption: str, reference: torch.Tensor | None, steps: int, cfg: float,
           sampler_name: str, scheduler: str, strength: float, scale: float) -> tuple[tuple[Any, ...], str]:
    """What DiTAccelHeadHunter does: ((heads, plot), summary) of the search with the node's inputs."""
    score = objective_function(objective, caption, reference)
    cfg, cfg_note = search_cfg(model, cfg)
    setup = SearchSetup(positive, negative, latent, vae, parse_seeds(seeds), steps, cfg, sampler_name, scheduler,
                        strength, scale)
    runs = planned_runs(model, setup, layers, rounds, top_k)
    result, spec = run_search(model, setup, layers, rounds, top_k, score)
    return (spec, plot(result, objective)), summary(result, spec, objective, runs, cfg_note)

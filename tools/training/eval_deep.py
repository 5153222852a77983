"""Evaluate an embedded Wan model on the properties the deep model is trained for (held-out captions and seeds).

    .venv/bin/python -m tools.training.eval_deep [--model PATH] [--video-model PATH] [--parts ...] [--n N]

Parts (default all), each printed as a table row and written to OUT/eval_deep.json:
  structure     depth and the first block's share of a step's block parameters
  timing        one 28-step 256 px CFG image, in process: whole run (text encode, sampling, decode)
                and the share of it in the diffusion model. Not while training runs (it shares the CPU)
  adherence     the detector finds the captioned primary object (colour and shape) with CFG on: at
                256 px, 512 px and on the first frame of 17-frame 256 px clips; the detector's
                accuracy on ground-truth renders and its chance level beside it
  offgrammar    reworded held-out captions (tools/training/captions.py, another seed than training's)
                and the caption "a large green triangle in the top left corner": colour found, and
                the least pixel standard deviation (a flat image has ~1)
  extrapolation 50 euler steps: the relative error of order-0 and order-1 forecasts (in sigma, as the
                pack forecasts) of the block-stack output over gaps of 4-6 steps in the middle 80 %
  attention     17-frame 512 px clip (5,120 tokens), true attention at a middle step: the softmax
                mass the best 20 % of key blocks hold per query block (bench_attention's oracle), per block

Sampling is what the example workflows run (euler, simple, shift 3, CFG 5), in process through
ComfyUI's own loaders and sampler. `--model` defaults to the deep model's export in .train_deep/;
`--model assets` evaluates the shipped 6-block models (the image model for images, the video model
for clips) for the table's "before" column.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tools.runtime import dit_runtime, model_files
from tools.training import captions as caption_variants
from tools.training import detector, scenes

DEEP = dit_runtime.REPO / ".train_deep" / "ditaccel_wan21_deep.safetensors"
PARTS = ("structure", "timing", "adherence", "offgrammar", "extrapolation", "attention")
OFF_GRAMMAR_EXAMPLE = "a large green triangle in the top left corner"
FLAT_STD = 8.0  # pixel std (0-255) below which an image counts as flat


def _comfy():
    dit_runtime.in_process()
    import comfy.model_management
    import comfy.sample
    import comfy.samplers
    import comfy.sd
    import comfy.utils
    from comfy_extras.nodes_model_advanced import ModelSamplingSD3

    return comfy, ModelSamplingSD3


class Sampler:
    """The example workflows' graph, in process: loaders, CLIPTextEncode, KSampler, VAEDecode."""

    def __init__(self, dit_path: Path) -> None:
        comfy, sampling_sd3 = _comfy()
        self.comfy = comfy
        models = dit_runtime.layout().models
        self.model = sampling_sd3().patch(comfy.sd.load_diffusion_model(str(dit_path)), 3.0)[0]
        self.clip = comfy.sd.load_clip(ckpt_paths=[str(models / "text_encoders" / model_files.CLIP_L_FILE)],
                                       clip_type=comfy.sd.CLIPType.SD3)
        self.vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(str(models / "vae" / model_files.WAN_VAE_FILE)))
        self._empty = self.encode("")

    def encode(self, text: str) -> list:
        return [[self.clip.encode_from_tokens(self.clip.tokenize(text)), {}]]

    def latent(self, caption: str, seed: int, width: int, height: int, frames: int = 1, steps: int = 28,
               cfg: float = 5.0) -> torch.Tensor:
        comfy = self.comfy
        empty = torch.zeros(1, 16, 1 + (frames - 1) // 4, height // 8, width // 8)
        empty = comfy.sample.fix_empty_latent_channels(self.model, empty)
        noise = comfy.sample.prepare_noise(empty, seed)
        return comfy.sample.sample(self.model, noise, steps, cfg, "euler", "simple", self.encode(caption),
                                   self._empty, empty, denoise=1.0, seed=seed, disable_pbar=True)

    def images(self, samples: torch.Tensor) -> np.ndarray:
        """(frames, H, W, 3) uint8."""
        out = self.vae.decode(samples)
        out = out.reshape(-1, *out.shape[-3:])
        return (out.clamp(0, 1).numpy() * 255).round().astype(np.uint8)

    def sigmas(self, steps: int) -> torch.Tensor:
        ms = self.model.get_model_object("model_sampling")
        return self.comfy.samplers.calculate_sigmas(ms, "simple", steps)


def part_structure(sampler: Sampler) -> dict:
    dm = sampler.model.model.diffusion_model
    blocks = list(dm.blocks)
    per_block = sum(p.numel() for p in blocks[0].parameters())
    all_blocks = sum(p.numel() for b in blocks for p in b.parameters())
    return {"blocks": len(blocks), "first_block_share": per_block / all_blocks,
            "parameters_m": sum(p.numel() for p in dm.parameters()) / 1e6}


def part_timing(sampler: Sampler, repeats: int = 3) -> dict:
    in_model = {"s": 0.0}

    def wrapper(apply_model, args):
        start = time.perf_counter()
        out = apply_model(args["input"], args["timestep"], **args["c"])
        in_model["s"] += time.perf_counter() - start
        return out

    sampler.model.set_model_unet_function_wrapper(wrapper)
    caption = scenes.draw_scenes(2026, 1, "held_out")[0].caption
    sampler.images(sampler.latent(caption, 0, 256, 256))  # warm-up
    walls, shares = [], []
    for seed in range(1, repeats + 1):
        in_model["s"] = 0.0
        start = time.perf_counter()
        sampler.encode(caption)
        lat = sampler.latent(caption, seed, 256, 256)
        sampling = time.perf_counter() - start
        sampler.images(lat)
        walls.append(time.perf_counter() - start)
        shares.append(in_model["s"] / sampling)
    sampler.model.model_options.pop("model_function_wrapper", None)
    return {"image_seconds": statistics.median(walls), "transformer_share_of_sampling": statistics.median(shares)}


def _adherence(sampler: Sampler, items: list[tuple[scenes.Scene, str]], width: int, height: int, frames: int,
               seed0: int) -> dict:
    hits, colour, stds = [], [], []
    for i, (scene, caption) in enumerate(items):
        first = sampler.images(sampler.latent(caption, seed0 + i, width, height, frames))[0]
        hits.append(detector.adheres(first, scene))
        colour.append(detector.colour_adheres(first, scene))
        stds.append(float(first.std()))
    return {"adherence": float(np.mean(hits)), "colour": float(np.mean(colour)), "n": len(items),
            "min_std": min(stds), "flat": sum(x < FLAT_STD for x in stds), "last_std": stds[-1],
            "last_colour_found": bool(colour[-1])}


def part_adherence(image: Sampler, video: Sampler, n: int) -> dict:
    held = scenes.draw_scenes(2026, n, "held_out")
    items = [(s, s.caption) for s in held]
    v256 = detector.validate(size=256)
    v512 = detector.validate(size=512)
    out = {"detector_256": v256.accuracy, "detector_512": v512.accuracy, "chance": v256.chance,
           "uniform_chance": v256.uniform_chance}
    out["img256"] = _adherence(image, items, 256, 256, 1, 1000)
    half = items[: max(8, n // 2)]  # the larger sizes cost 4-5x a 256 px image
    out["img512"] = _adherence(image, half, 512, 512, 1, 1000)
    out["clip17_first_frame"] = _adherence(video, half, 256, 256, 17, 1000)
    return out


def part_offgrammar(sampler: Sampler, n: int) -> dict:
    rng = random.Random(9090)
    held = scenes.draw_scenes(3030, n, "held_out")
    items = [(s, caption_variants.vary(s, rng)) for s in held]
    example = scenes.Scene((scenes.SceneObject("green", "triangle", "large", "at the top left"),), "black")
    items.append((example, OFF_GRAMMAR_EXAMPLE))
    result = _adherence(sampler, items, 256, 256, 1, 2000)  # the example is the last item
    result["example_std"], result["example_colour_found"] = result.pop("last_std"), result.pop("last_colour_found")
    return result


def _stack_outputs(sampler: Sampler, caption: str, seed: int, steps: int) -> list[torch.Tensor]:
    """The last block's output (cond entry) at every step, in call order."""
    dm = sampler.model.model.diffusion_model
    found: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        found.append(output[:1].detach().float().clone())

    handle = dm.blocks[-1].register_forward_hook(hook)
    try:
        sampler.latent(caption, seed, 256, 256, steps=steps)
    finally:
        handle.remove()
    if len(found) != steps:  # cond and uncond ran apart: keep the cond calls (ComfyUI runs cond first)
        found = found[::len(found) // steps]
    return found


def part_extrapolation(sampler: Sampler, cases: int, steps: int = 50, gaps: tuple[int, ...] = (4, 5, 6)) -> dict:
    sig = sampler.sigmas(steps).tolist()
    lo, hi = round(0.1 * steps), round(0.9 * steps)
    err0, err1, wins = [], [], []
    for i, scene in enumerate(scenes.draw_scenes(4040, cases, "held_out")):
        feats = _stack_outputs(sampler, scene.caption, 3000 + i, steps)
        for g in gaps:
            for s in range(lo + g, hi - g + 1):
                prev, now, true = feats[s - g], feats[s], feats[s + g]
                slope = (now - prev) / (sig[s] - sig[s - g])
                e0 = float((now - true).norm() / true.norm())
                e1 = float((now + slope * (sig[s + g] - sig[s]) - true).norm() / true.norm())
                err0.append(e0)
                err1.append(e1)
                wins.append(e1 < e0)
    return {"order0": statistics.mean(err0), "order1": statistics.mean(err1), "order1_wins": float(np.mean(wins)),
            "forecasts": len(err0)}


def part_attention(dit_path: Path, seed: int = 7) -> dict:
    import safetensors
    from comfyui_ditaccel.accel_core.attention.layout import TileLayout

    from tools.benchmarks import bench_attention, capture_qkv

    with safetensors.safe_open(str(dit_path), "pt") as f:
        depth = 1 + max(int(k.split(".")[1]) for k in f.keys() if k.startswith("blocks."))
    data = capture_qkv.capture(512, tuple(range(depth)), 10, 28, seed, frames=17, dit_path=dit_path)
    layout = TileLayout(tuple(data["grid"]), 16, 8)
    mass = {b: bench_attention.oracle_mass(t["q"], t["k"], layout, 0.2) for b, t in sorted(data["blocks"].items())}
    middle = [m for b, m in mass.items() if depth // 4 <= b < depth - depth // 4]
    return {"tokens": math.prod(data["grid"]), "per_block": mass, "middle_mean": statistics.mean(middle),
            "middle_min": min(middle)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(DEEP), help="a DiT file, or 'assets' for the shipped models")
    ap.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    ap.add_argument("--n", type=int, default=60, help="held-out captions for adherence at 256 px (half at the "
                                                      "larger sizes and off the grammar)")
    ap.add_argument("--cases", type=int, default=4, help="held-out cases for extrapolation")
    ap.add_argument("--out", type=Path, default=dit_runtime.REPO / "out" / "eval_deep")
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    assets = a.model == "assets"
    models = dit_runtime.layout().models / "diffusion_models"
    image_path = models / model_files.WAN_DIT_FILE if assets else Path(a.model)
    video_path = models / model_files.WAN_VIDEO_DIT_FILE if assets else Path(a.model)
    image = Sampler(image_path)
    video = Sampler(video_path) if video_path != image_path else image
    result: dict = {"model": str(image_path), "video_model": str(video_path)}
    for part in a.parts:
        start = time.time()
        if part == "structure":
            result[part] = part_structure(image)
        elif part == "timing":
            result[part] = part_timing(image)
        elif part == "adherence":
            result[part] = part_adherence(image, video, a.n)
        elif part == "offgrammar":
            result[part] = part_offgrammar(image, max(8, a.n // 2))
        elif part == "extrapolation":
            result[part] = part_extrapolation(image, a.cases)
        elif part == "attention":
            result[part] = part_attention(video_path)
        print(f"[{part}] ({time.time() - start:.0f} s) {json.dumps(result[part])}", flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    name = "eval_assets.json" if assets else "eval_deep.json"
    (a.out / name).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {a.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

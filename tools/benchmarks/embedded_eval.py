"""Measure the embedded model on the real ComfyUI graph: prompt adherence, caption grid, timing.

    .venv/bin/python -m tools.benchmarks.embedded_eval [--captions 60] [--out out/eval]

Prints (and writes to OUT/embedded_eval.json):
  - the detector's accuracy on ground-truth renders of held-out captions, and its chance level;
  - prompt adherence: share of samples (held-out captions, seeds 1000+, CFG on, the baseline
    graph) in which the detector finds the captioned primary object's colour and shape;
  - how different the images of different captions are for one seed, and that they are not flat;
  - the share of the KSampler run spent in the diffusion model (DiTAccelRecord + DiTAccelReport)
    and the whole prompt's wall time, warm (loaders cached, as in normal ComfyUI use).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import statistics
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from tools.runtime import dit_runtime
from tools.runtime.comfy_client import ComfyClient, decode_png
from tools.training import detector, scenes

BASELINE = dit_runtime.REPO / "workflows" / "api" / "baseline.json"
POSITIVE, NEGATIVE, SAMPLER, SAVE = "3", "4", "6", "9"


def baseline_prompt() -> dict:
    return json.loads(BASELINE.read_text())


def with_caption(prompt: dict, caption: str, seed: int) -> dict:
    p = copy.deepcopy(prompt)
    p[POSITIVE]["inputs"]["text"] = caption
    p[SAMPLER]["inputs"]["seed"] = seed
    return p


def render_captions(client: ComfyClient, captions: list[str], seed: int) -> list[np.ndarray]:
    base = baseline_prompt()
    return [decode_png(client.run(with_caption(base, c, seed)).images[0]) for c in captions]


def caption_grid(images: list[np.ndarray], captions: list[str], cols: int = 4) -> Image.Image:
    size = images[0].shape[0]
    label_h = 46
    rows = -(-len(images) // cols)
    grid = Image.new("RGB", (cols * size, rows * (size + label_h)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for i, (img, cap) in enumerate(zip(images, captions, strict=True)):
        x, y = (i % cols) * size, (i // cols) * (size + label_h)
        grid.paste(Image.fromarray((img * 255).round().astype(np.uint8)), (x, y))
        words, lines, line = cap.replace(", on a", " on a").split(), [], ""
        for w in words:
            if len(line) + len(w) > 42:
                lines.append(line)
                line = ""
            line = f"{line} {w}".strip()
        lines.append(line)
        draw.multiline_text((x + 3, y + size + 2), "\n".join(lines[:3]), fill=(0, 0, 0), spacing=1)
    return grid


def timing(client: ComfyClient) -> dict:
    """Transformer share of the KSampler run and whole-prompt wall time, warm, baseline graph."""
    prompt = baseline_prompt()
    sampler_model = prompt[SAMPLER]["inputs"]["model"]
    prompt["40"] = {"class_type": "DiTAccelRecord", "inputs": {"model": sampler_model}}
    prompt[SAMPLER]["inputs"]["model"] = ["40", 0]
    prompt["50"] = {"class_type": "DiTAccelReport", "inputs": {"model": ["40", 0], "latent": [SAMPLER, 0]}}
    client.run(prompt)  # warm-up: models load (and stay cached: this server runs without --cache-none)
    shares, walls = [], []
    for seed in (1, 2, 3):  # a new seed each time, so ComfyUI re-runs the sampler, not the loaders
        prompt[SAMPLER]["inputs"]["seed"] = seed
        result = client.run(prompt)
        text = result.node_output("50")["text"][0]
        m = re.search(r"sampling ([\d.]+) s, transformer ([\d.]+) s", text)
        shares.append(float(m.group(2)) / float(m.group(1)))
        walls.append(result.seconds)
    return {"transformer_share": statistics.median(shares), "prompt_seconds": statistics.median(walls)}


def evaluate(n_captions: int, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    v = detector.validate()
    held_out = scenes.draw_scenes(2026, n_captions, "held_out")
    with dit_runtime.running_server(cache_none=False) as url:
        client = ComfyClient(url, timeout=600)
        t = timing(client)
        hits, colour_hits = [], []
        base = baseline_prompt()
        for i, scene in enumerate(held_out):
            image = decode_png(client.run(with_caption(base, scene.caption, 1000 + i)).images[0])
            hits.append(detector.adheres(image, scene))
            colour_hits.append(detector.colour_adheres(image, scene))
        grid_scenes = scenes.draw_scenes(77, 8, "held_out", max_objects=2)
        grid_caps = [s.caption for s in grid_scenes]
        grid_imgs = render_captions(client, grid_caps, seed=0)
    caption_grid(grid_imgs, grid_caps).save(out / "caption_grid.png")
    pair_mad = [float(np.abs(a - b).mean()) for i, a in enumerate(grid_imgs) for b in grid_imgs[i + 1:]]
    result = {
        "detector_ground_truth_accuracy": v.accuracy,
        "detector_chance_other_caption": v.chance,
        "detector_uniform_chance": v.uniform_chance,
        "adherence_held_out": sum(hits) / len(hits),
        "colour_adherence_held_out": sum(colour_hits) / len(colour_hits),
        "adherence_samples": len(hits),
        "grid_min_pairwise_mean_abs_diff": min(pair_mad),
        "grid_min_image_std": min(float(img.std()) for img in grid_imgs),
        **t,
    }
    (out / "embedded_eval.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--captions", type=int, default=60)
    parser.add_argument("--out", type=Path, default=dit_runtime.REPO / "out" / "eval")
    args = parser.parse_args()
    r = evaluate(args.captions, args.out)
    print(f"detector on ground truth (held-out captions): {100 * r['detector_ground_truth_accuracy']:.1f} %, "
          f"chance {100 * r['detector_chance_other_caption']:.1f} % (another caption's object), "
          f"{100 * r['detector_uniform_chance']:.1f} % (uniform)")
    print(f"prompt adherence, {r['adherence_samples']} held-out captions, CFG on: colour and shape "
          f"{100 * r['adherence_held_out']:.1f} %, colour alone {100 * r['colour_adherence_held_out']:.1f} %")
    print(f"caption grid (one seed): min pairwise mean |diff| {r['grid_min_pairwise_mean_abs_diff']:.3f}, "
          f"min image std {r['grid_min_image_std']:.3f}; wrote {args.out / 'caption_grid.png'}")
    print(f"KSampler run in the diffusion model: {100 * r['transformer_share']:.1f} %; "
          f"whole 28-step prompt {r['prompt_seconds']:.2f} s (warm, 2-core CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())


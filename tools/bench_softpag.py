"""Benchmark SoftPAG with searched heads against layer-level PAG and plain CFG on the embedded model.

    .venv/bin/python tools/bench_softpag.py [--search-cases 4] [--eval-cases 24] [--rounds 2] [--top-k 2]

1. HeadHunter (accel_core/guidance/headhunter.py) on `--search-cases` held-out caption/seed
   pairs (the "tune" draw), objective: the detector finds the caption's first <colour> <shape>
   (prompt adherence), every head of every block a candidate, SoftPAG u = 1 during the search.
2. On other held-out captions and seeds: adherence of CFG only, of layer-level PAG (every head
   of the blocks the searched heads sit in) and of SoftPAG on the searched heads, at the same
   u and w; model calls per step (the guidance's extra pass); an image grid (rows: method,
   columns: seed).

Writes OUT/bench_softpag.md, OUT/grid.png, OUT/search.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))

import detector
import dit_runtime
import pack  # noqa: F401  (registers comfyui_ditaccel)
import scenes
from comfy_client import ComfyClient, decode_png
from comfyui_ditaccel.accel_core.adapters import WAN21
from comfyui_ditaccel.accel_core.guidance.head_spec import HeadSelection
from comfyui_ditaccel.accel_core.guidance.headhunter import Head, search

BASELINE = dit_runtime.REPO / "workflows" / "api" / "baseline.json"
POSITIVE, SAMPLER, SHIFT, GUIDE, RECORD, REPORT = "3", "6", "10", "40", "41", "50"
BLOCKS, HEADS = 6, 2  # the embedded model


def spec_of(heads: frozenset[Head] | list[Head]) -> str:
    return HeadSelection.from_heads(heads, HEADS).to_spec(WAN21)


def prompt_for(base: dict, caption: str, seed: int, heads: str | None, u: float, w: float) -> dict:
    p = copy.deepcopy(base)
    p[POSITIVE]["inputs"]["text"] = caption
    p[SAMPLER]["inputs"]["seed"] = seed
    model = [SHIFT, 0]
    if heads:
        p[GUIDE] = {"class_type": "DiTAccelSoftPAG", "inputs": {"model": model, "heads": heads, "strength": u,
                                                                "scale": w}}
        model = [GUIDE, 0]
    p[RECORD] = {"class_type": "DiTAccelRecord", "inputs": {"model": model}}
    p[SAMPLER]["inputs"]["model"] = [RECORD, 0]
    p[REPORT] = {"class_type": "DiTAccelReport", "inputs": {"model": [RECORD, 0], "latent": [SAMPLER, 0]}}
    return p


def run(client: ComfyClient, base: dict, scene: scenes.Scene, seed: int, heads: str | None, u: float,
        w: float) -> tuple[np.ndarray, bool, float]:
    result = client.run(prompt_for(base, scene.caption, seed, heads, u, w))
    image = decode_png(result.images[0])
    text = result.node_output(REPORT)["text"][0]
    m = re.search(r"(\d+)/(\d+) steps, (\d+) model calls", text)
    return image, detector.adheres(image, scene), int(m.group(3)) / int(m.group(2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--search-cases", type=int, default=4)
    parser.add_argument("--eval-cases", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--strength", type=float, default=1.0)
    parser.add_argument("--scale", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=dit_runtime.REPO / "out" / "bench_softpag")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    base = json.loads(BASELINE.read_text())
    tune = [(s, 700 + i) for i, s in enumerate(scenes.draw_scenes(31, args.search_cases, "held_out"))]
    tune_caps = {s.caption for s, _ in tune}
    held = [s for s in scenes.draw_scenes(4242, 4 * args.eval_cases, "held_out") if s.caption not in tune_caps]
    evals = [(s, 9100 + i) for i, s in enumerate(held[:args.eval_cases])]
    u, w = args.strength, args.scale
    start = time.time()
    with dit_runtime.running_server(cache_none=False) as url:
        client = ComfyClient(url)

        def score(heads: frozenset[Head]) -> float:
            spec = spec_of(heads) if heads else None
            return float(np.mean([run(client, base, s, seed, spec, u, w)[1] for s, seed in tune]))

        pool = [("double_block", b, h) for b in range(BLOCKS) for h in range(HEADS)]
        result = search(pool, score, args.rounds, args.top_k,
                        on_round=lambda r, rec: print(f"[search] round {r + 1}: {rec.picked} -> {rec.best:.3f}",
                                                      flush=True))
        searched = spec_of(result.chosen)
        layer_level = "; ".join(f"{b}:all" for b in sorted({b for _, b, _ in result.chosen}))
        methods = [("CFG only", None), (f"layer-level PAG ({layer_level})", layer_level),
                   (f"SoftPAG searched ({searched})", searched)]
        rows, grid = [], []
        for name, heads in methods:
            outs = [run(client, base, s, seed, heads, u, w) for s, seed in evals]
            rows.append((name, float(np.mean([o[1] for o in outs])), float(np.mean([o[2] for o in outs]))))
            grid.append([o[0] for o in outs[:6]])
            print(f"[eval] {name}: adherence {100 * rows[-1][1]:.1f} %", flush=True)
    lines = [f"HeadHunter search: {len(tune)} caption/seed pairs, {result.evaluations} head sets scored, "
             f"u = {u:g}, w = {w:g}; CFG-only search objective {result.baseline:.3f}", "",
             f"| method ({len(evals)} held-out captions and seeds) | prompt adherence | model calls per step |",
             "|---|---:|---:|"]
    lines += [f"| {n} | {100 * a:.1f} % | {c:.2f} |" for n, a, c in rows]
    text = "\n".join(lines)
    print(text)
    (args.out / "bench_softpag.md").write_text(text + "\n")
    (args.out / "search.json").write_text(json.dumps({"chosen": searched, "baseline": result.baseline,
                                                      "rounds": [{"picked": r.picked, "best": r.best}
                                                                 for r in result.rounds]}, indent=1))
    size = grid[0][0].shape[0]
    canvas = Image.new("RGB", (200 + size * len(grid[0]), size * len(grid)), "white")
    d = ImageDraw.Draw(canvas)
    for r, (row, (name, _, _)) in enumerate(zip(grid, rows, strict=True)):
        d.text((6, r * size + size // 2), name[:30], fill="black")
        for c, img in enumerate(row):
            canvas.paste(Image.fromarray((img * 255).astype(np.uint8)), (200 + c * size, r * size))
    canvas.save(args.out / "grid.png")
    print(f"[bench] {time.time() - start:.0f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

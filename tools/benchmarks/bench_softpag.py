"""Benchmark SoftPAG with searched heads against layer-level PAG and plain CFG on the embedded model.

    .venv/bin/python -m tools.benchmarks.bench_softpag [--search-cases 8] [--eval-cases 24] [--per-caption 2]
                                            [--rounds 2] [--top-k 1] [--strength 1] [--scale 1]

1. HeadHunter (accel_core/guidance/headhunter.py) on `--search-cases` held-out captions (the
   "tune" draw) x `--per-caption` samples each (one seed, a latent batch), objective: graded
   prompt adherence (scene_detector.adherence_score: how clearly the detector finds the
   caption's first <colour> <shape>), every head of every block a candidate, SoftPAG u = 1.
2. On other held-out captions and seeds: for CFG only, layer-level PAG (every head of the
   blocks the searched heads sit in) and SoftPAG on the searched heads, at the same u and w:
   adherence as hit rate (the object found) and graded score, each method's graded score minus
   CFG's on the same samples with its standard error; model calls per step (the guidance's
   extra pass); an image grid (rows: method, columns: sample).

Writes OUT/bench_softpag.md, OUT/grid.png, OUT/search.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from comfyui_ditaccel.accel_core.adapters import WAN21
from comfyui_ditaccel.accel_core.guidance.head_spec import HeadSelection, parse, resolve
from comfyui_ditaccel.accel_core.guidance.headhunter import Head, SearchResult, search
from comfyui_ditaccel.accel_core.guidance.scene_detector import find_objects, graded_adherence, has_object
from PIL import Image, ImageDraw

from tools.runtime import dit_runtime
from tools.runtime.comfy_client import ComfyClient, decode_png
from tools.training import scenes

BASELINE = dit_runtime.REPO / "workflows" / "api" / "baseline.json"
POSITIVE, LATENT, SAMPLER, SHIFT, GUIDE, RECORD, REPORT = "3", "5", "6", "10", "40", "41", "50"
BLOCKS, HEADS = 6, 2  # the embedded model


def spec_of(heads: frozenset[Head] | list[Head]) -> str:
    return HeadSelection.from_heads(heads, HEADS).to_spec(WAN21)


def prompt_for(base: dict, caption: str, seed: int, heads: str | None, u: float, w: float, batch: int) -> dict:
    p = copy.deepcopy(base)
    p[POSITIVE]["inputs"]["text"] = caption
    p[SAMPLER]["inputs"]["seed"] = seed
    p[LATENT]["inputs"]["batch_size"] = batch
    model = [SHIFT, 0]
    if heads:
        p[GUIDE] = {"class_type": "DiTAccelSoftPAG", "inputs": {"model": model, "heads": heads, "strength": u,
                                                                "scale": w}}
        model = [GUIDE, 0]
    p[RECORD] = {"class_type": "DiTAccelRecord", "inputs": {"model": model}}
    p[SAMPLER]["inputs"]["model"] = [RECORD, 0]
    p[REPORT] = {"class_type": "DiTAccelReport", "inputs": {"model": [RECORD, 0], "latent": [SAMPLER, 0]}}
    return p


@dataclass(frozen=True)
class Sample:
    image: np.ndarray
    hit: bool
    graded: float


def run(client: ComfyClient, base: dict, scene: scenes.Scene, seed: int, heads: str | None, u: float, w: float,
        batch: int) -> tuple[list[Sample], float]:
    """The batch's samples scored for the scene's primary object, and model calls per step."""
    result = client.run(prompt_for(base, scene.caption, seed, heads, u, w, batch))
    text = result.node_output(REPORT)["text"][0]
    m = re.search(r"(\d+)/(\d+) steps, (\d+) model calls", text)
    colour, shape = scene.primary.colour, scene.primary.shape
    samples = []
    for png in result.images:
        image = decode_png(png)
        found = find_objects(image)  # once per image: both measures read the same regions
        samples.append(Sample(image, has_object(found, colour, shape), graded_adherence(found, colour, shape)))
    return samples, int(m.group(3)) / int(m.group(2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--search-cases", type=int, default=8)
    parser.add_argument("--eval-cases", type=int, default=24)
    parser.add_argument("--per-caption", type=int, default=2, help="samples per caption (a latent batch)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--top-k", type=int, default=1)
    parser.add_argument("--strength", type=float, default=1.0)
    # w = 1, not the paper's 3: on top of CFG 5, w = 3 left the guided rows below CFG on this model
    # (docs/results/guidance.md)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--heads", default="", help="skip the search: evaluate these heads (SoftPAG grammar)")
    parser.add_argument("--skip-cases", type=int, default=0, help="evaluate on the held-out captions after these")
    parser.add_argument("--out", type=Path, default=dit_runtime.REPO / "out" / "bench_softpag")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    base = json.loads(BASELINE.read_text())
    tune = [(s, 700 + i) for i, s in enumerate(scenes.draw_scenes(31, args.search_cases, "held_out"))]
    tune_caps = {s.caption for s, _ in tune}
    last = args.skip_cases + args.eval_cases
    held = [s for s in scenes.draw_scenes(4242, 4 * last, "held_out") if s.caption not in tune_caps]
    evals = [(s, 9100 + i) for i, s in enumerate(held[:last])][args.skip_cases:]
    u, w, batch = args.strength, args.scale, args.per_caption
    start = time.time()
    with dit_runtime.running_server(cache_none=False) as url:
        client = ComfyClient(url)

        def samples(cases: list, heads: str | None) -> tuple[list[Sample], float]:
            outs = [run(client, base, s, seed, heads, u, w, batch) for s, seed in cases]
            return [x for o in outs for x in o[0]], float(np.mean([o[1] for o in outs]))

        def score(heads: frozenset[Head]) -> float:
            return float(np.mean([x.graded for x in samples(tune, spec_of(heads) if heads else None)[0]]))

        if args.heads:
            given = resolve(parse(args.heads), WAN21, {"double_block": BLOCKS}, HEADS)
            result = SearchResult(baseline=float("nan"), chosen=given.triples())
        else:
            pool = HeadSelection.every_head({"double_block": BLOCKS}, HEADS).triples()
            result = search(pool, score, args.rounds, args.top_k,
                            on_round=lambda r, rec: print(f"[search] round {r + 1}: {rec.picked} -> {rec.best:.4f}",
                                                          flush=True))
            print(f"[search] CFG only {result.baseline:.4f} ({time.time() - start:.0f} s)", flush=True)
        searched = spec_of(result.chosen)
        layer_level = "; ".join(f"{b}:all" for b in sorted({b for _, b, _ in result.chosen}))
        methods = [("CFG only", None), (f"layer-level PAG ({layer_level})", layer_level),
                   (f"SoftPAG searched ({searched})", searched)]
        evaluated = [(name, *samples(evals, heads)) for name, heads in methods]
    cfg_graded = np.array([x.graded for x in evaluated[0][1]])
    head = (f"heads given ({args.heads}), no search; u = {u:g}, w = {w:g} (on top of CFG 5)" if args.heads else
            f"HeadHunter search: {len(tune)} captions x {batch} samples, {result.evaluations} head sets scored, "
            f"u = {u:g}, w = {w:g} (on top of CFG 5); search objective (graded adherence): CFG only "
            f"{result.baseline:.3f}, " + ", ".join(f"round {i + 1} {r.best:.3f}" for i, r in enumerate(result.rounds)))
    lines = [head, "",
             f"| method ({len(evals)} held-out captions x {batch} samples) | adherence: object found | "
             "graded adherence | graded minus CFG's (same samples) | model calls per step |",
             "|---|---:|---:|---:|---:|"]
    for name, outs, calls in evaluated:
        graded = np.array([x.graded for x in outs])
        diff = graded - cfg_graded
        delta = "-" if name == "CFG only" else f"{diff.mean():+.3f} ± {diff.std(ddof=1) / np.sqrt(len(diff)):.3f}"
        lines.append(f"| {name} | {100 * np.mean([x.hit for x in outs]):.1f} % | {graded.mean():.3f} | {delta} "
                     f"| {calls:.2f} |")
    text = "\n".join(lines)
    print(text)
    (args.out / "bench_softpag.md").write_text(text + "\n")
    (args.out / "search.json").write_text(json.dumps({"chosen": searched, "baseline": result.baseline,
                                                      "rounds": [{"picked": r.picked, "best": r.best,
                                                                  "scores": {str(k): v for k, v in r.scores.items()}}
                                                                 for r in result.rounds]}, indent=1))
    size = evaluated[0][1][0].image.shape[0]
    columns = min(6, len(evaluated[0][1]))
    canvas = Image.new("RGB", (200 + size * columns, size * len(evaluated)), "white")
    d = ImageDraw.Draw(canvas)
    for r, (name, outs, _) in enumerate(evaluated):
        d.text((6, r * size + size // 2), name[:30], fill="black")
        for c, x in enumerate(outs[:columns]):
            canvas.paste(Image.fromarray((x.image * 255).astype(np.uint8)), (200 + c * size, r * size))
    canvas.save(args.out / "grid.png")
    print(f"[bench] {time.time() - start:.0f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

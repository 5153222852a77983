"""Benchmark the spatial nodes (RAS, JiT) against the baseline, their fair controls and EasyCache.

    .venv/bin/python -m tools.benchmarks.bench_spatial [--steps 28] [--cases 4] [--reps 3] [--out out/bench_spatial]
    .venv/bin/python -m tools.benchmarks.bench_spatial --sweep --split tune   # the grid the presets were picked from

Same server, alternation, held-out captions and seeds, and columns as tools/benchmarks/bench_caching.py
(speed-up of the whole prompt, transformer FLOPs run, PSNR / SSIM of the decoded image against
the baseline's, the fair control: plain sampling with as many full-token model evaluations).
Writes OUT/table_*.md, OUT/results_*.json and OUT/speed_vs_psnr_*.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from tools.benchmarks import bench_caching as bc
from tools.runtime import dit_runtime
from tools.runtime.comfy_client import ComfyClient

Config = bc.Config
JIT_ONLY = "--jit-only" in sys.argv


def configs(sweep: bool) -> list[Config]:
    out = [Config("baseline", "baseline")]
    if sweep:
        grid = [(r, 0.0, w, d, 1) for r in (0.3, 0.2, 0.15) for w in (4, 6) for d in (0, 1, 2)]
        grid += [(r, h, 4, 2, 0) for r in (0.3, 0.2) for h in (0.0, 1.0)]  # the paper's schedule, both directions
        grid = [] if JIT_ONLY else grid
        for ratio, high, warmup, dense, final in grid:
            out.append(Config(f"RAS r{ratio:g} h{high:g} w{warmup} d{dense} f{final}", "ours", "DiTAccelRAS",
                              {"preset": "custom", "sample_ratio": ratio, "high_ratio": high,
                               "warmup_steps": warmup, "dense_steps": dense, "final_dense_steps": final}))
        jit_grid = [("0.4, 0.65, 1.0", "0.35, 0.62, 1.0", 0, False), ("0.4, 0.65, 1.0", "0.35, 0.62, 1.0", 4, True),
                    ("0.5, 0.75, 1.0", "0.25, 0.5, 1.0", 4, True), ("0.85, 1.0", "0.2, 1.0", 3, True),
                    ("0.8, 1.0", "0.3, 1.0", 3, True), ("0.6, 0.85, 1.0", "0.2, 0.4, 1.0", 3, True),
                    ("0.75, 0.9, 1.0", "0.15, 0.35, 1.0", 3, True), ("0.6, 0.85, 1.0", "0.2, 0.4, 1.0", 2, True)]
        for stages, densities, warmup, context in jit_grid:
            out.append(Config(f"JiT s{stages.replace(' ', '')} d{densities.replace(' ', '')} w{warmup}"
                              f"{' ctx' if context else ''}", "ours", "DiTAccelJiT",
                              {"preset": "custom", "stages": stages, "densities": densities, "warmup_steps": warmup,
                               "full_context": context}))
        return out
    for preset in ("quality", "balanced", "fast"):
        out.append(Config(f"RAS {preset}", "ours", "DiTAccelRAS", {"preset": preset}))
    out.append(Config("RAS balanced, code's direction (high_ratio 1)", "ours", "DiTAccelRAS",
                      {"preset": "custom", **_balanced_ras(), "high_ratio": 1.0}))
    for preset in ("quality", "balanced", "fast"):
        out.append(Config(f"JiT {preset}", "ours", "DiTAccelJiT", {"preset": preset}))
    out.append(Config("JiT paper settings (no warm-up, anchors-only attention)", "ours", "DiTAccelJiT",
                      {"preset": "custom", **_paper_jit()}))
    for steps in (18, 11):  # the paper's 4x / 7x step counts, against the 28-step baseline
        out.append(Config(f"JiT balanced at {steps} steps", "ours", "DiTAccelJiT", {"preset": "balanced"},
                          steps=steps))
    out.append(Config("RAS balanced + TaylorSeer balanced", "ours", "DiTAccelRAS", {"preset": "balanced"},
                      then=(("DiTAccelTaylorSeer", {"preset": "balanced"}),)))
    out.append(Config("TaylorSeer balanced", "ours", "DiTAccelTaylorSeer", {"preset": "balanced"}))
    for thr in (0.05, 0.1):
        out.append(Config(f"EasyCache {thr:g}", "peer", "EasyCache",
                          {"reuse_threshold": thr, "start_percent": 0.15, "end_percent": 0.95, "verbose": False}))
    return out


def _balanced_ras() -> dict:
    from comfyui_ditaccel.accel_core.settings import records
    from comfyui_ditaccel.accel_core.spatial.ras import RASConfig

    c = RASConfig(**records.embedded_balanced(records.RAS))
    return {"sample_ratio": c.sample_ratio, "warmup_steps": c.warmup_steps, "dense_steps": c.dense_steps,
            "final_dense_steps": c.final_dense_steps, "starvation_scale": c.starvation_scale, "metric": c.metric}


def _paper_jit() -> dict:
    from comfyui_ditaccel.accel_core.settings import records
    from comfyui_ditaccel.accel_core.spatial.jit import JiTConfig

    c = JiTConfig(**records.JIT_REAL["balanced"].values)

    return {"stages": ", ".join(f"{v:g}" for v in c.stages), "densities": ", ".join(f"{v:g}" for v in c.densities),
            "relax": c.relax, "interpolate": c.interpolate, "warmup_steps": c.warmup_steps,
            "full_context": c.full_context}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=28)
    parser.add_argument("--cases", type=int, default=4, help="caption/seed pairs")
    parser.add_argument("--reps", type=int, default=3, help="alternated rounds per case (timing median)")
    parser.add_argument("--split", choices=list(bc.SPLITS), default="measure")
    parser.add_argument("--sweep", action="store_true", help="the custom grid the presets were picked from")
    parser.add_argument("--no-controls", action="store_true")
    parser.add_argument("--jit-only", action="store_true", help="sweep: JiT's grid only")
    parser.add_argument("--out", type=Path, default=dit_runtime.REPO / "out" / "bench_spatial")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    memory = bc.Memory()
    start = time.time()
    with dit_runtime.running_server(cache_none=False, started=lambda p: setattr(memory, "pid", p.pid)) as url:
        rows = bc.benchmark(ComfyClient(url), memory, configs(args.sweep), args.steps, args.cases, args.reps,
                            args.split, controls=not args.no_controls, images=args.out / "images")
    text = bc.table(rows, args.steps)
    notes = bc.checks(rows)
    print(text)
    print("\n".join(notes))
    tag = f"{'sweep' if args.sweep else 'presets'}_{args.split}_{args.steps}"
    (args.out / f"table_{tag}.md").write_text(text + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    (args.out / f"results_{tag}.json").write_text(json.dumps([asdict(r) for r in rows], indent=1))
    bc.plot(rows, args.out / f"speed_vs_psnr_{tag}.png", args.steps)
    print(f"[bench] {time.time() - start:.0f} s; wrote {args.out}/*_{tag}.*")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Quality sweep of the caching methods' settings, in process (no server, no timing).

    .venv/bin/python -m tools.benchmarks.sweep_caching [--steps 28] [--cases 8] [--split tune]
        [--grid taylorseer] [--only RE]

The embedded model's baseline graph run through ComfyUI's own nodes in this process (loaders,
CLIPTextEncode, ModelSamplingSD3 shift 3, KSampler euler CFG 5 at 256 px, VAEDecode): for each
setting, the mean and the lowest PSNR of the decoded image against the full-compute image of the
same caption and seed, and the share of transformer FLOPs run. The presets were picked from
these tables (on the "tune" split); the speed of the picks is measured by tools/benchmarks/bench_caching.py,
which runs the real server and alternates runs. Grids:

  taylorseer   order 0 at intervals x warm-ups, the adaptive schedule at thresholds x longest gaps,
               and orders 1 / 2 per granularity
  cg_taylor    threshold x max_skips x warm-up x order
"""

from __future__ import annotations

import argparse
import logging
import re
import statistics
import sys
from collections.abc import Callable
from typing import Any

from tools.runtime import dit_runtime

dit_runtime.in_process()

import torch  # noqa: E402

from tools.benchmarks import bench_caching  # noqa: E402
from tools.runtime import model_files  # noqa: E402

Factory = Callable[[Any], Any]


def grid(name: str, steps: int) -> dict[str, Factory]:
    from comfyui_ditaccel.accel_core.caching.apply import apply_cg_taylor, apply_taylorseer
    from comfyui_ditaccel.accel_core.caching.first_block import CGTaylorConfig
    from comfyui_ditaccel.accel_core.caching.taylorseer import TaylorSeerConfig

    out: dict[str, Factory] = {}
    if name == "taylorseer":
        for warmup in (2, 3, 4, 5, 6):
            for interval in (2, 3, 4, 5, 6, 8, 11, 12, 24):
                c = TaylorSeerConfig(interval=interval, order=0, warmup_steps=warmup, reference_steps=28)
                full = len(c.at_steps(steps).schedule.full_steps(steps))
                out[f"TaylorSeer i{interval} w{warmup} o0 ({full} full)"] = lambda m, c=c: apply_taylorseer(m, c)
        adaptive = ((0.03, 6), (0.05, 6), (0.07, 8), (0.1, 8), (0.2, 12), (0.3, 10), (0.5, 14), (1.0, 14))
        for threshold, interval in adaptive:
            c = TaylorSeerConfig(interval=interval, order=0, warmup_steps=2, threshold=threshold, reference_steps=28)
            out[f"TaylorSeer t{threshold:g} i{interval} w2 o0 (adaptive)"] = lambda m, c=c: apply_taylorseer(m, c)
        for granularity in ("output", "blocks"):
            for order in (1, 2):
                c = TaylorSeerConfig(interval=3, order=order, warmup_steps=2, granularity=granularity,
                                     reference_steps=28)
                out[f"TaylorSeer i3 w2 o{order} {granularity}"] = lambda m, c=c: apply_taylorseer(m, c)
    elif name == "cg_taylor":
        for warmup in (2, 4):
            for max_skips in (5, 8, 12):
                for threshold in (0.3, 0.6, 2.0):
                    for order in (0, 1):
                        c = CGTaylorConfig(threshold=threshold, max_skips=max_skips, order=order,
                                           warmup_steps=warmup, reference_steps=28)
                        out[f"CGTaylor t{threshold:g} s{max_skips} w{warmup} o{order}"] = (
                            lambda m, c=c: apply_cg_taylor(m, c))
    else:
        raise SystemExit(f"--grid must be taylorseer or cg_taylor, got {name!r}")
    return out


class Graph:
    """The baseline graph's nodes, loaded once."""

    def __init__(self) -> None:
        import comfy_extras.nodes_model_advanced as advanced
        import folder_paths

        import nodes

        lay = dit_runtime.prepare()
        for kind in ("diffusion_models", "text_encoders", "vae"):
            folder_paths.add_model_folder_path(kind, str(lay.models / kind))
        self.nodes = nodes
        model = nodes.UNETLoader().load_unet(model_files.WAN_DIT_FILE, "default")[0]
        self.model = advanced.ModelSamplingSD3().patch(model, 3.0)[0]
        self.clip = nodes.CLIPLoader().load_clip(model_files.CLIP_L_FILE, "sd3")[0]
        self.vae = nodes.VAELoader().load_vae(model_files.WAN_VAE_FILE)[0]
        self.negative = self.encode("")

    def encode(self, text: str) -> Any:
        return self.nodes.CLIPTextEncode().encode(self.clip, text)[0]

    def image(self, model: Any, positive: Any, seed: int, steps: int) -> torch.Tensor:
        latent = {"samples": torch.zeros(1, 16, 1, 32, 32)}
        out = self.nodes.KSampler().sample(model, seed, steps, 5.0, "euler", "simple", positive, self.negative,
                                           latent)[0]
        return self.nodes.VAEDecode().decode(self.vae, out)[0][0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=28)
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--split", choices=list(bench_caching.SPLITS), default="tune")
    parser.add_argument("--grid", default="taylorseer")
    parser.add_argument("--only", default="", help="a regular expression: the settings of the grid to run")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    from comfyui_ditaccel.accel_core.comfy_patch import report_holder
    from comfyui_ditaccel.accel_core.metrics import psnr

    g = Graph()
    cases = [(g.encode(caption), seed) for caption, seed in bench_caching.cases(args.split, args.cases)]
    base = [g.image(g.model, positive, seed, args.steps) for positive, seed in cases]
    print(f"| {args.steps} steps, {args.split} split, {len(cases)} cases | PSNR dB | lowest | FLOPs run |")
    print("|---|---:|---:|---:|")
    for name, make in grid(args.grid, args.steps).items():
        if not re.search(args.only, name):
            continue
        model = make(g.model)
        scores, shares = [], []
        for (positive, seed), reference in zip(cases, base, strict=True):
            scores.append(psnr(g.image(model, positive, seed, args.steps), reference))
            shares.append(report_holder(model).latest.flops_share)
        print(f"| {name} | {statistics.mean(scores):.1f} | {min(scores):.1f} | {statistics.median(shares):.0%} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark the caching nodes against the baseline and ComfyUI's EasyCache / LazyCache.

    .venv/bin/python -m tools.benchmarks.bench_caching [--steps 28] [--cases 4] [--reps 3] [--out out/bench_caching]
    .venv/bin/python -m tools.benchmarks.bench_caching --sweep          # the grid the presets were picked from
    .venv/bin/python -m tools.benchmarks.bench_caching --video 9   # the video model on 9-frame clips (PSNR: all frames)

One ComfyUI server (loaders and text encoders cached, as in normal use), the baseline graph of
the embedded model, runs alternated: baseline, then every configuration, then the baseline
again, and so on for `--reps` rounds, on held-out captions and seeds that the presets were not
tuned on (`--split tune` gives the tuning set). For every configuration it prints:

  speed-up   median baseline prompt time / median prompt time (ComfyUI's own execution_start ->
             execution_success timestamps: the whole prompt, sampler + decode + save)
  sampler    the same for the sampler alone (DiTAccelReport's sampling time): on the video model
             the VAE decode of a clip weighs on the whole prompt far more than on a large model
  FLOPs      transformer FLOPs run, as a share of the baseline's (DiTAccelRecord / -Report)
  PSNR/SSIM  of the saved image against the baseline image of the same caption and seed
  state MiB  tensors the method's per-run state held (DiTAccelReport)
  peak MiB   the server's peak resident memory during the prompt, minus the baseline's
  control    PSNR of the fair control: plain sampling with as many full model evaluations
             (fewer steps) as the configuration ran, against the full-step baseline

Writes OUT/table.md, OUT/results.json and OUT/speed_vs_psnr.png.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import re
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from comfyui_ditaccel.accel_core.metrics import psnr, ssim
from PIL import Image, ImageDraw

from tools.runtime import dit_runtime, model_files
from tools.runtime.comfy_client import ComfyClient, ComfyError, decode_png
from tools.training import scenes

BASELINE = dit_runtime.REPO / "workflows" / "api" / "baseline.json"
POSITIVE, SAMPLER, SAVE, SHIFT = "3", "6", "9", "10"
ACCEL, RECORD, REPORT = "40", "49", "50"  # a chain of methods takes 40, 41, ...
SPLITS = {"tune": (31, 500), "measure": (4242, 9000)}  # (caption draw seed, first sampler seed)


@dataclass(frozen=True)
class Config:
    name: str
    group: str  # baseline | ours | peer
    node: str | None = None
    inputs: dict = field(default_factory=dict)
    then: tuple[tuple[str, dict], ...] = ()  # more nodes after `node`, in order (a stack of methods)
    steps: int | None = None  # sampler steps, where they differ from the baseline's


def configs(sweep: bool, steps: int = 28) -> list[Config]:
    """The presets (and peers), or with `sweep` the custom grid; custom step counts are given for 28
    steps and scaled to `steps`, as the presets are."""

    def scale(n: int) -> int:  # a warm-up, as the presets scale it
        return max(1, round(n * steps / 28))

    def gap(n: int) -> int:  # an interval or skip limit, as the presets scale it
        return max(1, round(n * math.sqrt(steps / 28)))

    out = [Config("baseline", "baseline")]
    if sweep:
        for warmup in (2, 3, 4, 6):
            for interval in (2, 3, 4, 5, 6, 8, 12):
                out.append(Config(f"TaylorSeer i{interval} w{warmup} o0", "ours", "DiTAccelTaylorSeer",
                                  {"preset": "custom", "interval": gap(interval), "order": 0,
                                   "warmup_steps": scale(warmup)}))
        adaptive = ((0.03, 6), (0.05, 6), (0.07, 8), (0.1, 8), (0.2, 12), (0.3, 10), (0.5, 14), (1.0, 14))
        for threshold, interval in adaptive:
            out.append(Config(f"TaylorSeer t{threshold:g} i{interval} w2 o0", "ours", "DiTAccelTaylorSeer",
                              {"preset": "custom", "threshold": threshold, "interval": gap(interval), "order": 0,
                               "warmup_steps": scale(2)}))
        for interval in (3, 5):
            for order in (1, 2):
                for granularity in ("blocks", "modules"):
                    out.append(Config(f"TaylorSeer i{interval} o{order} {granularity}", "ours", "DiTAccelTaylorSeer",
                                      {"preset": "custom", "interval": gap(interval), "order": order,
                                       "warmup_steps": scale(2), "granularity": granularity}))
        for warmup in (2, 4):
            for max_skips in (5, 8, 12):
                for thr in (0.3, 0.6, 2.0):
                    for order in (0, 1):
                        out.append(Config(f"CGTaylor t{thr:g} s{max_skips} w{warmup} o{order}", "ours",
                                          "DiTAccelCGTaylor",
                                          {"preset": "custom", "threshold": thr, "max_skips": gap(max_skips),
                                           "order": order, "warmup_steps": scale(warmup)}))
        for thr in (0.05, 0.1, 0.2, 0.3, 0.5):
            out.append(Config(f"FBCache t{thr:g}", "ours", "DiTAccelFirstBlockCache",
                              {"preset": "custom", "threshold": thr, "max_skips": gap(6), "warmup_steps": scale(2)}))
        return out
    for preset in ("quality", "balanced", "fast"):
        out.append(Config(f"TaylorSeer {preset}", "ours", "DiTAccelTaylorSeer", {"preset": preset}))
    # the adaptive schedule's gain: a fixed interval at about balanced's FLOPs (the previous balanced preset);
    # the granularities compared on that same fixed schedule (an adaptive threshold measures a different
    # feature per granularity, so the presets' thresholds, calibrated for `output`, run more full steps there)
    for granularity in ("output", "blocks", "modules"):
        out.append(Config(f"TaylorSeer fixed i5 w4, {granularity}", "ours", "DiTAccelTaylorSeer",
                          {"preset": "custom", "threshold": 0.0, "interval": gap(5), "order": 0,
                           "warmup_steps": scale(4), "granularity": granularity}))
    # a point between quality and balanced, for the frontier against the peers (custom, scaled like a preset)
    out.append(Config("TaylorSeer custom t0.05", "ours", "DiTAccelTaylorSeer",
                      {"preset": "custom", "threshold": 0.05, "interval": gap(6), "order": 0,
                       "warmup_steps": scale(2)}))
    for preset in ("quality", "balanced", "fast"):
        out.append(Config(f"CGTaylor {preset}", "ours", "DiTAccelCGTaylor", {"preset": preset}))
    # CG-Taylor's ceiling: every step gated but the first and the last (block 1 and the embeddings still run)
    out.append(Config("CGTaylor ceiling (all gated)", "ours", "DiTAccelCGTaylor",
                      {"preset": "custom", "threshold": 2.0, "max_skips": 50, "order": 0, "warmup_steps": 1}))
    for preset in ("quality", "balanced", "fast"):
        out.append(Config(f"FirstBlockCache {preset}", "ours", "DiTAccelFirstBlockCache", {"preset": preset}))
    for peer in ("EasyCache", "LazyCache"):
        for thr in (0.05, 0.1, 0.2):
            out.append(Config(f"{peer} {thr:g}", "peer", peer,
                              {"reuse_threshold": thr, "start_percent": 0.15, "end_percent": 0.95, "verbose": False}))
    return out


def build_prompt(base: dict, config: Config, caption: str, seed: int, steps: int) -> dict:
    """Loader -> shift -> [method] -> DiTAccelRecord -> KSampler, plus DiTAccelReport."""
    nodes = [(config.node, config.inputs)] if config.node is not None else []
    return build_chain(base, nodes + list(config.then), caption, seed, config.steps or steps)


def build_chain(base: dict, nodes: list[tuple[str, dict]], caption: str, seed: int, steps: int) -> dict:
    """Loader -> shift -> each of `nodes` in turn -> DiTAccelRecord -> KSampler, plus DiTAccelReport.

    The recorder sits after the methods so a peer's skipped calls never reach it: the FLOPs it
    records are the FLOPs that ran.
    """
    p = copy.deepcopy(base)
    p[POSITIVE]["inputs"]["text"] = caption
    p[SAMPLER]["inputs"]["seed"] = seed
    p[SAMPLER]["inputs"]["steps"] = steps
    model = [SHIFT, 0]
    for i, (node, inputs) in enumerate(nodes):
        key = str(int(ACCEL) + i)
        p[key] = {"class_type": node, "inputs": {"model": model, **inputs}}
        model = [key, 0]
    p[RECORD] = {"class_type": "DiTAccelRecord", "inputs": {"model": model}}
    p[SAMPLER]["inputs"]["model"] = [RECORD, 0]
    p[REPORT] = {"class_type": "DiTAccelReport", "inputs": {"model": [RECORD, 0], "latent": [SAMPLER, 0]}}
    return p


class Memory:
    """Peak resident memory of the server process per prompt (Linux: clear_refs resets VmHWM)."""

    def __init__(self) -> None:
        self.pid: int | None = None

    def reset(self) -> None:
        if self.pid is not None:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")

    def peak_mib(self) -> float:
        if self.pid is None:
            return float("nan")
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")


@dataclass
class Run:
    seconds: float
    sampling_s: float  # the sampler alone (DiTAccelReport), without the VAE decode and the save
    gflop_run: float
    state_mib: float
    peak_mib: float
    image: np.ndarray


def run_once(client: ComfyClient, memory: Memory, prompt: dict, timed: bool = True) -> Run:
    memory.reset()
    result = client.run(prompt)
    cached = [n for e in result.events if e.get("type") == "execution_cached" for n in e["data"].get("nodes", [])]
    if timed and SAMPLER in cached:
        raise ComfyError("the sampler was served from ComfyUI's cache: consecutive prompts must differ")
    stamps = {e["type"]: e["data"].get("timestamp") for e in result.events}
    if stamps.get("execution_start") and stamps.get("execution_success"):
        seconds = (stamps["execution_success"] - stamps["execution_start"]) / 1000.0
    else:
        seconds = result.seconds
    text = result.node_output(REPORT)["text"][0]
    run = float(re.search(r"\(([\d.]+) / [\d.]+ GFLOP\)", text).group(1))
    state = float(re.search(r"method state held: ([\d.]+) MiB", text).group(1))
    sampling = float(re.search(r"sampling ([\d.]+) s", text).group(1))
    frames = [decode_png(b) for b in result.images]  # a video's frames, in order
    return Run(seconds, sampling, run, state, memory.peak_mib(), frames[0] if len(frames) == 1 else np.stack(frames))


def image_scores(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    return psnr(ta, tb), ssim(ta, tb)


@dataclass
class Row:
    name: str
    group: str
    speedup: float
    flops_share: float
    psnr: float
    ssim: float
    state_mib: float
    extra_peak_mib: float
    full_evals: int = 0
    control_psnr: float = float("nan")
    sampler_speedup: float = float("nan")


def cases(split: str, n: int) -> list[tuple[str, int]]:
    cap_seed, first = SPLITS[split]
    other = {s.caption for s in scenes.draw_scenes(SPLITS["tune" if split == "measure" else "measure"][0], 64,
                                                   "held_out")}
    picked = [s.caption for s in scenes.draw_scenes(cap_seed, 4 * n, "held_out") if s.caption not in other]
    return [(c, first + i) for i, c in enumerate(picked[:n])]


def save_image(image: np.ndarray, path: Path) -> None:
    """A PNG; a video's frames side by side (every other frame when there are more than 8)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if image.ndim == 4:
        image = np.concatenate(list(image[::2] if len(image) > 8 else image), axis=1)
    Image.fromarray((image * 255).round().astype(np.uint8)).save(path)


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def image_tokens(frames: int, size: int) -> int:
    """Image tokens the embedded Wan model sees for `frames` frames (1 + 4k) at `size` px: latent frames x
    (size / 16)² (the VAE's 4x temporal, 8x spatial compression; 2 x 2 patches)."""
    return (1 + (frames - 1) // 4) * (size // 16) ** 2


def video_base(frames: int, size: int) -> dict:
    """The baseline graph on the video model (the embedded model trained further on moving scenes)."""
    base = json.loads(BASELINE.read_text())
    base["1"]["inputs"]["unet_name"] = model_files.WAN_VIDEO_DIT_FILE
    base["5"]["inputs"].update(width=size, height=size, length=frames)
    return base


def benchmark(client: ComfyClient, memory: Memory, cfgs: list[Config], steps: int, n_cases: int, reps: int,
              split: str, controls: bool, images: Path | None = None, base: dict | None = None) -> list[Row]:
    base = base or json.loads(BASELINE.read_text())
    runs: dict[str, list[list[Run]]] = {c.name: [] for c in cfgs}
    case_list = cases(split, n_cases)
    client.run(build_prompt(base, cfgs[0], case_list[0][0], 1, steps))  # warm-up: load and cache the models
    for ci, (caption, seed) in enumerate(case_list):
        for c in cfgs:
            runs[c.name].append([])
        for _ in range(reps):
            for c in cfgs:
                runs[c.name][ci].append(run_once(client, memory, build_prompt(base, c, caption, seed, steps)))
        if images is not None:
            for c in cfgs:
                save_image(runs[c.name][ci][0].image, images / f"case{ci}" / f"{slug(c.name)}.png")
        print(f"[bench] case {ci + 1}/{len(case_list)} done ({caption!r}, seed {seed})", flush=True)
    base_runs = runs["baseline"]
    base_time = sum(statistics.median(r.seconds for r in case) for case in base_runs)
    base_sampling = sum(statistics.median(r.sampling_s for r in case) for case in base_runs)
    base_gflop = statistics.median(r.gflop_run for case in base_runs for r in case)
    base_peak = statistics.median(r.peak_mib for case in base_runs for r in case)
    rows = []
    for c in cfgs:
        case_runs = runs[c.name]
        t = sum(statistics.median(r.seconds for r in case) for case in case_runs)
        t_sampling = sum(statistics.median(r.sampling_s for r in case) for case in case_runs)
        scores = [image_scores(case[0].image, base_case[0].image) for case, base_case in zip(case_runs, base_runs,
                                                                                               strict=True)]
        finite = [s[0] for s in scores if np.isfinite(s[0])]
        share = statistics.median(r.gflop_run for case in case_runs for r in case) / base_gflop
        rows.append(Row(
            name=c.name, group=c.group, speedup=base_time / t, flops_share=share,
            psnr=statistics.mean(finite) if finite else float("inf"), ssim=statistics.mean(s[1] for s in scores),
            state_mib=statistics.median(r.state_mib for case in case_runs for r in case),
            extra_peak_mib=statistics.median(r.peak_mib for case in case_runs for r in case) - base_peak,
            full_evals=max(1, round(share * steps)), sampler_speedup=base_sampling / t_sampling,
        ))
    if controls:
        control_psnr: dict[tuple[int, int], float] = {}
        for row in rows:
            if row.group != "ours":
                continue
            vals = []
            for ci, ((caption, seed), base_case) in enumerate(zip(case_list, base_runs, strict=True)):
                if (ci, row.full_evals) not in control_psnr:
                    r = run_once(client, memory, build_prompt(base, cfgs[0], caption, seed, row.full_evals),
                                 timed=False)
                    control_psnr[ci, row.full_evals] = image_scores(r.image, base_case[0].image)[0]
                    if images is not None:
                        save_image(r.image, images / f"case{ci}" / f"control_{row.full_evals}_steps.png")
                vals.append(control_psnr[ci, row.full_evals])
            row.control_psnr = statistics.mean(vals)
    return rows


def table(rows: list[Row], steps: int) -> str:
    lines = [f"| {steps} steps | speed-up | sampler speed-up | FLOPs run | PSNR dB | SSIM "
             f"| fair control PSNR dB (full evals) | state MiB | extra peak MiB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        control = f"{r.control_psnr:.1f} ({r.full_evals})" if np.isfinite(r.control_psnr) else "-"
        flops = f"{100 * r.flops_share:.0f} %"
        lines.append(f"| {r.name} | {r.speedup:.2f}x | {r.sampler_speedup:.2f}x | {flops} | {r.psnr:.1f} "
                     f"| {r.ssim:.3f} | {control} | {r.state_mib:.2f} | {r.extra_peak_mib:+.0f} |")
    return "\n".join(lines)


def checks(rows: list[Row]) -> list[str]:
    """The frontier and fair-control comparisons, in words."""
    ours = [r for r in rows if r.group == "ours"]
    out = []
    for r in ours:
        if np.isfinite(r.control_psnr):
            verdict = "beats" if r.psnr > r.control_psnr else "does NOT beat"
            out.append(f"{r.name}: {r.psnr:.1f} dB {verdict} its fair control ({r.full_evals} steps, "
                       f"{r.control_psnr:.1f} dB)")
    for peer in (r for r in rows if r.group == "peer"):
        better = [o for o in ours if o.psnr >= peer.psnr and o.speedup > peer.speedup]
        verdict = f"dominated by {better[0].name}" if better else "NOT dominated by any of ours"
        out.append(f"{peer.name} ({peer.speedup:.2f}x, {peer.psnr:.1f} dB): {verdict}")
    return out


def plot(rows: list[Row], path: Path, steps: int) -> None:
    w, h, left, right, top, bottom = 860, 520, 70, 840, 40, 460
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    pts = [r for r in rows if r.group != "baseline" and np.isfinite(r.psnr)]
    lo_p, hi_p = min(r.psnr for r in pts) - 2, max(r.psnr for r in pts) + 2
    hi_s = max(r.speedup for r in pts) * 1.1

    def xy(r: Row) -> tuple[float, float]:
        return (left + (r.psnr - lo_p) / (hi_p - lo_p) * (right - left),
                bottom - (r.speedup - 1.0) / (hi_s - 1.0) * (bottom - top) if hi_s > 1 else bottom)

    d.rectangle([left, top, right, bottom], outline="black")
    d.text((left, 12), f"speed-up vs PSNR against the {steps}-step baseline (embedded model, CPU)", fill="black")
    d.text((left + 300, bottom + 24), "PSNR (dB)", fill="black")
    d.text((6, top), f"{hi_s:.1f}x", fill="black")
    d.text((6, bottom - 10), "1.0x", fill="black")
    d.text((left, bottom + 6), f"{lo_p:.0f}", fill="black")
    d.text((right - 20, bottom + 6), f"{hi_p:.0f}", fill="black")
    colours = {"TaylorSeer": (40, 120, 220), "CGTaylor": (30, 160, 80), "FirstBlockCache": (150, 90, 200),
               "EasyCache": (220, 80, 40), "LazyCache": (200, 160, 20), "RAS": (40, 170, 170),
               "JiT": (200, 60, 140)}
    for name, colour in colours.items():
        group = sorted((r for r in pts if r.name.startswith(name)), key=lambda r: r.psnr)
        coords = [xy(r) for r in group]
        # the line joins a method's presets (or a peer's thresholds); variants are dots only
        line = [xy(r) for r in group if " " not in r.name.split(" ", 1)[1]]
        if len(line) > 1:
            d.line(line, fill=colour, width=2)
        for (x, y), r in zip(coords, group, strict=True):
            d.ellipse([x - 4, y - 4, x + 4, y + 4], fill=colour)
            d.text((x + 6, y - 6), r.name.split(" ", 1)[1], fill=colour)
    lx = left + 10
    for name, colour in colours.items():
        d.rectangle([lx, top + 8, lx + 10, top + 18], fill=colour)
        d.text((lx + 14, top + 6), name, fill="black")
        lx += 110
    img.save(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=28)
    parser.add_argument("--cases", type=int, default=4, help="caption/seed pairs")
    parser.add_argument("--reps", type=int, default=3, help="alternated rounds per case (timing median)")
    parser.add_argument("--split", choices=list(SPLITS), default="measure")
    parser.add_argument("--sweep", action="store_true", help="the custom grid the presets were picked from")
    parser.add_argument("--no-controls", action="store_true")
    parser.add_argument("--only", default="", help="a regular expression: run only the matching configurations "
                                                   "(and the baseline)")
    parser.add_argument("--video", type=int, default=0, metavar="FRAMES",
                        help="run the video model on clips of FRAMES frames (1 + 4k) instead of images")
    parser.add_argument("--size", type=int, default=256, help="width and height of a --video clip")
    parser.add_argument("--out", type=Path, default=dit_runtime.REPO / "out" / "bench_caching")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    memory = Memory()
    start = time.time()
    with dit_runtime.running_server(cache_none=False, started=lambda p: setattr(memory, "pid", p.pid)) as url:
        client = ComfyClient(url)
        picked = [c for c in configs(args.sweep, args.steps)
                  if c.group == "baseline" or re.search(args.only, c.name)]
        rows = benchmark(client, memory, picked, args.steps, args.cases, args.reps, args.split,
                         controls=not args.no_controls, images=args.out / "images",
                         base=video_base(args.video, args.size) if args.video else None)
    text = table(rows, args.steps)
    notes = checks(rows)
    print(text)
    print("\n".join(notes))
    tag = f"{'sweep' if args.sweep else 'presets'}_{args.split}_{args.steps}"
    tag += f"_video{args.video}x{args.size}" if args.video else ""
    tag += f"_{slug(args.only)}" if args.only else ""
    (args.out / f"table_{tag}.md").write_text(text + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    (args.out / f"results_{tag}.json").write_text(json.dumps([asdict(r) for r in rows], indent=1))
    plot(rows, args.out / f"speed_vs_psnr_{tag}.png", args.steps)
    print(f"[bench] {time.time() - start:.0f} s; wrote {args.out}/*_{tag}.*")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Settings from a calibration profile against the presets' records, on held-out captions and seeds.

    .venv/bin/python -m tools.benchmarks.bench_calibration [--cases 8] [--steps 28 50] [--video 0]
                                                           [--out out/bench_calibration]

One ComfyUI server. Per step count: DiTAccelCalibrate runs once on ONE tune caption and seed and saves
the profile; every held-out case is calibrated too (full compute: its image is the reference, its own
curves are what "observed" means below). Then each caching node at each preset runs on every held-out
case twice: with the preset's record, and with the tune profile connected (the preset as an error
budget). It prints per node and preset:

  FLOPs      transformer FLOPs run, as a share of full compute (DiTAccelReport), mean over the cases
  PSNR       of the image against the case's full-compute image, mean and worst case
  pass       the issue's bar: the profile's FLOPs <= the record's and worst PSNR >= the record's - 0.5 dB

and, per node, the rank correlation (Spearman) of the predicted per-step error (the tune profile's, as
the report prints it) against the observed one (the same skipped step and gap read on the held-out
case's own profile), pooled over cases, presets and steps. Writes OUT/table.md, OUT/results.json
and OUT/frontier.png (FLOPs against worst PSNR, records and profile per node).
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from comfyui_ditaccel.accel_core.calibration import plan
from comfyui_ditaccel.accel_core.calibration.profile import Profile, load
from comfyui_ditaccel.accel_core.metrics import psnr

from tools.benchmarks.bench_caching import BASELINE, POSITIVE, REPORT, SAMPLER, build_chain, cases, video_base
from tools.runtime import dit_runtime
from tools.runtime.comfy_client import ComfyClient, decode_png

CALIBRATE_GRAPH = dit_runtime.REPO / "workflows" / "api" / "calibrate.json"
LOAD = "30"
NODES = {"TaylorSeer": "DiTAccelTaylorSeer", "CGTaylor": "DiTAccelCGTaylor",
         "FirstBlockCache": "DiTAccelFirstBlockCache"}
PRESETS = ("quality", "balanced", "fast")


def profiles(user: Path) -> Path:
    return user / "ditaccel" / "profiles"


def calibrate(client: ComfyClient, base: dict, caption: str, seed: int, steps: int,
              user: Path) -> tuple[Profile, np.ndarray]:
    """Full compute through DiTAccelCalibrate: the saved profile (read back at once: every case of a step
    count saves under the same name) and the decoded image."""
    graph = json.loads(CALIBRATE_GRAPH.read_text())
    for key in ("1", "5"):  # the model and the latent of `base` (the video model, its clip size)
        graph[key]["inputs"].update(base[key]["inputs"])
    graph[POSITIVE]["inputs"]["text"] = caption
    graph[SAMPLER]["inputs"].update(seed=seed, steps=steps, save=True)
    result = client.run(graph)
    name = result.node_output(SAMPLER)["text"][0].split()[1].rstrip(":")
    frames = [decode_png(b) for b in result.images]
    return load(profiles(user) / name), (frames[0] if len(frames) == 1 else np.stack(frames))


@dataclass
class Outcome:
    flops: float  # share of full compute, %
    psnr: float
    full_steps: list[int]
    predicted: dict[int, float]  # skipped step -> the report's predicted error (profile runs)
    settings: str


def run(client: ComfyClient, base: dict, node: str, preset: str, profile: str | None, caption: str, seed: int,
        steps: int, reference: np.ndarray) -> Outcome:
    inputs: dict = {"preset": preset}
    if profile:
        inputs["profile"] = [LOAD, 0]
    graph = build_chain(base, [(node, inputs)], caption, seed, steps)
    if profile:
        graph[LOAD] = {"class_type": "DiTAccelLoadProfile", "inputs": {"profile_name": profile}}
    result = client.run(graph)
    text = result.node_output(REPORT)["text"][0]
    flops = float(re.search(r"transformer FLOPs run: ([\d.]+) %", text).group(1))
    settings = next(x for x in text.splitlines() if x.startswith("settings: "))
    full = [int(m.group(1)) for m in re.finditer(r"^\s*(\d+)\s+[\d.]+\s+full\b", text, re.M)]
    predicted = {}
    if "predicted per skipped step: " in settings:
        part = settings.split("predicted per skipped step: ")[1]
        predicted = {int(a): float(b) for a, b in re.findall(r"(\d+): ([\d.eE+-]+)", part)}
    frames = [decode_png(b) for b in result.images]
    image = frames[0] if len(frames) == 1 else np.stack(frames)
    return Outcome(flops, psnr(torch.from_numpy(image), torch.from_numpy(reference)), full, predicted, settings)


def spearman(a: list[float], b: list[float]) -> float:
    if len(a) < 3:
        return float("nan")
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def feature(node: str, settings: str) -> str:
    """What the node puts in place of what it skips (plan.skip_cost's feature), from the report's settings."""
    if node == "FirstBlockCache":
        return plan.REST
    return plan.OUTPUT if node == "TaylorSeer" and ", output" in settings else plan.STACK


def observed(heldout: Profile, what: str, order: int, full: list[int], step: int) -> float:
    """The error the skipped `step` had on the held-out case, read on its own profile (same gap, same order)."""
    last = max((f for f in full if f < step), default=0)
    return plan.skip_cost(heldout, order, step - last, step, what)


@dataclass
class Row:
    steps: int
    node: str
    preset: str
    flops_record: float
    flops_profile: float
    psnr_record_mean: float
    psnr_record_worst: float
    psnr_profile_mean: float
    psnr_profile_worst: float
    fallback: int  # held-out runs where the profile was not used

    def verdict(self, rows: list[Row]) -> str:
        """The issue's bar: FLOPs <= the record's and worst PSNR >= its worst - 0.5 dB; or, running more FLOPs,
        a higher worst PSNR than the records' curve of this node at equal FLOPs (linear between presets)."""
        if self.flops_profile <= self.flops_record + 1e-6:
            return "met" if self.psnr_profile_worst >= self.psnr_record_worst - 0.5 else "not met"
        curve = sorted((r.flops_record, r.psnr_record_worst) for r in rows
                       if r.steps == self.steps and r.node == self.node)
        at = float(np.interp(self.flops_profile, [c[0] for c in curve], [c[1] for c in curve]))
        beyond = " (beyond the records' FLOPs)" if self.flops_profile > curve[-1][0] else ""
        return (f"{'met' if self.psnr_profile_worst > at else 'not met'}: frontier, records {at:.2f} dB at "
                f"equal FLOPs{beyond}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=8, help="held-out caption/seed pairs")
    parser.add_argument("--steps", type=int, nargs="+", default=[28, 50])
    parser.add_argument("--split", default="measure", help="where the evaluated cases come from")
    parser.add_argument("--video", type=int, default=0, metavar="FRAMES", help="the video model, clips of FRAMES")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--only", default="", help="a regular expression on the node names")
    parser.add_argument("--out", type=Path, default=dit_runtime.REPO / "out" / "bench_calibration")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    base = video_base(args.video, args.size) if args.video else json.loads(BASELINE.read_text())
    tune_caption, tune_seed = cases("tune", 1)[0]
    held = cases(args.split, args.cases)
    nodes = {k: v for k, v in NODES.items() if re.search(args.only, k)}
    rows: list[Row] = []
    pairs: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in nodes}
    start = time.time()
    # a user directory of the run's own (--user-directory): what tests or another run save cannot replace the
    # profiles it reads back
    user = args.out / "user"
    user.mkdir(parents=True, exist_ok=True)
    with dit_runtime.running_server(cache_none=False, extra=["--user-directory", str(user.resolve())]) as url:
        client = ComfyClient(url)
        for steps in args.steps:
            refs = [calibrate(client, base, c, s, steps, user) for c, s in held]
            tune, _ = calibrate(client, base, tune_caption, tune_seed, steps, user)
            # kept under a name of its own: another calibration of this model and step count (a held-out case, a
            # test) saves under the profile's name and would replace it
            tune_name = f"bench-tune-{tune.name}"
            (profiles(user) / tune_name).write_text(tune.to_json())
            print(f"[calibration] {steps} steps: tune profile {tune.name}, kept as {tune_name}", flush=True)
            for short, node in nodes.items():
                for preset in PRESETS:
                    rec = [run(client, base, node, preset, None, c, s, steps, refs[i][1])
                           for i, (c, s) in enumerate(held)]
                    pro = [run(client, base, node, preset, tune_name, c, s, steps, refs[i][1])
                           for i, (c, s) in enumerate(held)]
                    order = int(m.group(1)) if (m := re.search(r"order=(\d)", pro[0].settings)) else 0
                    for (heldout, _), o in zip(refs, pro, strict=True):
                        for step, predicted in o.predicted.items():
                            if step not in o.full_steps:
                                pairs[short][0].append(predicted)
                                what = feature(short, o.settings)
                                pairs[short][1].append(observed(heldout, what, order, o.full_steps, step))
                    row = Row(steps, short, preset, float(np.mean([o.flops for o in rec])),
                              float(np.mean([o.flops for o in pro])), float(np.mean([o.psnr for o in rec])),
                              min(o.psnr for o in rec), float(np.mean([o.psnr for o in pro])),
                              min(o.psnr for o in pro), sum("not used" in o.settings for o in pro))
                    rows.append(row)
                    print(f"[calibration] {steps} {short} {preset}: record {row.flops_record:.1f} % "
                          f"{row.psnr_record_mean:.2f}/{row.psnr_record_worst:.2f} dB, profile "
                          f"{row.flops_profile:.1f} % {row.psnr_profile_mean:.2f}/{row.psnr_profile_worst:.2f} dB",
                          flush=True)
    what = f"video model, {args.video} frames at {args.size} px" if args.video else "image model, 256 px"
    lines = [f"Embedded {what}; tune: 1 caption and seed; evaluated: {len(held)} held-out captions x seeds "
             f"({args.split} split). Budgets ({plan.UNIT}): "
             + ", ".join(f"{k} {v:g}" for k, v in plan.BUDGETS.items()) + ".", "",
             "| steps | node | preset | FLOPs record | FLOPs profile | PSNR record mean / worst | "
             "PSNR profile mean / worst | profile not used | bar |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.steps} | {r.node} | {r.preset} | {r.flops_record:.1f} % | {r.flops_profile:.1f} % | "
                     f"{r.psnr_record_mean:.2f} / {r.psnr_record_worst:.2f} | {r.psnr_profile_mean:.2f} / "
                     f"{r.psnr_profile_worst:.2f} | {r.fallback}/{len(held)} | {r.verdict(rows)} |")
    lines += ["", "Predicted against observed per-step error (skipped steps of the profile runs, pooled):", ""]
    for short, (a, b) in pairs.items():
        lines.append(f"- {short}: Spearman {spearman(a, b):.3f} over {len(a)} skipped steps")
    text = "\n".join(lines)
    print(text)
    tag = f"{'video' + str(args.video) if args.video else 'image'}_{'_'.join(map(str, args.steps))}"
    (args.out / f"table_{tag}.md").write_text(text + "\n")
    (args.out / f"results_{tag}.json").write_text(json.dumps(
        {"rows": [asdict(r) for r in rows], "pairs": pairs}, indent=1))
    frontier(rows, args.out / f"frontier_{tag}.png")
    print(f"[calibration] {time.time() - start:.0f} s; wrote {args.out}/*_{tag}.*")
    return 0


def frontier(rows: list[Row], path: Path) -> None:
    """Worst-case PSNR against FLOPs run, one panel per step count: records dashed, profile solid."""
    from PIL import Image, ImageDraw

    steps = sorted({r.steps for r in rows})
    pw, h, top, bottom = 520, 460, 50, 400
    img = Image.new("RGB", (pw * len(steps), h), "white")
    d = ImageDraw.Draw(img)
    worst = [v for r in rows for v in (r.psnr_record_worst, r.psnr_profile_worst) if np.isfinite(v)]
    lo, hi = min(worst) - 1, max(worst) + 1
    colours = {"TaylorSeer": (40, 120, 220), "CGTaylor": (30, 160, 80), "FirstBlockCache": (150, 90, 200)}
    for k, s in enumerate(steps):
        left, right = pw * k + 60, pw * (k + 1) - 20

        def xy(flops: float, db: float, left: int = left, right: int = right) -> tuple[float, float]:
            return left + flops / 100 * (right - left), bottom - (db - lo) / (hi - lo) * (bottom - top)

        d.rectangle([left, top, right, bottom], outline="black")
        d.text((left, 12), f"{s} steps: worst-case PSNR (dB) vs transformer FLOPs run (% of full)", fill="black")
        d.text((left - 40, top), f"{hi:.0f}", fill="black")
        d.text((left - 40, bottom - 10), f"{lo:.0f}", fill="black")
        d.text((left, bottom + 6), "0 %", fill="black")
        d.text((right - 30, bottom + 6), "100 %", fill="black")
        for n, (node, colour) in enumerate(colours.items()):
            sel = [r for r in rows if r.steps == s and r.node == node]
            if not sel:
                continue
            for attr, record in (("record", True), ("profile", False)):
                pts = sorted(xy(getattr(r, f"flops_{attr}"), getattr(r, f"psnr_{attr}_worst")) for r in sel)
                for a, b in itertools.pairwise(pts):
                    d.line([a, b], fill=colour, width=1 if record else 3)
                for x, y in pts:
                    box = [x - 4, y - 4, x + 4, y + 4]
                    d.rectangle(box, outline=colour) if record else d.ellipse(box, fill=colour)
            d.text((left + 10, bottom + 24 + 12 * n), f"{node}: open squares records, dots profile", fill=colour)
    img.save(path)


if __name__ == "__main__":
    sys.exit(main())

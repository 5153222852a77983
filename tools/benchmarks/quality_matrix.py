"""Quality of every method on the trained Wan models: each node at its defaults, PSNR against the baseline.

    .venv/bin/python -m tools.benchmarks.quality_matrix [--cases 2] [--steps 28] [--frames 17] [--video-size 256]

The family matrix (tools/benchmarks/family_matrix.py) shows that each method engages on each family; on
the families made of random weights that is all it can show. The Wan family has trained models,
so this runs each node as a user drops it in (its defaults: preset `balanced`, sparse attention's
method `draft`) on both: the embedded image model (256 px, 256 image tokens) and the video model (a clip of `--frames`
frames, by default 17 at 256 px: 5 latent frames x 256 = 1280 image tokens, enough for sparse
attention, which stays dense below 1024). One ComfyUI server, held-out captions and seeds,
each configuration after its baseline; PSNR / SSIM of the decoded image or clip against the
baseline's, and the bar set for that method at its defaults. SoftPAG is guidance: it
changes the image on purpose, so its measure is prompt adherence (tools/benchmarks/bench_softpag.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from tools.benchmarks import bench_caching as bc
from tools.runtime import dit_runtime
from tools.runtime.comfy_client import ComfyClient


@dataclass(frozen=True)
class Method:
    name: str
    node: str
    inputs: dict
    bar_db: float
    bar_source: str


METHODS = (
    Method("TaylorSeer", "DiTAccelTaylorSeer", {"preset": "balanced"}, 30.0, "caching target"),
    Method("TaylorSeer modules", "DiTAccelTaylorSeer", {"preset": "balanced", "granularity": "modules"}, 30.0,
           "caching target"),
    Method("CGTaylor", "DiTAccelCGTaylor", {"preset": "balanced"}, 30.0, "caching target"),
    Method("FirstBlockCache", "DiTAccelFirstBlockCache", {"preset": "balanced"}, 30.0, "as TaylorSeer"),
    Method("SparseAttention", "DiTAccelSparseAttention", {"preset": "balanced", "method": "draft"}, 28.0,
           "video target"),
    Method("RAS", "DiTAccelRAS", {"preset": "balanced"}, 28.0, "spatial target"),
    Method("JiT", "DiTAccelJiT", {"preset": "balanced"}, 24.0, "spatial target"),
)


@dataclass(frozen=True)
class Target:
    name: str
    base: dict
    tokens: int


@dataclass
class Cell:
    psnr: float
    ssim: float
    flops: float
    speedup: float


def measure(client: ComfyClient, target: Target, steps: int, n_cases: int) -> dict[str, Cell]:
    memory = bc.Memory()
    baselines, runs = [], {m.name: [] for m in METHODS}
    case_list = bc.cases("measure", n_cases)
    client.run(bc.build_chain(target.base, [], case_list[0][0], 1, 2))  # load this target's models untimed
    for caption, seed in case_list:
        base = bc.run_once(client, memory, bc.build_chain(target.base, [], caption, seed, steps))
        baselines.append(base)
        for m in METHODS:
            run = bc.run_once(client, memory, bc.build_chain(target.base, [(m.node, m.inputs)], caption, seed, steps))
            runs[m.name].append(run)
            print(f"[quality] {target.name} seed {seed} {m.name}: {run.seconds:.1f} s", flush=True)
    base_time = statistics.median(r.seconds for r in baselines)
    out = {}
    for m in METHODS:
        pairs = list(zip(runs[m.name], baselines, strict=True))
        scores = [bc.image_scores(r.image, b.image) for r, b in pairs]
        out[m.name] = Cell(statistics.mean(s[0] for s in scores), statistics.mean(s[1] for s in scores),
                           statistics.median(r.gflop_run / b.gflop_run for r, b in pairs),
                           base_time / statistics.median(r.seconds for r in runs[m.name]))
    return out


def markdown(targets: list[Target], cells: dict[str, dict[str, Cell]]) -> str:
    head = "| method (defaults) | bar | " + " | ".join(f"{t.name}: PSNR dB / SSIM / FLOPs run / speed-up"
                                                         for t in targets) + " | bar met |"
    lines = [head, "|---|---|" + "---|" * len(targets) + "---|"]
    for m in METHODS:
        parts, met = [], []
        for t in targets:
            c = cells[t.name][m.name]
            parts.append(f"{c.psnr:.1f} / {c.ssim:.3f} / {100 * c.flops:.0f} % / {c.speedup:.2f}x")
            if c.flops < 0.999:  # a method that ran everything (sparse below its token floor) proves nothing
                met.append(f"{t.name.split()[0]} {'yes' if c.psnr >= m.bar_db else 'no'}")
        lines.append(f"| {m.name} | ≥ {m.bar_db:g} dB, {m.bar_source} | " + " | ".join(parts)
                     + f" | {', '.join(met)} |")
    lines.append("| SoftPAG | guidance: changes the image on purpose; measured by prompt adherence "
                 "(tools/benchmarks/bench_softpag.py) |" + " - |" * len(targets) + " - |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=2)
    ap.add_argument("--steps", type=int, default=28)
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--video-size", type=int, default=256)
    ap.add_argument("--out", type=Path, default=dit_runtime.REPO / "out" / "quality_matrix")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    targets = [Target("image 256 px", json.loads(bc.BASELINE.read_text()), bc.image_tokens(1, 256)),
               Target(f"video {a.frames} frames at {a.video_size} px", bc.video_base(a.frames, a.video_size),
                      bc.image_tokens(a.frames, a.video_size))]
    with dit_runtime.running_server(cache_none=False) as url:
        client = ComfyClient(url)
        cells = {t.name: measure(client, t, a.steps, a.cases) for t in targets}
    text = (f"{a.steps} euler steps, CFG 5, {a.cases} held-out case(s), one run each (speed-up: whole prompt, "
            f"indicative); image tokens: " + ", ".join(f"{t.name} {t.tokens}" for t in targets)
            + ". Sparse attention stays dense below 1024 image tokens, so its image column ran everything "
              "and is not judged.\n\n" + markdown(targets, cells))
    print(text)
    (a.out / "table.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

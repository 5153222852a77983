"""Sparse attention end to end on the embedded model at four times its width and height.

    .venv/bin/python -m tools.benchmarks.bench_sparse_e2e [--size 1024] [--steps 28] [--cases 1] [--reps 2]
    .venv/bin/python -m tools.benchmarks.bench_sparse_e2e --frames 17 --size 512   # the video model: 5 x 1024 tokens

At 1024 px the embedded model sees 64 x 64 = 4096 image tokens (16x its default), where
attention is most of the transformer's work, as in real video models. One ComfyUI server,
runs alternated (baseline, each configuration, baseline, ...), held-out captions and seeds.
For each configuration: speed-up of the whole prompt over the dense baseline at that size,
transformer FLOPs run, PSNR / SSIM of the image against the dense image, and, for sparse
attention, the speed bound its settings allow (attention share of FLOPs, dense steps and
blocks). DiTAccelTaylorSeer and its combination with sparse attention are measured alongside:
the combined speed-up is compared with the product of the two.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from comfyui_ditaccel.accel_core.settings import records

from tools.benchmarks import bench_caching as bc
from tools.runtime import dit_runtime
from tools.runtime.comfy_client import ComfyClient

LATENT = "5"
DIM, BLOCKS, TEXT_TOKENS = 256, 6, 77  # the embedded model


@dataclass(frozen=True)
class Chain:
    name: str
    nodes: tuple[tuple[str, dict], ...] = ()
    sparse: tuple[tuple[str, float], ...] | None = None  # the sparse node's settings (CUSTOM_KEYS)


CUSTOM_KEYS = ("density", "dense_steps", "dense_blocks", "start_percent", "end_percent", "estimate_skipped")


def _embedded(preset: str) -> dict:
    return dict(records.EMBEDDED[records.SPARSE][preset].values)


def parse_custom(spec: str) -> tuple[str, dict[str, float | int]]:
    """`grat:density=0.12,dense_steps=8,dense_blocks=0` -> (method, settings); unset keys: balanced's."""
    method, _, rest = spec.partition(":")
    settings: dict[str, float | int] = records.embedded_balanced(records.SPARSE)
    for item in filter(None, (t.strip() for t in rest.split(","))):
        key, _, value = item.partition("=")
        if key not in CUSTOM_KEYS:
            raise SystemExit(f"--custom: unknown setting {key!r} in {spec!r}; allowed: {', '.join(CUSTOM_KEYS)}")
        settings[key] = (value.lower() in ("1", "true") if key == "estimate_skipped" else
                         int(value) if key.startswith("dense_") else float(value))
    return method, settings


def chains(methods: list[str], preset: str, combine: str, custom: list[str], taylorseer: bool) -> list[Chain]:
    out = [Chain("baseline")]
    for m in methods:
        out.append(Chain(f"sparse {m} {preset}", (("DiTAccelSparseAttention", {"preset": preset, "method": m}),),
                         tuple(_embedded(preset).items())))
    for spec in custom:
        m, settings = parse_custom(spec)
        label = ", ".join(f"{k} {settings[k]:g}" for k in CUSTOM_KEYS if k in settings)
        out.append(Chain(f"sparse {m} custom ({label})",
                         (("DiTAccelSparseAttention", {"preset": "custom", "method": m, **settings}),),
                         tuple(settings.items())))
    if taylorseer:
        ts = ("DiTAccelTaylorSeer", {"preset": "balanced"})
        out.append(Chain("TaylorSeer balanced", (ts,)))
        out.append(Chain(f"TaylorSeer balanced + sparse {combine} {preset}",
                         (ts, ("DiTAccelSparseAttention", {"preset": preset, "method": combine})),
                         tuple(_embedded(preset).items())))
    return out


def build(base: dict, chain: Chain, caption: str, seed: int, steps: int, size: int) -> dict:
    p = bc.build_chain(base, list(chain.nodes), caption, seed, steps)
    p[LATENT]["inputs"]["width"] = p[LATENT]["inputs"]["height"] = size
    return p


def attention_share(tokens: int, gflop_per_step: float) -> float:
    """Image self-attention's share of one step's transformer FLOPs (cond + uncond)."""
    return 2 * BLOCKS * 4.0 * tokens * tokens * DIM / (gflop_per_step * 1e9)


def bound(share: float, sparse: tuple[tuple[str, float], ...], steps: int) -> float | None:
    """The speed-up the settings allow if sparse attention were free (None for a start/end window: that
    bound would need the sampler's sigmas)."""
    s = dict(sparse)
    if s.get("start_percent", 0.0) > 0.0 or s.get("end_percent", 1.0) < 1.0:
        return None
    sparse_part = share * (steps - s["dense_steps"]) / steps * (BLOCKS - s["dense_blocks"]) / BLOCKS
    return 1.0 / (1.0 - sparse_part * (1.0 - s["density"]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=28)
    ap.add_argument("--cases", type=int, default=1)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--preset", default="balanced", choices=list(records.PRESETS))
    ap.add_argument("--methods", nargs="*", default=["grat", "pisa", "svg2", "draft", "rettention"])
    ap.add_argument("--combine", default="pisa", help="sparse method combined with TaylorSeer")
    ap.add_argument("--custom", nargs="*", default=[],
                    help="extra sparse settings, e.g. grat:density=0.12,dense_steps=8,dense_blocks=0 "
                         "(unset keys: balanced's)")
    ap.add_argument("--no-taylorseer", action="store_true",
                    help="leave out TaylorSeer and its combination with sparse attention")
    ap.add_argument("--split", default="measure", choices=list(bc.SPLITS))
    ap.add_argument("--comfy-attention", default="pytorch", choices=["pytorch", "default"],
                    help="the dense attention ComfyUI runs: pytorch = scaled_dot_product_attention (what GPUs get; "
                         "the fair baseline for the sparse kernels), default = what ComfyUI picks (sub-quadratic "
                         "on a CPU, slower)")
    ap.add_argument("--frames", type=int, default=1,
                    help="above 1: the video model (trained on moving scenes) on clips of this many frames (1 + 4k)")
    ap.add_argument("--out", type=Path, default=dit_runtime.REPO / "out" / "bench_sparse_e2e")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    base = bc.video_base(a.frames, a.size) if a.frames > 1 else json.loads(bc.BASELINE.read_text())
    configs = chains(a.methods, a.preset, a.combine, a.custom, not a.no_taylorseer)
    memory = bc.Memory()
    runs: dict[str, list[list[bc.Run]]] = {c.name: [] for c in configs}
    case_list = bc.cases(a.split, a.cases)
    extra = ["--use-pytorch-cross-attention"] if a.comfy_attention == "pytorch" else []
    with dit_runtime.running_server(cache_none=False, extra=extra,
                                    started=lambda proc: setattr(memory, "pid", proc.pid)) as url:
        client = ComfyClient(url)
        client.run(build(base, configs[0], case_list[0][0], 1, 2, a.size))  # load the models
        for ci, (caption, seed) in enumerate(case_list):
            for c in configs:
                runs[c.name].append([])
            for rep in range(a.reps):
                for c in configs:
                    runs[c.name][ci].append(bc.run_once(client, memory, build(base, c, caption, seed, a.steps, a.size)))
                    r = runs[c.name][ci][-1]
                    print(f"[bench] case {ci} rep {rep} {c.name}: {r.seconds:.1f} s", flush=True)
            for c in configs:
                bc.save_image(runs[c.name][ci][0].image, a.out / "images" / f"case{ci}" / f"{bc.slug(c.name)}.png")
    base_runs = runs["baseline"]
    base_time = sum(statistics.median(r.seconds for r in case) for case in base_runs)
    base_sampling = sum(statistics.median(r.sampling_s for r in case) for case in base_runs)
    base_gflop = statistics.median(r.gflop_run for case in base_runs for r in case)
    tokens = bc.image_tokens(a.frames, a.size)
    share = attention_share(tokens, base_gflop / a.steps)
    image_std = float(base_runs[0][0].image.std())
    what = f"Video model, {a.frames} frames at {a.size} px" if a.frames > 1 else f"Embedded model at {a.size} px"
    lines = [f"{what} ({tokens} image tokens), {a.steps} euler steps, CFG 5, "
             f"ComfyUI attention: {a.comfy_attention}, "
             f"{len(case_list)} held-out case(s) x {a.reps} alternated runs; image self-attention = "
             f"{100 * share:.0f} % of transformer FLOPs. Baseline {base_time / len(case_list):.1f} s per prompt; "
             f"baseline image std {255 * image_std:.1f} / 255" + (" (a nearly flat image: PSNR says little)"
                                                                  if image_std < 0.02 else "") + ".", "",
             "| configuration | speed-up | sampler speed-up | FLOPs run | PSNR dB | SSIM | bound |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    result = {}
    for c in configs:
        case_runs = runs[c.name]
        t = sum(statistics.median(r.seconds for r in case) for case in case_runs)
        t_sampling = sum(statistics.median(r.sampling_s for r in case) for case in case_runs)
        scores = [bc.image_scores(case[0].image, b[0].image) for case, b in zip(case_runs, base_runs, strict=True)]
        flops = statistics.median(r.gflop_run for case in case_runs for r in case) / base_gflop
        ps = statistics.mean(s[0] for s in scores)
        limit = bound(share, c.sparse, a.steps) if c.sparse and len(c.nodes) == 1 else None
        limit = "-" if limit is None else f"{limit:.2f}x"
        result[c.name] = {"speedup": base_time / t, "sampler_speedup": base_sampling / t_sampling, "flops": flops,
                          "psnr": ps}
        lines.append(f"| {c.name} | {base_time / t:.2f}x | {base_sampling / t_sampling:.2f}x | {100 * flops:.0f} % "
                     f"| {ps:.1f} | "
                     f"{statistics.mean(s[1] for s in scores):.3f} | {limit} |")
    combo = next((c for c in configs if "+" in c.name), None)
    sparse_name = f"sparse {a.combine} {a.preset}"
    if combo and sparse_name in result:
        product = result["TaylorSeer balanced"]["speedup"] * result[sparse_name]["speedup"]
        lines += ["", f"combined {result[combo.name]['speedup']:.2f}x vs product {product:.2f}x "
                      f"({100 * result[combo.name]['speedup'] / product:.0f} % of it)"]
    text = "\n".join(lines)
    print(text)
    (a.out / "table.md").write_text(text + "\n")
    (a.out / "results.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

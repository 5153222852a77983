"""A soak run against the real ComfyUI server, then the same run without the pack's nodes as the control.

    .venv/bin/python -m tools.benchmarks.soak --prompts 300 [--minutes 120] [--seed 0] [--out out/soak]

Each run starts its own headless server (loopback only, --cache-none) and sends `--prompts` prompts drawn
from one seed: the embedded image model (one in ten the video model, 5 frames) at sizes 128-256 px
(non-square), batch 1-2, 4-10 steps of euler / heun / dpmpp_2m, CFG 1 or 5, with a random stack of 0-3 of the pack's
nodes at random presets; queued up to 4 deep; some interrupted at a random step; some made invalid on
purpose (each must be refused by /prompt); and every 10th the reference prompt, whose image must stay
bit-identical to its first run. After each prompt the server's resident memory (RSS) is read. The control
run draws the same sequence with the pack's nodes left out (its invalid prompts break a stock input).

It prints the counts of every outcome, every distinct error message, and the RSS growth per 100 prompts
(least squares over the prompts after the first 10 %) of both runs, and writes OUT/soak.json. Outcomes:

  ok                  finished and gave its images
  refused             an invalid prompt refused by /prompt, as it must be
  invalid_accepted    an invalid prompt that /prompt accepted (a failure)
  refused_at_apply    a pack node refused its graph when it ran, before the sampler's first step
  sampler_error       an error once sampling had started, or from a node outside the pack (a failure)
  interrupted         interrupted on purpose
  hang                no end within the timeout (a failure)
"""

from __future__ import annotations

import argparse
import copy
import io
import itertools
import json
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tools import REPO
from tools.runtime import dit_runtime
from tools.runtime.comfy_client import ComfyClient, PromptRejected

BASELINE = REPO / "workflows" / "api" / "baseline.json"
IMAGE_MODEL, VIDEO_MODEL = "ditaccel_wan21.safetensors", "ditaccel_wan21_video.safetensors"
SAMPLER, LATENT, MODEL_IN = "6", "5", "10"
PRESETS = ("quality", "balanced", "fast", "custom")
SAMPLERS = ("euler", "heun", "dpmpp_2m")
REFERENCE_EVERY = 10
FAILURES = ("invalid_accepted", "sampler_error", "hang")


@dataclass
class Job:
    index: int
    prompt: dict
    kind: str  # "normal", "invalid", "reference"
    interrupt_at: int | None = None  # interrupt at this progress value
    prompt_id: str | None = None
    outcome: str = ""
    message: str = ""
    progressed: bool = False
    images: list[bytes] = field(default_factory=list)


def pack_node(rng: random.Random, kind: str) -> dict:
    preset = rng.choice(PRESETS)
    if kind == "DiTAccelTaylorSeer":
        inputs = {"preset": preset, "granularity": rng.choice(("auto", "output", "blocks", "modules"))}
        if preset == "custom":
            inputs |= {"interval": rng.randint(1, 10), "order": rng.randint(0, 2),
                       "threshold": round(rng.uniform(0.0, 0.3), 3)}
    elif kind in ("DiTAccelCGTaylor", "DiTAccelFirstBlockCache", "DiTAccelRAS", "DiTAccelJiT"):
        inputs = {"preset": preset}
    elif kind == "DiTAccelSoftPAG":
        blocks = rng.sample(range(6), rng.randint(1, 2))
        heads = "; ".join(f"{b}:{rng.choice(('all', '0', '1', '0,1'))}" for b in blocks)
        inputs = {"heads": heads, "strength": round(rng.uniform(0.0, 1.0), 2), "scale": round(rng.uniform(0.0, 3.0), 2)}
    else:  # DiTAccelSparseAttention
        inputs = {"preset": preset, "method": rng.choice(("grat", "pisa", "svg2", "draft", "rettention"))}
    return {"class_type": kind, "inputs": inputs}


# the pack's MODEL -> MODEL nodes with valid values for their required widgets
REQUIRED = {"DiTAccelTaylorSeer": {"preset": "balanced"}, "DiTAccelCGTaylor": {"preset": "balanced"},
            "DiTAccelFirstBlockCache": {"preset": "balanced"}, "DiTAccelRAS": {"preset": "balanced"},
            "DiTAccelJiT": {"preset": "balanced"}, "DiTAccelSoftPAG": {"heads": "1:all", "strength": 0.5, "scale": 1.0},
            "DiTAccelSparseAttention": {"preset": "balanced", "method": "draft"}}
STACKABLE = tuple(REQUIRED)


def with_stack(prompt: dict, nodes: list[dict]) -> dict:
    """`nodes` chained between ModelSamplingSD3 and the KSampler, ids 40, 41, ...; a report after them."""
    source = [MODEL_IN, 0]
    for i, node in enumerate(nodes):
        node_id = str(40 + i)
        prompt[node_id] = {"class_type": node["class_type"], "inputs": {"model": source, **node["inputs"]}}
        source = [node_id, 0]
    prompt[SAMPLER]["inputs"]["model"] = source
    if nodes:
        prompt["50"] = {"class_type": "DiTAccelReport", "inputs": {"model": source, "latent": [SAMPLER, 0]}}
    return prompt


def draw_prompt(rng: random.Random, base: dict, pack: bool) -> tuple[dict, list[dict]]:
    prompt = copy.deepcopy(base)
    video = rng.random() < 0.1
    prompt["1"]["inputs"]["unet_name"] = VIDEO_MODEL if video else IMAGE_MODEL
    prompt[LATENT]["inputs"].update(width=rng.randrange(128, 257, 16), height=rng.randrange(128, 257, 16),
                                    length=5 if video else 1, batch_size=rng.randint(1, 2))
    prompt[SAMPLER]["inputs"].update(seed=rng.randrange(2**31), steps=rng.randint(4, 10),
                                     sampler_name=rng.choice(SAMPLERS), cfg=rng.choice((1.0, 5.0)))
    # draw the stack whatever the run, so the pack and control runs see the same sizes and settings
    nodes = [pack_node(rng, kind) for kind in rng.sample(STACKABLE, rng.randint(0, 3))]
    return with_stack(prompt, nodes if pack else []), nodes


# (description, how to break a prompt that has the pack's nodes); each must be refused by /prompt
CORRUPTIONS = (
    ("heads with a superscript digit", "DiTAccelSoftPAG", {"heads": "0:\u00b2"}),
    ("heads with an Arabic-Indic digit", "DiTAccelSoftPAG", {"heads": "\u0661:all"}),
    ("a 100,000-character heads", "DiTAccelSoftPAG", {"heads": "1" * 100_000}),
    ("threshold NaN", "DiTAccelTaylorSeer", {"preset": "custom", "threshold": float("nan")}),
    ("density infinite", "DiTAccelSparseAttention", {"preset": "custom", "density": float("inf")}),
    ("preset null", "DiTAccelCGTaylor", {"preset": None}),
    ("unknown method", "DiTAccelSparseAttention", {"method": "fastest"}),
    ("window inverted", "DiTAccelFirstBlockCache", {"preset": "custom", "start_percent": 0.9, "end_percent": 0.1}),
    ("interval zero", "DiTAccelTaylorSeer", {"preset": "custom", "interval": 0}),
)


def corrupt(rng: random.Random, prompt: dict, pack: bool) -> dict:
    if not pack:
        prompt[SAMPLER]["inputs"]["steps"] = -1  # below KSampler's minimum
        return prompt
    _, kind, bad = rng.choice(CORRUPTIONS)
    base = REQUIRED[kind]
    existing = [k for k, v in prompt.items() if v["class_type"] == kind]
    if existing:
        prompt[existing[0]]["inputs"].update(bad)
        return prompt
    prompt["60"] = {"class_type": kind, "inputs": {"model": prompt[SAMPLER]["inputs"]["model"], **base, **bad}}
    prompt[SAMPLER]["inputs"]["model"] = ["60", 0]
    return prompt


def reference_prompt(base: dict, pack: bool) -> dict:
    prompt = copy.deepcopy(base)
    prompt[LATENT]["inputs"].update(width=192, height=160)
    prompt[SAMPLER]["inputs"].update(seed=42, steps=8)
    nodes = [{"class_type": "DiTAccelTaylorSeer", "inputs": {"preset": "balanced", "granularity": "auto"}},
             {"class_type": "DiTAccelSoftPAG", "inputs": {"heads": "0:0; 5:1", "strength": 1.0, "scale": 1.0}}]
    return with_stack(prompt, nodes if pack else [])


def draw_jobs(count: int, seed: int, pack: bool) -> list[Job]:
    rng = random.Random(seed)
    base = json.loads(BASELINE.read_text())
    jobs = []
    for i in range(count):
        if i % REFERENCE_EVERY == 0:
            jobs.append(Job(i, reference_prompt(base, pack), "reference"))
            continue
        prompt, _ = draw_prompt(rng, base, pack)
        if rng.random() < 0.15:
            jobs.append(Job(i, corrupt(rng, prompt, pack), "invalid"))
            continue
        steps = prompt[SAMPLER]["inputs"]["steps"]
        at = rng.randint(1, steps - 1) if rng.random() < 0.08 else None
        jobs.append(Job(i, prompt, "normal", interrupt_at=at))
    return jobs


def queue_groups(count: int, seed: int) -> list[int]:
    """How many prompts go into the queue together, 1-4, drawn apart from the prompts (same in both runs)."""
    rng = random.Random(seed + 1)
    sizes, left = [], count
    while left > 0:
        sizes.append(min(rng.randint(1, 4), left))
        left -= sizes[-1]
    return sizes


def run_group(client: ComfyClient, group: list[Job], timeout: float) -> None:
    import websocket  # websocket-client

    ws = client.connect_events(timeout)
    try:
        waiting: dict[str, Job] = {}
        for job in group:
            try:
                job.prompt_id = client.submit(job.prompt)
                waiting[job.prompt_id] = job
            except PromptRejected as e:
                job.outcome = "refused" if job.kind == "invalid" else "sampler_error"
                job.message = rejection(e)
        for job in group:
            if job.kind == "invalid" and job.prompt_id is not None:
                job.outcome, job.message = "invalid_accepted", "accepted by /prompt"
        deadline = time.monotonic() + timeout * max(len(waiting), 1)
        while waiting and time.monotonic() < deadline:
            try:
                raw = ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            if not isinstance(raw, str):
                continue
            msg = json.loads(raw)
            data = msg.get("data") or {}
            job = waiting.get(data.get("prompt_id"))
            if job is None:
                continue
            kind = msg.get("type")
            if kind == "progress":
                job.progressed = True
                if job.interrupt_at is not None and data.get("value", 0) >= job.interrupt_at:
                    client.interrupt_prompt(job.prompt_id)
                    job.interrupt_at = None
            elif kind in ("execution_success", "execution_error", "execution_interrupted"):
                del waiting[job.prompt_id]
                if kind == "execution_success":
                    entry = client.finished_entry(job.prompt_id)
                    job.images = client.saved_images(entry.get("outputs", {}))
                    job.outcome = job.outcome or "ok"
                elif kind == "execution_interrupted":
                    job.outcome = job.outcome or "interrupted"
                else:
                    node = str(data.get("node_type", ""))
                    at_apply = node.startswith("DiTAccel") and not job.progressed
                    job.outcome = job.outcome or ("refused_at_apply" if at_apply else "sampler_error")
                    job.message = f"{node}: {first_line(str(data.get('exception_message', '')))}"
        for job in waiting.values():
            job.outcome, job.message = "hang", f"no end within {timeout:.0f} s"
    finally:
        ws.close()


def rejection(e: PromptRejected) -> str:
    """The first node error of a refused prompt: "<node class>: <what it said>"."""
    for info in e.node_errors.values():
        for error in info.get("errors", []):
            return f"{info.get('class_type', '?')}: {first_line(str(error.get('details', '')))}"
    return first_line(str(e))


def first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:200]


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def growth_per_100(rss: list[tuple[int, float]]) -> float:
    """Least-squares slope of RSS (MB) against the prompt index, per 100 prompts, after the first 10 %."""
    tail = rss[len(rss) // 10:]
    if len(tail) < 3:
        return float("nan")
    xs, ys = [x for x, _ in tail], [y for _, y in tail]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return 100.0 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else float("nan")


def soak(prompts: int, seed: int, pack: bool, minutes: float, timeout: float = 600.0,
         log: Path | None = None) -> dict[str, Any]:
    import psutil

    jobs = draw_jobs(prompts, seed, pack)
    server: dict[str, Any] = {}
    rss: list[tuple[int, float]] = []
    reference: np.ndarray | None = None
    same, refs = 0, 0
    stop = time.monotonic() + 60 * minutes
    done: list[Job] = []
    with dit_runtime.running_server(log=log, started=lambda proc: server.update(proc=psutil.Process(proc.pid))) as url:
        client = ComfyClient(url, timeout=timeout)
        start = 0
        for size in queue_groups(prompts, seed):
            if time.monotonic() > stop:
                break
            group = jobs[start:start + size]
            start += size
            run_group(client, group, timeout)
            if not server["proc"].is_running():
                for job in group:
                    job.outcome, job.message = job.outcome or "crash", "the server process ended"
                done.extend(group)
                break
            for job in group:
                rss.append((job.index, server["proc"].memory_info().rss / 2**20))
                if job.kind == "reference" and job.outcome == "ok":
                    image = pixels(job.images[0])
                    reference = image if reference is None else reference
                    refs += 1
                    same += bool(np.array_equal(image, reference))
            done.extend(group)
    # the prompt after each interrupted one (the queue runs them in order) must come out as it would alone
    after = [b for a, b in itertools.pairwise(done) if a.outcome == "interrupted"]
    after_ok = sum(b.outcome not in (*FAILURES, "crash") for b in after)
    counts = Counter(job.outcome for job in done)
    messages = Counter(f"{job.outcome}: {job.message}" for job in done if job.message)
    return {"run": "pack" if pack else "control", "prompts": len(done), "counts": dict(counts),
            "messages": dict(messages), "reference_runs": refs, "reference_identical": same,
            "prompts_after_an_interrupt": len(after), "of_them_ok": after_ok,
            "rss_mb_first": rss[0][1] if rss else float("nan"), "rss_mb_last": rss[-1][1] if rss else float("nan"),
            "rss_growth_mb_per_100": growth_per_100(rss), "rss": rss}


def print_summary(result: dict[str, Any]) -> None:
    c = result["counts"]
    print(f"\n== {result['run']}: {result['prompts']} prompts")
    print("  " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    print(f"  failures (invalid accepted, errors inside the sampler, hangs, crashes): "
          f"{sum(c.get(k, 0) for k in (*FAILURES, 'crash'))}")
    print(f"  reference prompt: {result['reference_identical']} of {result['reference_runs']} runs bit-identical")
    print(f"  prompts right after an interrupt: {result['of_them_ok']} of {result['prompts_after_an_interrupt']} fine")
    print(f"  RSS {result['rss_mb_first']:.0f} MB -> {result['rss_mb_last']:.0f} MB; growth "
          f"{result['rss_growth_mb_per_100']:.1f} MB per 100 prompts")
    for message, n in sorted(result["messages"].items()):
        print(f"  {n:4d} x {message}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.benchmarks.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=300)
    parser.add_argument("--minutes", type=float, default=120.0, help="stop each run after this long")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=("pack", "control"), help="one of the two runs (e.g. both at once, "
                        "in two processes with their own --out)")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "soak")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for pack in [p for p in (True, False) if args.only in (None, "pack" if p else "control")]:
        name = "pack" if pack else "control"
        result = soak(args.prompts, args.seed, pack, args.minutes, log=args.out / f"server-{name}.log")
        print_summary(result)
        results.append(result)
    (args.out / "soak.json").write_text(json.dumps(results, indent=1))
    if len(results) == 2:
        pack_growth, control_growth = (r["rss_growth_mb_per_100"] for r in results)
        print(f"\nRSS growth per 100 prompts: pack {pack_growth:.1f} MB, control {control_growth:.1f} MB "
              f"(difference {pack_growth - control_growth:+.1f} MB)")
    return 1 if any(r["counts"].get(k) for r in results for k in (*FAILURES, "crash")) else 0


if __name__ == "__main__":
    raise SystemExit(main())

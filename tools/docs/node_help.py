"""Write the node help pages the frontend shows in a node's help panel: `web/docs/<NodeId>.md`.

    .venv/bin/python -m tools.docs.node_help        # starts ComfyUI, reads /object_info, writes web/docs/

Each page: what the node does (its description), when to use it and on which models (the record
below), its inputs with their ranges and tooltips (from the node's schema as ComfyUI reports it, so
the page never drifts from the node), its outputs, and a picture (`web/docs/pictures/<NodeId>.jpg`,
written by tools/pictures/gallery.py). A server test keeps the pages equal to this tool's output.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from tools import REPO
from tools.workflows.workflow_ui import _inputs as inputs_of

DOCS = REPO / "web" / "docs"
DOCS_URL = "https://github.com/ditaccel/ComfyUI-DiTAccel/blob/main/docs"
# each node's guide in docs/guides/: when to use it, what it costs, its measured figures
GUIDES = {"DiTAccelTaylorSeer": "taylorseer", "DiTAccelCGTaylor": "cg_taylor",
          "DiTAccelFirstBlockCache": "first_block_cache", "DiTAccelRAS": "ras", "DiTAccelJiT": "jit",
          "DiTAccelSoftPAG": "softpag", "DiTAccelHeadHunter": "headhunter",
          "DiTAccelSparseAttention": "sparse_attention", "DiTAccelCalibrate": "calibration",
          "DiTAccelLoadProfile": "calibration", "DiTAccelRecord": "record_and_report",
          "DiTAccelReport": "record_and_report"}


@dataclass(frozen=True)
class Help:
    use: str  # when to use it
    models: str  # which families it works on
    picture: str  # what the picture shows


CACHING_PRESETS = ("`quality` / `balanced` / `fast` set every `-1` (auto) input from the pack's settings record "
                   "for the loaded model's family (docs/results/settings.md lists them with their sources); "
                   "`custom` takes the numbers you set.")
ALL_FAMILIES = "Wan 2.x, Flux, SD3 / SD3.5, HunyuanVideo, Qwen-Image, Chroma, Lumina 2 / Z-Image, HiDream-I1."

HELP: dict[str, Help] = {
    "DiTAccelTaylorSeer": Help(
        "The first node to try for speed: 28–50-step image and video sampling where neighbouring steps look "
        "alike. "
        f"{CACHING_PRESETS}", ALL_FAMILIES, "Full compute (left) and the TaylorSeer graph at `balanced` (right)."),
    "DiTAccelCGTaylor": Help(
        "Like TaylorSeer, but every step runs the first block and checks its own forecast, so the skipped steps "
        f"follow how the features actually move; safer at aggressive settings. {CACHING_PRESETS}",
        ALL_FAMILIES, "Full compute (left) and the CG-Taylor graph (right)."),
    "DiTAccelFirstBlockCache": Help(
        "The FBCache / TeaCache idea: when the first block's residual barely changes, reuse the rest's. Use it "
        f"where you used WaveSpeed's or TeaCache's node; pick the threshold by preset. {CACHING_PRESETS}",
        ALL_FAMILIES, "Full compute (left) and the First Block Cache graph (right)."),
    "DiTAccelRAS": Help(
        "Large images and videos where some regions settle early: after the warm-up each step runs only the "
        "tokens in focus. Stacks with the caching nodes.",
        "Wan 2.x only (a clear error on other families).", "Full compute (left) and the RAS graph (right)."),
    "DiTAccelJiT": Help(
        "Early steps on a sparse set of anchor tokens; worth it at many tokens. Below its quality bar on the "
        "embedded model (see docs/limits.md).",
        "Wan 2.x only (a clear error on other families).", "Full compute (left) and the JiT graph (right)."),
    "DiTAccelSoftPAG": Help(
        "Better structure and prompt adherence than CFG alone, at the cost of one more model pass per step. "
        "Feed `heads` by hand or from DiT Accel HeadHunter.", ALL_FAMILIES,
        "CFG only (left) and SoftPAG on the shipped heads (right)."),
    "DiTAccelHeadHunter": Help(
        "Once per model: search which attention heads SoftPAG should perturb; save its `heads` text and reuse it. "
        "Costs rounds x candidates x seeds sampling runs.", ALL_FAMILIES,
        "CFG only (left) and SoftPAG on the heads this graph's search picked (right)."),
    "DiTAccelSparseAttention": Help(
        "Thousands of image or video tokens, where attention is most of the work. Below a few thousand tokens "
        "the dense attention is faster. The Triton kernel needs a CUDA GPU; on the CPU a PyTorch path runs.",
        ALL_FAMILIES, "Full compute (left) and the sparse-attention graph (right)."),
    "DiTAccelCalibrate": Help(
        "Once per model, step count, sampler and size you use: it samples at full compute and measures how the "
        "features move, so the pack's caching can be set from your model instead of published tables (fine-tunes, "
        "LoRAs, distilled models). Put it where your KSampler is, with the same inputs, and connect its `profile` "
        "output (or DiT Accel Load Profile's) to TaylorSeer, CG-Taylor or First Block Cache: their presets "
        "become error budgets planned on your model.", ALL_FAMILIES + " One model call per step (euler, "
        "dpmpp_2m, uni_pc, ...).", "The curves it measured on the embedded model (28 steps, euler)."),
    "DiTAccelLoadProfile": Help(
        "In a later graph: pick a profile DiT Accel Calibrate saved instead of calibrating again. The list is "
        "the profiles folder (user/ditaccel/profiles/) when the page loaded; refresh the page after calibrating.",
        ALL_FAMILIES, "What DiT Accel Calibrate measured (the profile it saved)."),
    "DiTAccelRecord": Help(
        "On a baseline graph (no DiTAccel node), so DiT Accel Report has steps to show and a baseline to compare "
        "with. The acceleration nodes record already.", ALL_FAMILIES,
        "A report on its node after a run (the TaylorSeer graph)."),
    "DiTAccelReport": Help(
        "After any graph with a DiTAccel node (or DiT Accel Record): what ran per step, the FLOPs and the time. "
        "Connect the sampler's model and its output latent; the table and the plot show on the node.",
        ALL_FAMILIES, "The report on its node after the TaylorSeer graph ran."),
}


# nodes whose page shows another node's picture (Record's work shows on the report)
PICTURE_OF = {"DiTAccelRecord": "DiTAccelReport", "DiTAccelLoadProfile": "DiTAccelCalibrate"}


def picture(node: str) -> str:
    return f"pictures/{PICTURE_OF.get(node, node)}.jpg"


def _range(opts: dict[str, Any]) -> str:
    parts = []
    if "min" in opts or "max" in opts:
        parts.append(f"{opts.get('min', '-inf')} … {opts.get('max', 'inf')}")
    if "default" in opts:
        parts.append(f"default {opts['default']}")
    return ", ".join(parts)


# combos whose options are what this machine holds (saved files): the page names them, not their list
LISTED_FROM_DISK = {("DiTAccelLoadProfile", "profile_name"): "a profile saved in user/ditaccel/profiles/"}


def _input_rows(node: str, info: dict) -> list[str]:
    rows = []
    for name, kind, opts in inputs_of(info):
        if (node, name) in LISTED_FROM_DISK:
            kind, opts = LISTED_FROM_DISK[node, name], {"tooltip": opts.get("tooltip", "")}
        elif isinstance(kind, list) or kind == "COMBO":
            choices = kind if isinstance(kind, list) else opts.get("options", [])
            # long lists are ComfyUI's own (samplers, schedulers) and differ between its versions
            listed = ", ".join(f"`{c}`" for c in choices)
            kind = f"one of {listed}" if len(choices) <= 8 else "a choice, as KSampler's"
        tip = " ".join(opts.get("tooltip", "").split()).replace("|", "\\|")
        rows.append(f"| `{name}` | {kind} | {_range(opts)} | {tip} |")
    return rows


def render(node: str, info: dict) -> str:
    h = HELP[node]
    lines = [f"# {info['display_name']}", "", " ".join(info["description"].split()), "",
             "## When to use it", "", h.use, "", f"Works on: {h.models}", "",
             "## Inputs", "", "| input | type | range | what it sets |", "|---|---|---|---|",
             *_input_rows(node, info), "",
             "## Outputs", ""]
    tips = info.get("output_tooltips") or [""] * len(info["output"])
    for kind, name, tip in zip(info["output"], info["output_name"], tips, strict=True):
        lines.append(f"- `{name}` ({kind}): {tip or ''}".rstrip(": "))
    lines += ["", "## Picture", "", f"![{node}]({picture(node)})", "", h.picture, "",
              f"The guide, with the measured speed-ups and quality: {DOCS_URL}/guides/{GUIDES[node]}.md", ""]
    return "\n".join(lines)


def pages(object_info: dict) -> dict[str, str]:
    return {node: render(node, object_info[node]) for node in HELP}


def main() -> int:
    from tools.runtime.comfy_client import ComfyClient
    from tools.runtime.dit_runtime import running_server

    with running_server() as url:
        info = ComfyClient(url).object_info()
    DOCS.mkdir(parents=True, exist_ok=True)
    for node, text in pages(info).items():
        (DOCS / f"{node}.md").write_text(text)
        print(f"wrote {(DOCS / f'{node}.md').relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Node x model extra memory at the sizes people run, from the memory contract's formulas.

    .venv/bin/python -m tools.benchmarks.memory_table [--out docs/results/memory.md]

Nothing runs a model: each node's `balanced` settings are resolved from the settings records for the
model, its forms are sized by the formulas the nodes use at run time (tested against measured
allocations in tests/unit/test_memory_contract.py), and the planner picks the first form that fits
the contract's budget, max(2 GB, 10 % of the model's weight bytes), with 64 GB of host memory.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

from comfyui_ditaccel.accel_core import memory
from comfyui_ditaccel.accel_core.adapters import UnsupportedModelError
from comfyui_ditaccel.accel_core.attention import engine
from comfyui_ditaccel.accel_core.caching import first_block, taylorseer
from comfyui_ditaccel.accel_core.guidance import softpag
from comfyui_ditaccel.accel_core.settings import records
from comfyui_ditaccel.accel_core.settings.resolve import Request
from comfyui_ditaccel.accel_core.settings.variants import NAMES, Variant
from comfyui_ditaccel.accel_core.spatial import jit, ras

from tools import REPO

SOFTPAG = "softpag"  # no presets: its defaults (heads auto) at any variant
HOST_MEMORY = 64 * 10**9  # a workstation's RAM, for the host-memory form
STEPS = 30  # memory does not depend on the step count; the records want one


@dataclass(frozen=True)
class RealModel:
    key: str  # the settings records' variant key
    family: str
    dims: memory.ModelDims
    streams: int  # conditioning entries per step at the usual setting (guidance-distilled models: CFG 1)
    text_tokens: int
    source: str
    # ComfyUI's memory_usage_factor for the model (comfy/supported_models.py): its activation estimate is
    # 2 x batch x latent cells x 2 bytes x 0.01 x factor MiB (BaseModel.memory_required with PyTorch attention)
    comfy_factor: float = 1.0

    def activations(self, cells: int, batch: int = 1) -> int:
        return int(2 * batch * cells * 2 * 0.01 * self.comfy_factor * 2**20)


def _lists(*lists: tuple) -> tuple[memory.ListDims, ...]:
    return tuple(memory.ListDims(*lst) for lst in lists)


def _wan(key: str, blocks: int, width: int, heads: int, params: float, source: str) -> RealModel:
    # the residual stream is float32 in ComfyUI's Wan (accel_core/adapters.py); weights and attention bf16
    dims = memory.ModelDims(NAMES[key], _lists((blocks, False, 3, 1)), width, heads, 4, 2, int(params * 2))
    return RealModel(key, "wan", dims, 2, 512, source, comfy_factor=width / 2222)  # WAN21_T2V: dim / 2222


MODELS = (
    _wan("wan2.1-14b", 40, 5120, 40, 14.0e9, "Wan2.1 wan/configs/wan_t2v_14B.py: dim 5120, 40 layers, 40 heads"),
    _wan("wan2.1-1.3b", 30, 1536, 12, 1.42e9, "Wan2.1 wan/configs/wan_t2v_1_3B.py: dim 1536, 30 layers, 12 heads"),
    _wan("wan2.2-5b", 30, 3072, 24, 5.0e9, "Wan2.2 wan/configs/wan_ti2v_5B.py: dim 3072, 30 layers, 24 heads"),
    RealModel("flux-dev", "flux", memory.ModelDims(NAMES["flux-dev"], _lists((19, False, 0, 0), (38, True, 0, 0)),
                                                   3072, 24, 2, 2, int(11.9e9 * 2)),
              1, 512, "ComfyUI comfy/ldm/flux: 19 double + 38 single blocks, hidden 3072, 24 heads; T5 512 tokens",
              comfy_factor=3.1),
    RealModel("hunyuan-video", "hunyuan_video",
              memory.ModelDims(NAMES["hunyuan-video"], _lists((20, False, 0, 0), (40, True, 0, 0)), 3072, 24, 2, 2,
                               int(12.8e9 * 2)),
              1, 256, "HunyuanVideo config: 20 double + 40 single blocks, hidden 3072, 24 heads; embedded guidance",
              comfy_factor=1.8),
    # its last block drops the text stream (the head reads the image only)
    RealModel("qwen-image", "qwen_image", memory.ModelDims(NAMES["qwen-image"], _lists((60, False, 0, 0, False)),
                                                           3072, 24, 2, 2, int(20.4e9 * 2)),
              2, 256, "Qwen-Image transformer config: 60 layers, 24 heads of 128", comfy_factor=1.8),
)

# (model key, label, latent shape (C, T, H, W), patch (t, h, w))
SIZES = (
    ("wan2.1-14b", "832x480x81", (16, 21, 60, 104)),
    ("wan2.1-14b", "1280x720x81", (16, 21, 90, 160)),
    ("wan2.1-1.3b", "832x480x81", (16, 21, 60, 104)),
    ("wan2.2-5b", "1280x704x121", (48, 31, 44, 80)),
    ("flux-dev", "1024x1024", (16, 1, 128, 128)),
    ("flux-dev", "2048x2048", (16, 1, 256, 256)),
    ("hunyuan-video", "1280x720x129", (16, 33, 90, 160)),
    ("qwen-image", "1328x1328", (16, 1, 166, 166)),
)
PATCH = (1, 2, 2)

# node label -> (records method, kind input or None, extra inputs, needs function, families)
NODES = (
    ("DiTAccelTaylorSeer", records.TAYLORSEER, {}, None),
    ("DiTAccelCGTaylor", records.CG_TAYLOR, {}, None),
    ("DiTAccelFirstBlockCache", records.FBCACHE, {}, None),
    ("DiTAccelRAS", records.RAS, {}, ("wan",)),
    ("DiTAccelJiT", records.JIT, {}, ("wan",)),
    ("DiTAccelJiT full_context", records.JIT, {"full_context": True}, ("wan",)),
    ("DiTAccelSparseAttention draft", records.SPARSE, {"method": "draft"}, None),
    ("DiTAccelSparseAttention pisa", records.SPARSE, {"method": "pisa"}, None),
    ("DiTAccelSparseAttention rettention", records.SPARSE, {"method": "rettention"}, None),
    ("DiTAccelSoftPAG", SOFTPAG, {}, None),
)


# per records method: its forms and the settings that need less memory (the nodes' own functions)
MEMORY = {
    records.TAYLORSEER: (taylorseer.memory_needs, taylorseer.memory_hints),
    records.CG_TAYLOR: (first_block.cgtaylor_memory_needs, first_block.cgtaylor_memory_hints),
    records.FBCACHE: (first_block.fbcache_memory_needs, lambda c: []),
    records.RAS: (ras.memory_needs, lambda c: []),
    records.JIT: (jit.memory_needs, jit.memory_hints),
    records.SPARSE: (engine.memory_needs, engine.memory_hints),
}


def cell(node: str, method: str, inputs: dict, families: tuple[str, ...] | None, model: RealModel,
         shape: memory.RunShape, activations: int) -> tuple[str, str]:
    if families is not None and model.family not in families:
        return "-", "not supported on this family"
    variant = Variant(model.family, model.key, NAMES[model.key], "record")
    if method == SOFTPAG:
        config = softpag.SoftPAGConfig(softpag.AUTO)
        forms = softpag.memory_needs(config, model.dims, shape)
        written = f"{memory.gb(forms[0].held + forms[0].transient)} + {memory.gb(forms[0].between)}"
        return written, f"device: {memory.gb(forms[0].device(activations))} (its pass is a stream of its own)"
    try:
        config = Request(method, "balanced", {k: v for k, v in inputs.items() if k != "full_context"}).resolve(
            variant, STEPS).config
    except UnsupportedModelError:
        return "-", "no settings record"
    if "full_context" in inputs:
        config = replace(config, full_context=inputs["full_context"])
    if method == records.TAYLORSEER:
        config = config.resolved(True, model.family)
    fn, hints = MEMORY[method]

    def forms(shape: memory.RunShape, c: object = config) -> tuple[memory.Need, ...]:
        return fn(c, model.dims, shape)

    entry = memory.Entry(method, node.split()[0], forms,
                         [(text, lambda s, c=c: fn(c, model.dims, s)) for text, c in hints(config)])
    first = forms(shape)[0]
    budget = memory.Budget(model.dims.budget_rule(), HOST_MEMORY, "the contract's budget", activations=activations,
                           host_relieves=True)
    written = f"{memory.gb(first.held + first.transient)} + {memory.gb(first.between)}"
    try:
        plan = memory.plan([entry], shape, budget)
    except memory.MemoryRefused as refused:
        return written, "refused: " + str(refused).split(": ", 1)[1]
    chosen = plan.chosen[method]
    if chosen.form == memory.NONE:
        return "0", chosen.note or "keeps nothing"
    what = f"{chosen.form}: {memory.gb(chosen.device(activations))}"
    if chosen.host:
        what += f", {memory.gb(chosen.host)} in host memory, {memory.gb(chosen.moved)} copied per step"
    return written, what


def table() -> str:
    by_key = {m.key: m for m in MODELS}
    lines = [
        "| model, size | tokens | budget | ComfyUI's activations | node (balanced) | as written: kept + in-block "
        "/ between blocks | form that fits: extra device memory |",
        "|---|---:|---:|---:|---|---:|---|",
    ]
    for key, label, (c, t, h, w) in SIZES:
        model = by_key[key]
        tokens = t * (h // PATCH[1]) * (w // PATCH[2])
        shape = memory.RunShape(image_tokens=tokens, text_tokens=model.text_tokens, batch=1, streams=model.streams,
                                latent_values=c * t * h * w)
        activations = model.activations(t * h * w)
        for node, method, inputs, families in NODES:
            written, form = cell(node, method, inputs, families, model, shape, activations)
            lines.append(f"| {model.dims.name} {label} | {tokens} | {memory.gb(model.dims.budget_rule())} | "
                         f"{memory.gb(activations)} | {node} | {written} | {form} |")
    return "\n".join(lines)


def page() -> str:
    sources = "\n".join(f"- {m.dims.name}: {m.source}; {m.streams} conditioning entr{'y' if m.streams == 1 else 'ies'}"
                        f" per step, {m.text_tokens} text tokens, weights {memory.gb(m.dims.weight_bytes)} (bf16)"
                        for m in MODELS)
    return f"""# Extra memory per node and model

The extra device memory each acceleration node keeps and allocates, how the pack plans it against
what the device can give before the model loads, and what it does when a node does not fit; then every
node at real models' sizes (formulas checked against measured allocations at small sizes, not GPU
measurements).

## How the pack plans memory for the nodes

Every acceleration node declares the extra memory it keeps across steps and allocates per call, as a
formula of the model's width, depth and heads, the token count, the batch and conditioning entries, the
dtype and its resolved settings (beside each method: `memory_needs` in `accel_core/caching/`,
`spatial/`, `attention/engine.py`; added up and planned in `accel_core/memory.py`). When a sampling run
starts, before the model loads, the pack plans every node stacked on the model against what the device
can give (its free memory plus the weights ComfyUI can offload, less ComfyUI's own estimate of the
sampling's activations) and asks ComfyUI's loader to make room for it, so weights are offloaded
instead of the sampling running out of memory halfway. A node that does not fit as written switches
to a form that does: forecast tables, residuals or keys and values kept in **host memory** (moved to
the device when used; the report estimates the copy time per step), Re-ttention's residual in the
**model's dtype**, or sparse attention **chunked** (a group of heads, and the skipped-block estimate a
slice of the queries, at a time). Where no form fits, the prompt is refused before the first step,
naming the node, what it needs, what is free and a setting that fits; the server test's refusal
(`tests/integration/test_memory_budget.py`, budget 3 MB, JiT with full context over TaylorSeer at 512 px):

```
DiTAccelJiT: not enough memory to run at 1024 image tokens x 2 batch rows: it needs 5.0 MB of extra device
memory (host memory form, plus 25.2 MB of host memory); 2.9 MB is free for it (of 3.0 MB; the other nodes
use the rest), as DITACCEL_DEVICE_MEMORY sets. Fits with full_context off; or at up to 596 image tokens
(a smaller size or fewer frames).
```

The report prints each node's form (`memory: DiTAccelRAS: host memory, ...`). `DITACCEL_DEVICE_MEMORY`
(e.g. `6GB`) sets the device budget by hand and `DITACCEL_HOST_MEMORY` the host one.
The table below covers every node at the sizes people run (Wan 2.1 14B 832×480×81 and 1280×720×81,
Wan 1.3B, Wan 2.2 5B, Flux 1024² and 2048², HunyuanVideo 1280×720×129, Qwen-Image 1328²) against the
contract's budget, max(2 GB, 10 % of the model's weights): every node fits there at its `balanced`
settings, in its own or another form, except RAS and JiT with full context at 1280×720×81 on Wan 14B
(their keys and values, 124 GB, exceed 64 GB of host memory) and Re-ttention on Wan 14B and
HunyuanVideo (refused, naming the size that fits).

## Extra device memory per node at real models' sizes

Computed 2026-12-07 on the 2-core CPU dev machine (no GPU): the nodes' formulas at real models'
dimensions, no model runs.

Made by `.venv/bin/python -m tools.benchmarks.memory_table --out docs/results/memory.md` (no model runs:
the formulas the nodes use at run time, tested against measured allocations at three small sizes per
method in `tests/unit/test_memory_contract.py`).

"As written" is a node's extra device memory at its `balanced` settings in its first form: what it
keeps across steps plus what it allocates inside a block, then what it allocates between blocks
(where a block's own activations are freed: that part counts only beyond ComfyUI's own estimate of
the sampling's activations, which ComfyUI's loader keeps free). "Form that fits" is what the run's
memory plan picks against the budget max(2 GB, 10 % of the model's weights), with
{memory.gb(HOST_MEMORY)} of host memory, and the extra device memory it then needs; host-memory
copies are estimated at {memory.HOST_COPY_BYTES_PER_S / 1e9:g} GB/s. At run time the budget is the
device's free memory plus the weights ComfyUI can offload, less ComfyUI's own estimate of the
sampling's activations (`DITACCEL_DEVICE_MEMORY` sets it by hand), and the report prints the form
each node ran in. A refusal is raised before the first step with the message shown.

Not measured here: the formulas are checked against measured allocations on the CPU at small
sizes; the figures below are those formulas at real models' dimensions, not GPU measurements.

Sparse attention runs only on CUDA with Triton; on other devices it keeps nothing.

{table()}

Model dimensions:
{sources}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="write the page here (default: print it)")
    args = parser.parse_args()
    text = page()
    if args.out is None:
        print(text)
        return
    out = args.out if args.out.is_absolute() else REPO / args.out
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

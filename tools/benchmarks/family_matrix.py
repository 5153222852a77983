"""Every method on every model family the pack knows: engaged, or the clear error it gives.

    .venv/bin/python -m tools.benchmarks.family_matrix            # prints the matrix of docs/results/families.md

In process on real ComfyUI: for each family the smallest model 0.3.75's loader detects (the
embedded Wan model; Flux, SD3, HunyuanVideo, Qwen-Image, Chroma, Lumina 2 and Z-Image with seeded
random weights, made on first use; HiDream, whose depth and width detection fixes at ~17B parameters,
built in process from ComfyUI's own classes at 2 + 2 blocks, tools/runtime/hidream_model.py),
a short sampling run per method, checked for work skipped (caching, sparse attention: the
report's FLOPs run below 100 %) or guidance applied (SoftPAG: one extra model call per step and
a different image). Random-weight models show plumbing, not quality.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FAMILIES = ("wan", "flux", "sd3", "hunyuan_video", "qwen_image", "chroma", "lumina2", "z_image", "hidream")
METHODS = ("TaylorSeer", "TaylorSeer modules", "CGTaylor", "FirstBlockCache", "SoftPAG", "SparseAttention", "RAS",
           "JiT")


@dataclass(frozen=True)
class Family:
    name: str
    load: Callable[[], Any]
    video: bool
    pooled: int
    heads: str  # a SoftPAG spec touching the first block
    context_dim: int = 4096  # width of the text conditioning the model takes
    steps: int = 4  # Chroma's fixed-size approximator makes its steps slow: it runs 3
    # seed -> conditioning, where the model takes more than a context and a pooled vector (HiDream: Llama layers)
    conditioning: Callable[[int], list] | None = None


GATED = ("CGTaylor", "FirstBlockCache")  # run the first block and gate the rest: need a second block
# Wan only: the other families compute attention inside the block, not in submodules (modules), or their
# blocks take joint text + image streams that the token-subset plumbing does not split yet (RAS, JiT)
EXPECTED_UNSUPPORTED = ("TaylorSeer modules", "RAS", "JiT")
SUBSET_REASON = "Wan only so far: running part of the tokens does not split joint text + image streams yet"
SHORT_REASONS = {"RAS": SUBSET_REASON, "JiT": SUBSET_REASON}


@dataclass
class Cell:
    family: str
    method: str
    ok: bool  # engaged, or a documented reason it cannot here
    detail: str
    engaged: bool = True


def families() -> dict[str, Family]:
    import comfy.sd

    from tools.runtime import dit_runtime, hidream_model, model_files

    def loader(path_fn: Callable[[], Path]) -> Callable[[], Any]:
        return lambda: comfy.sd.load_diffusion_model(str(path_fn()))

    wan = lambda: dit_runtime.layout().models / "diffusion_models" / model_files.WAN_DIT_FILE  # noqa: E731
    return {
        "wan": Family("wan", loader(wan), True, 0, "1:all"),
        "flux": Family("flux", loader(dit_runtime.ensure_flux_thin), False, 2048, "double:0:all"),
        "sd3": Family("sd3", loader(dit_runtime.ensure_sd3_tiny), False, 2048, "1:all"),
        "hunyuan_video": Family("hunyuan_video", loader(dit_runtime.ensure_hunyuan_video_tiny), True, 768,
                                "double:0:all"),
        "qwen_image": Family("qwen_image", loader(dit_runtime.ensure_qwen_image_thin), True, 0, "0:all", 3584),
        "chroma": Family("chroma", loader(dit_runtime.ensure_chroma_thin), False, 768, "double:0:all", steps=3),
        "lumina2": Family("lumina2", loader(dit_runtime.ensure_lumina2_tiny), False, 0, "0:all", 2304),
        # Lumina 2's class at width 3840 with its text and image padded to multiples of 32 (pad tokens)
        "z_image": Family("z_image", loader(dit_runtime.ensure_zimage_thin), False, 0, "0:all", 2560),
        "hidream": Family("hidream", hidream_model.make_hidream_tiny, False, 0, "double:0:all",
                          conditioning=hidream_model.hidream_conditioning),
    }


def apply(method: str, model: Any, family: Family) -> Any:
    from comfyui_ditaccel.accel_core.attention.apply import apply_sparse_attention
    from comfyui_ditaccel.accel_core.attention.config import SparseAttentionConfig
    from comfyui_ditaccel.accel_core.caching import apply as caching
    from comfyui_ditaccel.accel_core.caching.first_block import CGTaylorConfig, FirstBlockCacheConfig
    from comfyui_ditaccel.accel_core.caching.taylorseer import TaylorSeerConfig
    from comfyui_ditaccel.accel_core.guidance.apply import apply_softpag
    from comfyui_ditaccel.accel_core.guidance.softpag import SoftPAGConfig
    from comfyui_ditaccel.accel_core.spatial.apply import apply_jit, apply_ras
    from comfyui_ditaccel.accel_core.spatial.jit import JiTConfig
    from comfyui_ditaccel.accel_core.spatial.ras import RASConfig

    if method == "TaylorSeer":
        # order 0: the default granularity `auto` runs `output` (SD3: `blocks`); the plumbing tests cover `blocks`
        return caching.apply_taylorseer(model, TaylorSeerConfig(interval=2, order=0, warmup_steps=1))
    if method == "TaylorSeer modules":
        return caching.apply_taylorseer(model, TaylorSeerConfig(interval=2, order=1, warmup_steps=1,
                                                                granularity="modules"))
    if method == "CGTaylor":
        return caching.apply_cg_taylor(model, CGTaylorConfig(threshold=2.0, warmup_steps=1))
    if method == "FirstBlockCache":
        return caching.apply_first_block_cache(model, FirstBlockCacheConfig(threshold=2.0, warmup_steps=1))
    if method == "SoftPAG":
        return apply_softpag(model, SoftPAGConfig(family.heads, 1.0, 3.0))
    if method == "RAS":
        return apply_ras(model, RASConfig(sample_ratio=0.3, warmup_steps=1, dense_steps=0, final_dense_steps=1))
    if method == "JiT":
        return apply_jit(model, JiTConfig(stages=(0.5, 1.0), densities=(0.4, 1.0), warmup_steps=1,
                                          full_context=True))
    # 8 x 8 image tokens here: tiles of 4 x 4 queries and 2 x 2 keys so that there is something to skip
    return apply_sparse_attention(model, SparseAttentionConfig(method="draft", density=0.3, dense_steps=1,
                                                               dense_blocks=0, query_tile=4, key_tile=2,
                                                               min_tokens=1))


def run_family(family: Family, methods: tuple[str, ...] = METHODS, steps: int | None = None) -> list[Cell]:
    import torch
    from comfyui_ditaccel.accel_core.adapters import UnsupportedModelError, find_adapter
    from comfyui_ditaccel.accel_core.comfy_patch import report_holder

    from tools.runtime.sampling import conditioning, sample

    model = family.load()
    steps = steps or family.steps

    def cond(seed: int) -> list:
        if family.conditioning is not None:
            return family.conditioning(seed)
        return conditioning(seed, tokens=5, dim=family.context_dim, pooled=family.pooled)

    def draw(m: Any) -> torch.Tensor:
        pos, neg = cond(1), cond(2)
        return sample(m, steps=steps, size=(128, 128), video=family.video, positive=pos, negative=neg,
                      pooled=family.pooled)

    baseline = draw(model)
    blocks = sum(len(getattr(model.get_model_object("diffusion_model"), b.attr, ()))
                 for b in find_adapter(model.get_model_object("diffusion_model")).block_lists)
    cells = []
    for method in methods:
        if method in GATED and blocks < 2:
            cells.append(Cell(family.name, method, True, f"needs ≥ 2 blocks; this test model has {blocks}",
                              engaged=False))
            continue
        try:
            patched = apply(method, model, family)
        except UnsupportedModelError as e:
            cells.append(Cell(family.name, method, False,
                              SHORT_REASONS.get(method, str(e).split(": ", 1)[-1].split(";")[0])))
            continue
        out = draw(patched)
        record = report_holder(patched).latest
        finite = bool(torch.isfinite(out).all())
        if method == "SoftPAG":
            ok = finite and len(record.calls) == 2 * steps and not torch.equal(out, baseline)
            detail = f"{len(record.calls)} model calls for {steps} steps"
        else:
            ok = finite and record.flops_share < 1.0
            detail = f"FLOPs run {100 * record.flops_share:.1f} %"
        cells.append(Cell(family.name, method, ok, detail))
    return cells


def matrix() -> list[Cell]:
    return [c for f in families().values() for c in run_family(f)]


def markdown(cells: list[Cell]) -> str:
    names = list(dict.fromkeys(c.family for c in cells))
    lines = ["| family | " + " | ".join(METHODS) + " |", "|---|" + "---|" * len(METHODS)]
    for name in names:
        row = {c.method: c for c in cells if c.family == name}
        parts = []
        for m in METHODS:
            c = row.get(m)
            if c is None:
                parts.append("-")
            elif c.ok:
                parts.append(f"✓ ({c.detail})" if c.engaged else f"n/a ({c.detail})")
            else:
                parts.append(f"not supported: {c.detail}")
        lines.append(f"| {name} | " + " | ".join(parts) + " |")
    return "\n".join(lines)


def main() -> int:
    from tools.runtime import dit_runtime

    dit_runtime.in_process()
    import torch

    torch.set_grad_enabled(False)
    print(markdown(matrix()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

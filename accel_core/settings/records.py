"""Settings records: per model variant, per method and preset, the values and where each comes from.

Beside the adapter records (adapters.py says how a family is built; these say how to accelerate
each of its variants). Every preset names its source: a paper's reference script (file and
commit), a peer pack's documented setting, our own measurement (the command; the figures live in
the docs page named), or "derived: <rule>, not measured". docs/research/settings_sources.md holds
the published values these come from; `python -m tools.benchmarks.settings_table` prints what they
resolve to.

Step-dependent values are written as their sources give them: a `Steps` is a count given at a
step count and scaled to the run's (in proportion, as a share of the schedule, or with the square
root of the step ratio where that rule was measured); plain numbers are fixed whatever the steps
(TaylorSeer's interval N is a fixed count in its reference code).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

PRESETS = ("quality", "balanced", "fast")
PRESET_NAMES = (*PRESETS, "custom")

TAYLORSEER, CG_TAYLOR, FBCACHE = "taylorseer", "cg_taylor", "first_block_cache"
RAS, JIT, SPARSE = "ras", "jit", "sparse_attention"


@dataclass(frozen=True)
class Steps:
    """A step count given for a run of `at` steps; `rule` says how it follows the run's step count:
    "share" keeps the same share of the schedule, "sqrt" grows with the square root of the step ratio."""

    value: float
    at: int
    rule: str = "share"
    minimum: int = 0

    def __post_init__(self) -> None:
        if self.rule not in ("share", "sqrt") or self.at <= 0:
            raise ValueError(f"bad Steps record: {self}")

    def steps(self, total_steps: int) -> int:
        ratio = total_steps / self.at
        return max(self.minimum, round(self.value * (ratio if self.rule == "share" else math.sqrt(ratio))))


@dataclass(frozen=True)
class Preset:
    values: Mapping[str, Any]
    source: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))


@dataclass(frozen=True)
class VariantRecord:
    family: str
    key: str
    # method (or "sparse_attention/<kind>" for one attention kind) -> preset -> values and source
    methods: Mapping[str, Mapping[str, Preset]] = field(default_factory=dict)


def presets(quality: Preset, balanced: Preset, fast: Preset) -> dict[str, Preset]:
    return {"quality": quality, "balanced": balanced, "fast": fast}


def derived(base: Preset, rule: str, **changes: Any) -> Preset:
    """`base` changed by `changes`, its source saying which rule made it (not measured)."""
    return Preset({**base.values, **changes}, f"derived: {rule}; not measured (from: {base.source})")


def borrowed(table: Mapping[str, Preset], other: str) -> dict[str, Preset]:
    """Another variant's presets where nothing is published for this one."""
    return {p: Preset(v.values, f"derived: {other}'s setting, nothing published for this model; not measured "
                                f"(from: {v.source})") for p, v in table.items()}


# --- the embedded models: measured here ----------------------------------------------------------

_SWEEP = ("measured: tools/benchmarks/sweep_caching.py and tools/benchmarks/bench_caching.py --sweep --split tune "
          "(docs/results/caching.md)")
_SPATIAL = "measured: tools/benchmarks/bench_spatial.py --sweep --split tune (docs/results/spatial.md)"
_SPARSE_E2E = ("measured: tools/benchmarks/bench_sparse_e2e.py --split tune at 1024 px "
               "(docs/results/sparse_attention.md)")


def _ts(interval: int, threshold: float) -> dict[str, Any]:
    # order 0 measured best at every interval on the embedded model; warm-up and interval given for 28 steps
    return {"interval": Steps(interval, 28, "sqrt", 1), "order": 0, "warmup_steps": Steps(2, 28),
            "threshold": threshold}


def _gate(threshold: float, max_skips: int, **more: Any) -> dict[str, Any]:
    return {"threshold": threshold, "max_skips": Steps(max_skips, 28, "sqrt"), "warmup_steps": Steps(2, 28), **more}


def _ras(warmup: int, dense: int) -> dict[str, Any]:
    return {"sample_ratio": 0.15, "warmup_steps": Steps(warmup, 28), "dense_steps": dense, "final_dense_steps": 1,
            "high_ratio": 0.0, "starvation_scale": 0.1, "metric": "std"}


def _jit(stages: tuple[float, ...], densities: tuple[float, ...], warmup: int) -> dict[str, Any]:
    # a model trained at one resolution does not read a sparse token grid as the image: full warm-up steps
    # and full-context attention keep the layout there (the paper's own schedule loses it)
    return {"stages": stages, "densities": densities, "relax": 3, "interpolate": "clean", "warmup_steps": warmup,
            "full_context": True}


EMBEDDED = {
    TAYLORSEER: presets(Preset(_ts(6, 0.03), _SWEEP), Preset(_ts(8, 0.1), _SWEEP), Preset(_ts(14, 0.5), _SWEEP)),
    CG_TAYLOR: presets(Preset(_gate(0.1, 6, order=1, first_block_order=2), _SWEEP),
                       Preset(_gate(0.6, 8, order=0, first_block_order=2), _SWEEP),
                       Preset(_gate(2.0, 12, order=0, first_block_order=2), _SWEEP)),
    FBCACHE: presets(Preset(_gate(0.1, 6), _SWEEP), Preset(_gate(0.2, 6), _SWEEP), Preset(_gate(0.5, 6), _SWEEP)),
    RAS: presets(Preset(_ras(6, 2), _SPATIAL), Preset(_ras(6, 0), _SPATIAL), Preset(_ras(4, 0), _SPATIAL)),
    JIT: presets(Preset(_jit((0.4, 0.65, 1.0), (0.35, 0.62, 1.0), 4), _SPATIAL),
                 Preset(_jit((0.5, 0.75, 1.0), (0.25, 0.5, 1.0), 4), _SPATIAL),
                 Preset(_jit((0.75, 0.9, 1.0), (0.15, 0.35, 1.0), 3), _SPATIAL)),
    SPARSE: presets(Preset({"density": 0.3, "dense_steps": 6, "dense_blocks": 1}, _SPARSE_E2E),
                    Preset({"density": 0.2, "dense_steps": 4, "dense_blocks": 1}, _SPARSE_E2E),
                    Preset({"density": 0.12, "dense_steps": 3, "dense_blocks": 0}, _SPARSE_E2E)),
}

# --- published settings (docs/research/settings_sources.md gives each with its context) -----------

_TS_FLUX = ("TaylorSeer reference: Shenyi-Z/TaylorSeer TaylorSeer-FLUX/src/flux/modules/cache_functions/cache_init.py "
            "l.95-100 @288776d (N=6, O=1, first_enhance=3 at 50 steps)")
_TS_WAN = ("TaylorSeer reference: Shenyi-Z/TaylorSeer TaylorSeer-Wan2.1/wan/taylorseer/cache_functions/cache_init.py "
           "l.48-52 @288776d (N=5, O=1, first_enhance=1 at 50 steps; one config for 1.3B and 14B)")
_TS_WAN22 = ("peer: philipy1219/ComfyUI-TaylorSeer examples/taylorseerlite_example_wan2-2.json @62d9fac (per expert "
             "N=5, O=1, first_enhance=1, each expert's own sampler)")
_TS_HUNYUAN = ("TaylorSeer reference: Shenyi-Z/TaylorSeer TaylorSeer-HunyuanVideo/hyvideo/modules/cache_functions/"
               "cache_init.py l.103-114 @288776d (N=5, O=1, first_enhance=1 at 50 steps)")
_TS_QWEN = ("TaylorSeer reference: Shenyi-Z/Cache4Diffusion qwen_image/taylorseer_qwen_image/cache_functions/"
            "cache_init.py @91a1949 (N=6, O=1, first_enhance=3 at 50 steps)")
_TS_ZIMAGE = ("peer: philipy1219/ComfyUI-TaylorSeer examples/taylorseerlite_example_z-image.json @62d9fac "
              "(N=5, O=1, first_enhance=10 at 30 steps)")
_TS_HIDREAM = ("TaylorSeer reference: Shenyi-Z/TaylorSeer TaylorSeer-HiDream/hi_diffusers/models/cache_functions/"
               "cache_init.py l.28-30 @288776d (N=4, O=2, first_enhance=1 at 50 steps, HiDream-I1-Full)")


def _taylor(interval: int, order: int, warmup: Steps | int, source: str) -> dict[str, Preset]:
    # the reference runs a fixed interval (threshold 0); `auto` granularity then forecasts the block stack
    base = Preset({"interval": interval, "order": order, "warmup_steps": warmup, "threshold": 0.0}, source)
    return presets(derived(base, "the reference interval less 2 (min 2)", interval=max(2, interval - 2)), base,
                   derived(base, "the reference interval plus 2", interval=interval + 2))


_CG_FLUX = ("CG-Taylor reference: PaddlePaddle/PaddleMIX ppdiffusers/examples/Fast-Diffusers/Training-Free/CG-Taylor/"
            "Flux.1-dev text_to_image_generation_cg-taylor_flux.py @fe186e3, cache_init_step_block.py and "
            "CGTaylor_flux_forward.py @7595156 (gate 0.03, orders 1/1, no gating before step 5 of 50, no skip cap)")
_CG_FLUX_FAST = "CG-Taylor reference: README (PaddleMIX @fe186e3): 'confidence gate=0.13/0.03' on Flux.1-dev"
_CG_WAN = ("CG-Taylor reference: PaddleMIX CG-Taylor/Wan2.1 text_to_video_generation-Wan_video_cg-taylor.py, "
           "cache_step_init.py, CGTaylor_wan_forward.py @fe186e3 (Wan2.1-T2V-1.3B: gate 0.18, first-block order 3, "
           "last-block order 1, no gating before step 6 of 50, no skip cap)")
_CG_WAN_FAST = "CG-Taylor reference: README (PaddleMIX @fe186e3): gate 0.36 on Wan 2.1"
_CG_HUNYUAN = ("CG-Taylor reference: PaddleMIX CG-Taylor/HunyuanVideo text_to_video_generation-hunyuan_video_"
               "cg-taylor.py, cache_init_step_block.py, CGTaylor_hunyuan_forward.py @fe186e3 (gate 0.08, orders 2/1, "
               "no gating before step 6 of 50)")
NO_CAP = 50  # the skip limit's largest value: the references cap nothing


def _cg(threshold: float, fb_order: int, order: int, warmup: Steps, source: str) -> Preset:
    return Preset({"threshold": threshold, "first_block_order": fb_order, "order": order, "warmup_steps": warmup,
                   "max_skips": NO_CAP}, source)


_CG_FLUX_P = _cg(0.03, 1, 1, Steps(5, 50), _CG_FLUX)
CG_FLUX = presets(derived(_CG_FLUX_P, "half the reference gate", threshold=0.015), _CG_FLUX_P,
                  Preset({**_CG_FLUX_P.values, "threshold": 0.13}, _CG_FLUX_FAST))
_CG_WAN_P = _cg(0.18, 3, 1, Steps(6, 50), _CG_WAN)
CG_WAN = presets(derived(_CG_WAN_P, "half the reference gate", threshold=0.09), _CG_WAN_P,
                 Preset({**_CG_WAN_P.values, "threshold": 0.36}, _CG_WAN_FAST))
_CG_HY_P = _cg(0.08, 2, 1, Steps(6, 50), _CG_HUNYUAN)
CG_HUNYUAN = presets(derived(_CG_HY_P, "half the reference gate", threshold=0.04), _CG_HY_P,
                     derived(_CG_HY_P, "twice the reference gate", threshold=0.16))

_FB_FLUX = "peer: chengzeyi/Comfy-WaveSpeed README table @8253745 (flux-dev residual_diff_threshold 0.12 at 28 steps)"
_FB_FLUX_Q = "peer: chengzeyi/ParaAttention doc/fastest_flux.md @4de137c (0.08 at 28 steps)"
_FB_FLUX_F = "peer: vipshop/cache-dit docs/DBCache.md, read as a search excerpt (F1B0 0.20 at 28 steps)"
_FB_SD3 = "peer: Comfy-WaveSpeed README and workflows/sd3.5.json @8253745 (sd3.5 large 0.12 at 30 steps)"
_FB_HUNYUAN = "peer: Comfy-WaveSpeed README and workflows/hunyuan_video.json @8253745 (0.1 at 20 steps)"
_FB_HUNYUAN_Q = "peer: chengzeyi/ParaAttention doc/fastest_hunyuan_video.md @4de137c (0.06 at 30 steps)"
_FB_WAN = ("peer: chengzeyi/ParaAttention src/para_attn/first_block_cache/diffusers_adapters/wan.py @4de137c^ "
           "(0.03 at 30 steps, Wan 2.1 1.3B; the same adapter serves 14B)")
_FB_QWEN = ("peer: huggingface/diffusers docs/source/en/optimization/cache.md @0a1f367 (FirstBlockCache 0.2 on "
            "Qwen-Image)")


def _fb(threshold: float, source: str) -> Preset:
    # FBCache computes the first step and caps nothing
    return Preset({"threshold": threshold, "max_skips": NO_CAP, "warmup_steps": 1}, source)


FB_FLUX = presets(_fb(0.08, _FB_FLUX_Q), _fb(0.12, _FB_FLUX), _fb(0.2, _FB_FLUX_F))
FB_SD3 = presets(derived(_fb(0.12, _FB_SD3), "two thirds of the published threshold", threshold=0.08),
                 _fb(0.12, _FB_SD3), derived(_fb(0.12, _FB_SD3), "5/3 of the published threshold", threshold=0.2))
FB_HUNYUAN = presets(_fb(0.06, _FB_HUNYUAN_Q), _fb(0.1, _FB_HUNYUAN),
                     derived(_fb(0.1, _FB_HUNYUAN), "5/3 of the published threshold", threshold=0.16))
FB_WAN = presets(derived(_fb(0.03, _FB_WAN), "two thirds of the published threshold", threshold=0.02),
                 _fb(0.03, _FB_WAN), derived(_fb(0.03, _FB_WAN), "twice the published threshold", threshold=0.06))
FB_QWEN = presets(derived(_fb(0.2, _FB_QWEN), "two thirds of the published threshold", threshold=0.13),
                  _fb(0.2, _FB_QWEN), derived(_fb(0.2, _FB_QWEN), "1.5x the published threshold", threshold=0.3))

_RAS_PAPER = ("RAS reference: microsoft/RAS scripts/Stable_Diffusion_3_example.sh @a9c5ec8 (sample ratio 0.5, "
              "warm-up 4 of 28 steps, error resets at steps 12 and 20, high_ratio 0.3, starvation 1); the ComfyUI "
              "port (Slickytail/ComfyUI-RegionalAdaptiveSampling @dfdf983) uses 0.5 on Wan 2.1 1.3B and 2.2 5B")
# two refreshes spread evenly after a warm-up of 4 land on steps 12 and 20 of 28, as the reference's resets
_RAS_P = Preset({"sample_ratio": 0.5, "warmup_steps": Steps(4, 28), "dense_steps": Steps(2, 28),
                 "final_dense_steps": 0, "high_ratio": 0.3, "starvation_scale": 1.0, "metric": "std"}, _RAS_PAPER)
RAS_REAL = presets(derived(_RAS_P, "a larger share of tokens", sample_ratio=0.7), _RAS_P,
                   derived(_RAS_P, "the port's lowest advised share ('below 0.3 is usually very bad')",
                           sample_ratio=0.3))

_JIT_PAPER = ("JiT reference: Wenhao-Sun77/Just-in-Time flux/pipeline_flux_JiT.py l.121-152 @818ed8d (Flux-dev "
              "default_4x: stages 0.4/0.65/1, densities 0.35/0.62/1, R 3, velocity interpolation, no warm-up)")
_JIT_PAPER_7X = ("JiT reference: Wenhao-Sun77/Just-in-Time flux/pipeline_flux_JiT.py @818ed8d, default_7x "
                 "densities 0.32/0.6/1")
_JIT_P = Preset({"stages": (0.4, 0.65, 1.0), "densities": (0.35, 0.62, 1.0), "relax": 3, "interpolate": "velocity",
                 "warmup_steps": 0, "full_context": False}, _JIT_PAPER)
JIT_REAL = presets(derived(_JIT_P, "denser stages", densities=(0.5, 0.75, 1.0)), _JIT_P,
                   Preset({**_JIT_P.values, "densities": (0.32, 0.6, 1.0)}, _JIT_PAPER_7X))

_SVG2_WAN = ("Sparse VideoGen2 reference: svg-project/Sparse-VideoGen scripts/wan/wan_t2v_720p_sap.sh @5ce7b01 "
             "(Wan 2.1 14B: first 0.2 of the steps dense, 1 of 40 layers)")
_DRAFT_WAN = ("DraftAttention reference: shawnricecake/draft-attention wan/wan/modules/attention.py l.483 @f3c81d5 "
              "(sparsity 0.9, block 0 dense, dense while t > 925: 15 of 50 steps at shift 5)")
_SVG2_HY = ("Sparse VideoGen2 reference: svg-project/Sparse-VideoGen scripts/hyvideo/hyvideo_t2v_720p_sap.sh "
            "@5ce7b01 (first 0.1 of the steps dense, 1 layer)")
_DRAFT_HY = ("DraftAttention reference: shawnricecake/draft-attention hunyuan/hyvideo/modules/models.py l.211, 380 "
             "@f3c81d5 (sparsity 0.9, double blocks 0-1 dense, dense while t > 945: 15 of 50 steps)")
_PISA_FLUX = ("PISA reference: xie-lab-ml/piecewise-sparse-attention piecewise_attn/models/flux/flux_processor.py "
              "l.41, 134, 229 @8604494 (density 0.15, the first 4 of 57 layers dense, every step sparse)")


def _sparse(density: float, dense_steps: Steps | int, dense_blocks: int, source: str) -> dict[str, Preset]:
    base = Preset({"density": density, "dense_steps": dense_steps, "dense_blocks": dense_blocks}, source)
    return presets(derived(base, "1.5x the density", density=min(1.0, round(density * 1.5, 3))), base,
                   derived(base, "two thirds of the density", density=round(density * 2 / 3, 3)))


SPARSE_WAN = {SPARSE: _sparse(0.2, Steps(10, 50), 1, f"derived: Sparse VideoGen2's dense share with density 0.2 "
                                                     f"for the other kinds; not measured (from: {_SVG2_WAN})"),
              f"{SPARSE}/svg2": _sparse(0.2, Steps(10, 50), 1, _SVG2_WAN),
              f"{SPARSE}/draft": _sparse(0.1, Steps(15, 50), 1, _DRAFT_WAN)}
SPARSE_HUNYUAN = {SPARSE: _sparse(0.2, Steps(5, 50), 1, f"derived: Sparse VideoGen2's dense share with density 0.2 "
                                                       f"for the other kinds; not measured (from: {_SVG2_HY})"),
                  f"{SPARSE}/svg2": _sparse(0.2, Steps(5, 50), 1, _SVG2_HY),
                  f"{SPARSE}/draft": _sparse(0.1, Steps(15, 50), 2, _DRAFT_HY)}
SPARSE_FLUX = {SPARSE: {p: Preset(v.values, f"derived: PISA's setting for every kind; not measured (from: {v.source})")
                        for p, v in _sparse(0.15, 0, 4, _PISA_FLUX).items()},
               f"{SPARSE}/pisa": _sparse(0.15, 0, 4, _PISA_FLUX)}

FLUX_DEV = {TAYLORSEER: _taylor(6, 1, Steps(3, 50), _TS_FLUX), CG_TAYLOR: CG_FLUX, FBCACHE: FB_FLUX, **SPARSE_FLUX}
WAN_21 = {TAYLORSEER: _taylor(5, 1, Steps(1, 50), _TS_WAN), CG_TAYLOR: CG_WAN, FBCACHE: FB_WAN, RAS: RAS_REAL,
          JIT: {p: Preset(v.values, f"derived: the paper's Flux-dev setting, nothing published for Wan; not measured "
                                    f"(from: {v.source})") for p, v in JIT_REAL.items()},
          **SPARSE_WAN}


def _flux_schnell() -> dict[str, dict[str, Preset]]:
    # schnell runs 1-4 steps: at most every other step can be forecast
    out = {m: borrowed(t, "Flux-dev") for m, t in FLUX_DEV.items()}
    out[TAYLORSEER] = {p: derived(v, "schnell runs 1-4 steps, so every other step at most", interval=2,
                                  warmup_steps=1) for p, v in FLUX_DEV[TAYLORSEER].items()}
    return out


def _borrow_all(table: Mapping[str, Mapping[str, Preset]], other: str) -> dict[str, dict[str, Preset]]:
    return {m: borrowed(t, other) for m, t in table.items()}


_WAN_22_EXPERT = {**_borrow_all(WAN_21, "Wan 2.1 14B"),
                  TAYLORSEER: _taylor(5, 1, 1, _TS_WAN22)}
_FLUX_LIKE = _borrow_all(FLUX_DEV, "Flux-dev")

RECORDS: tuple[VariantRecord, ...] = (
    VariantRecord("wan", "embedded-image", EMBEDDED),
    VariantRecord("wan", "embedded-video", {m: {p: Preset(v.values, f"{v.source}; the image model's presets, which "
                                                                     f"the video benchmarks ran")
                                                 for p, v in t.items()} for m, t in EMBEDDED.items()}),
    VariantRecord("wan", "wan2.1-1.3b", WAN_21),
    VariantRecord("wan", "wan2.1-14b", WAN_21),
    VariantRecord("wan", "wan2.2-a14b-high", _WAN_22_EXPERT),
    VariantRecord("wan", "wan2.2-a14b-low", _WAN_22_EXPERT),
    VariantRecord("wan", "wan2.2-5b", _borrow_all(WAN_21, "Wan 2.1")),
    VariantRecord("flux", "flux-dev", FLUX_DEV),
    VariantRecord("flux", "flux-schnell", _flux_schnell()),
    VariantRecord("chroma", "chroma", _FLUX_LIKE),
    VariantRecord("hunyuan_video", "hunyuan-video", {TAYLORSEER: _taylor(5, 1, Steps(1, 50), _TS_HUNYUAN),
                                                     CG_TAYLOR: CG_HUNYUAN, FBCACHE: FB_HUNYUAN, **SPARSE_HUNYUAN}),
    VariantRecord("qwen_image", "qwen-image", {**_FLUX_LIKE, TAYLORSEER: _taylor(6, 1, Steps(3, 50), _TS_QWEN),
                                               FBCACHE: FB_QWEN}),
    VariantRecord("sd3", "sd3-medium", {**_FLUX_LIKE, FBCACHE: FB_SD3}),
    VariantRecord("sd3", "sd3.5-medium", {**_FLUX_LIKE, FBCACHE: FB_SD3}),
    VariantRecord("sd3", "sd3.5-large", {**_FLUX_LIKE, FBCACHE: FB_SD3}),
    VariantRecord("lumina2", "lumina2", {**_FLUX_LIKE, TAYLORSEER: borrowed(_taylor(5, 1, Steps(10, 30), _TS_ZIMAGE),
                                                                            "Z-Image")}),
    VariantRecord("lumina2", "z-image", {**_FLUX_LIKE, TAYLORSEER: _taylor(5, 1, Steps(10, 30), _TS_ZIMAGE)}),
    VariantRecord("hidream", "hidream-i1", {**_FLUX_LIKE, TAYLORSEER: _taylor(4, 2, Steps(1, 50), _TS_HIDREAM)}),
)
BY_KEY: dict[str, VariantRecord] = {r.key: r for r in RECORDS}

# SoftPAG's default heads (its `heads` input left at "auto"): a searched head set where we have one, else the
# layers layer-level perturbation guidance uses; elsewhere the same share of the depth as SD3's layer 9 of 24
_SEARCHED = ("measured: tools/benchmarks/bench_softpag.py --search-cases 8 --eval-cases 24 --per-caption 3 "
             "--rounds 2 --top-k 1 (HeadHunter's search on the embedded model at u 1, w 1; docs/results/guidance.md)")
SOFTPAG_HEADS: dict[str, tuple[str, str]] = {
    "embedded-image": ("0:0; 5:1", _SEARCHED),
    "embedded-video": ("0:0; 5:1", f"{_SEARCHED}; the image model's search"),
    "sd3-medium": ("9:all", "HeadHunter reference: cvlab-kaist/HeadHunter headhunter_arxiv.md App. C @3828d1c "
                            "(layer-level SoftPAG on SD3 medium: grid layers 7-10, figures at layer 9)"),
    "flux-dev": ("double:7:all; double:8:all; double:9:all",
                 "peer: comfyanonymous/ComfyUI comfy_extras/nodes_slg.py @0c853f3 (SkipLayerGuidanceDiT's default "
                 "double blocks 7, 8, 9; no head or layer set is published for Flux-dev's general quality)"),
}
SOFTPAG_SHARE = 9 / 24  # SD3 medium's layer 9 of 24, for the families with nothing published


def record(key: str) -> VariantRecord:
    if key not in BY_KEY:
        raise KeyError(f"no settings record for variant {key!r}")
    return BY_KEY[key]


def embedded_balanced(method: str) -> dict[str, Any]:
    """The embedded image model's `balanced` values at 28 steps: where the nodes' custom widgets start."""
    return {k: v.steps(28) if isinstance(v, Steps) else v for k, v in EMBEDDED[method]["balanced"].values.items()}

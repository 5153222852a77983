"""Settings records: every record resolves; cited settings come back at their source's step count; the embedded
records keep the calibrated presets; variants are read from ComfyUI's own model classes (on the meta device)."""

from __future__ import annotations

import dataclasses

import comfy.ops
import pytest
from comfyui_ditaccel.accel_core.adapters import ADAPTERS, FLUX, LUMINA2, SD3, WAN21
from comfyui_ditaccel.accel_core.caching.first_block import CGTaylorConfig, FirstBlockCacheConfig
from comfyui_ditaccel.accel_core.caching.taylorseer import TaylorSeerConfig
from comfyui_ditaccel.accel_core.settings import records
from comfyui_ditaccel.accel_core.settings.records import PRESETS, RECORDS, Steps
from comfyui_ditaccel.accel_core.settings.resolve import SPECS, Request
from comfyui_ditaccel.accel_core.settings.variants import NAMES, Variant, identify, refine
from comfyui_ditaccel.accel_core.spatial.jit import JiTConfig
from comfyui_ditaccel.accel_core.spatial.ras import RASConfig

from tools.runtime import model_files

SPARSE_KINDS = ("grat", "pisa", "svg2", "draft", "rettention")


def variant(key: str) -> Variant:
    return Variant(records.BY_KEY[key].family, key, NAMES[key], "test")


def balanced(method: str, key: str, steps: int, **inputs):
    return Request(method, "balanced", inputs).resolve(variant(key), steps).config


def requests(method: str, preset: str) -> list[Request]:
    if method == records.SPARSE:
        return [Request(method, preset, {"method": kind}) for kind in SPARSE_KINDS]
    return [Request(method, preset)]


# --- every record resolves ------------------------------------------------------------------------

@pytest.mark.parametrize("rec", RECORDS, ids=lambda r: r.key)
def test_every_record_resolves_at_10_to_100_steps(rec):
    families = {a.family for a in ADAPTERS}
    assert rec.family in families and rec.key in NAMES
    methods = {m.split("/")[0] for m in rec.methods}
    assert methods <= set(SPECS)
    for method in methods:
        for preset in PRESETS:
            for request in requests(method, preset):
                source = request.table(variant(rec.key))[preset].source
                assert source.startswith(("measured:", "derived:", "peer:")) or " reference: " in source, source
                for steps in range(10, 101):
                    resolved = request.resolve(variant(rec.key), steps)
                    config = resolved.config
                    assert resolved.source == source
                    for name in ("warmup_steps", "dense_steps"):  # never more than the run
                        assert 0 <= getattr(config, name, 0) <= steps, (rec.key, method, preset, steps)
                    if method == records.RAS:
                        plan = config.plan(steps)
                        assert all(0 <= s < steps for s in plan.refresh_steps) and plan.sparse_steps()
                    if method == records.JIT:
                        assert config.stage_ends(steps)[-1] == steps


@pytest.mark.parametrize("family", sorted({r.family for r in RECORDS}))
def test_each_family_has_records_for_the_caching_methods_and_wan_for_the_spatial_ones(family):
    for rec in (r for r in RECORDS if r.family == family):
        assert {records.TAYLORSEER, records.CG_TAYLOR, records.FBCACHE, records.SPARSE} <= set(rec.methods)
        assert ({records.RAS, records.JIT} <= set(rec.methods)) == (family == "wan")


def test_variants_a_run_tells_apart_share_the_fields_that_choose_hooks():
    """Wan 2.1 14B and the two Wan 2.2 experts look alike when a node is applied: the fields fixed at apply
    time (TaylorSeer's granularity through its order, JiT's full context) must agree, or a run would keep the
    apply-time hooks for settings that need others."""
    for group in (("wan2.1-14b", "wan2.2-a14b-high", "wan2.2-a14b-low"), ("embedded-image", "embedded-video")):
        for preset in PRESETS:
            orders = {Request(records.TAYLORSEER, preset).resolve(variant(k), 28).config.order == 0 for k in group}
            contexts = {Request(records.JIT, preset).resolve(variant(k), 28).config.full_context for k in group}
            assert len(orders) == 1 and len(contexts) == 1, (group, preset)


# --- cited settings, at their source's step count ---------------------------------------------------

@pytest.mark.parametrize(("key", "steps", "interval", "order", "warmup", "source"), [
    ("flux-dev", 50, 6, 1, 3, "TaylorSeer-FLUX/src/flux/modules/cache_functions/cache_init.py"),
    ("wan2.1-1.3b", 50, 5, 1, 1, "TaylorSeer-Wan2.1/wan/taylorseer/cache_functions/cache_init.py"),
    ("wan2.1-14b", 50, 5, 1, 1, "TaylorSeer-Wan2.1/wan/taylorseer/cache_functions/cache_init.py"),
    ("wan2.2-a14b-high", 10, 5, 1, 1, "taylorseerlite_example_wan2-2.json"),
    ("hunyuan-video", 50, 5, 1, 1, "TaylorSeer-HunyuanVideo/hyvideo/modules/cache_functions/cache_init.py"),
    ("qwen-image", 50, 6, 1, 3, "qwen_image/taylorseer_qwen_image/cache_functions/cache_init.py"),
    ("hidream-i1", 50, 4, 2, 1, "TaylorSeer-HiDream/hi_diffusers/models/cache_functions/cache_init.py"),
    ("z-image", 30, 5, 1, 10, "taylorseerlite_example_z-image.json"),
])
def test_taylorseer_reproduces_its_sources(key, steps, interval, order, warmup, source):
    resolved = Request(records.TAYLORSEER, "balanced").resolve(variant(key), steps)
    c = resolved.config
    assert (c.interval, c.order, c.warmup_steps, c.threshold) == (interval, order, warmup, 0.0)
    assert source in resolved.source
    # the reference's first_enhance steps run in full, then one full step every N
    full = c.schedule.full_steps(steps)
    assert full[:warmup] == list(range(warmup)) and full[warmup] - full[warmup - 1] == interval


@pytest.mark.parametrize(("key", "gate", "fb_order", "order", "ungated", "source"), [
    ("flux-dev", 0.03, 1, 1, 5, "CG-Taylor/Flux.1-dev"),  # gating only when cnt > 4
    ("wan2.1-1.3b", 0.18, 3, 1, 6, "CG-Taylor/Wan2.1"),  # gating when cnt > 5
    ("hunyuan-video", 0.08, 2, 1, 6, "CG-Taylor/HunyuanVideo"),
])
def test_cg_taylor_reproduces_the_reference_drivers_at_50_steps(key, gate, fb_order, order, ungated, source):
    resolved = Request(records.CG_TAYLOR, "balanced").resolve(variant(key), 50)
    c = resolved.config
    assert (c.threshold, c.first_block_order, c.order, c.warmup_steps) == (gate, fb_order, order, ungated)
    assert c.max_skips == records.NO_CAP and source in resolved.source


def test_cg_taylor_fast_takes_the_readmes_other_gates():
    assert balanced(records.CG_TAYLOR, "flux-dev", 50).threshold == 0.03
    assert Request(records.CG_TAYLOR, "fast").resolve(variant("flux-dev"), 50).config.threshold == 0.13
    assert Request(records.CG_TAYLOR, "fast").resolve(variant("wan2.1-1.3b"), 50).config.threshold == 0.36


@pytest.mark.parametrize(("key", "threshold", "source"), [
    ("flux-dev", 0.12, "Comfy-WaveSpeed"), ("sd3.5-large", 0.12, "workflows/sd3.5.json"),
    ("hunyuan-video", 0.1, "workflows/hunyuan_video.json"), ("wan2.1-1.3b", 0.03, "diffusers_adapters/wan.py"),
    ("qwen-image", 0.2, "optimization/cache.md"),
])
def test_first_block_cache_reproduces_its_sources(key, threshold, source):
    resolved = Request(records.FBCACHE, "balanced").resolve(variant(key), 28)
    assert resolved.config.threshold == threshold and source in resolved.source


def test_ras_reproduces_the_papers_sd3_script_on_real_wan():
    """ratio 0.5, warm-up 4 and error resets at steps 12 and 20 of 28 (microsoft/RAS SD3 example)."""
    c = balanced(records.RAS, "wan2.1-14b", 28)
    plan = c.plan(28)
    assert (c.sample_ratio, plan.warmup_steps, plan.refresh_steps) == (0.5, 4, (12, 20))
    assert (c.high_ratio, c.starvation_scale) == (0.3, 1.0)


def test_jit_on_real_wan_is_the_papers_default_4x():
    """At the paper's 18 steps: 0-6 at density 0.35, 7-10 at 0.62, 11-17 dense; velocity interpolation."""
    c = balanced(records.JIT, "wan2.1-14b", 18)
    assert c.stage_ends(18) == [7, 11, 18] and c.densities == (0.35, 0.62, 1.0)
    assert (c.interpolate, c.warmup_steps, c.full_context, c.relax) == ("velocity", 0, False, 3)


@pytest.mark.parametrize(("key", "kind", "density", "dense_steps", "dense_blocks", "source"), [
    ("wan2.1-14b", "svg2", 0.2, 10, 1, "wan_t2v_720p_sap.sh"),  # first_times_fp 0.2 of 50, 1 of 40 layers
    ("wan2.1-14b", "draft", 0.1, 15, 1, "draft-attention"),  # sparsity 0.9, t > 925 at shift 5
    ("hunyuan-video", "svg2", 0.2, 5, 1, "hyvideo_t2v_720p_sap.sh"),  # first_times_fp 0.1
    ("flux-dev", "pisa", 0.15, 0, 4, "piecewise-sparse-attention"),  # start_layer_idx 4, every step sparse
])
def test_sparse_attention_reproduces_its_sources_at_50_steps(key, kind, density, dense_steps, dense_blocks, source):
    resolved = Request(records.SPARSE, "balanced", {"method": kind}).resolve(variant(key), 50)
    c = resolved.config
    assert (c.method, c.density, c.dense_steps, c.dense_blocks) == (kind, density, dense_steps, dense_blocks)
    assert source in resolved.source


# --- the embedded records keep the calibrated presets ----------------------------------------------

# the presets as they were before the records (values given for 28 steps, scaled by the configs' own rules)
BEFORE = {
    records.TAYLORSEER: {
        "quality": TaylorSeerConfig(interval=6, order=0, warmup_steps=2, threshold=0.03, reference_steps=28),
        "balanced": TaylorSeerConfig(interval=8, order=0, warmup_steps=2, threshold=0.1, reference_steps=28),
        "fast": TaylorSeerConfig(interval=14, order=0, warmup_steps=2, threshold=0.5, reference_steps=28)},
    records.CG_TAYLOR: {
        "quality": CGTaylorConfig(threshold=0.1, max_skips=6, order=1, warmup_steps=2, reference_steps=28),
        "balanced": CGTaylorConfig(threshold=0.6, max_skips=8, order=0, warmup_steps=2, reference_steps=28),
        "fast": CGTaylorConfig(threshold=2.0, max_skips=12, order=0, warmup_steps=2, reference_steps=28)},
    records.FBCACHE: {
        "quality": FirstBlockCacheConfig(threshold=0.1, max_skips=6, warmup_steps=2, reference_steps=28),
        "balanced": FirstBlockCacheConfig(threshold=0.2, max_skips=6, warmup_steps=2, reference_steps=28),
        "fast": FirstBlockCacheConfig(threshold=0.5, max_skips=6, warmup_steps=2, reference_steps=28)},
}
RAS_BEFORE = {
    "quality": RASConfig(sample_ratio=0.15, warmup_steps=6, dense_steps=2, final_dense_steps=1, reference_steps=28),
    "balanced": RASConfig(sample_ratio=0.15, warmup_steps=6, dense_steps=0, final_dense_steps=1, reference_steps=28),
    "fast": RASConfig(sample_ratio=0.15, warmup_steps=4, dense_steps=0, final_dense_steps=1, reference_steps=28)}
JIT_BEFORE = {
    "quality": JiTConfig(stages=(0.4, 0.65, 1.0), densities=(0.35, 0.62, 1.0), warmup_steps=4, full_context=True),
    "balanced": JiTConfig(stages=(0.5, 0.75, 1.0), densities=(0.25, 0.5, 1.0), warmup_steps=4, full_context=True),
    "fast": JiTConfig(stages=(0.75, 0.9, 1.0), densities=(0.15, 0.35, 1.0), warmup_steps=3, full_context=True)}
SPARSE_BEFORE = {"quality": (0.3, 6, 1), "balanced": (0.2, 4, 1), "fast": (0.12, 3, 0)}


@pytest.mark.parametrize("key", ["embedded-image", "embedded-video"])
@pytest.mark.parametrize("preset", PRESETS)
def test_embedded_records_keep_the_calibrated_presets_at_every_step_count(key, preset):
    for steps in range(4, 101):
        for method, table in BEFORE.items():
            got = Request(method, preset).resolve(variant(key), steps).config
            assert got == dataclasses.replace(table[preset].at_steps(steps), reference_steps=0), (method, steps)
        ras = Request(records.RAS, preset).resolve(variant(key), steps).config
        assert ras.plan(steps) == RAS_BEFORE[preset].plan(steps)
        assert Request(records.JIT, preset).resolve(variant(key), steps).config == JIT_BEFORE[preset]
        sparse = Request(records.SPARSE, preset, {"method": "grat"}).resolve(variant(key), steps).config
        assert (sparse.density, sparse.dense_steps, sparse.dense_blocks) == SPARSE_BEFORE[preset]


# --- the resolver ------------------------------------------------------------------------------------

def test_custom_takes_the_inputs_as_given_and_presets_take_only_the_always_applied_ones():
    custom = Request(records.TAYLORSEER, "custom", {"interval": 3, "order": 2, "granularity": "blocks",
                                                    "threshold": None}).resolve(variant("flux-dev"), 50)
    assert (custom.config.interval, custom.config.order, custom.config.granularity) == (3, 2, "blocks")
    assert custom.source.startswith("custom")
    preset = balanced(records.TAYLORSEER, "flux-dev", 50, interval=3, granularity="blocks")
    assert (preset.interval, preset.granularity) == (6, "blocks")
    ras = balanced(records.RAS, "wan2.1-14b", 28, start_percent=0.2, sample_ratio=0.9)
    assert (ras.start_percent, ras.sample_ratio) == (0.2, 0.5)


def test_an_input_that_is_no_setting_and_a_bad_preset_are_refused_naming_them():
    with pytest.raises(ValueError, match=r"DiTAccelTaylorSeer: 'density' is not a setting of this node"):
        Request(records.TAYLORSEER, "balanced", {"density": 0.2})
    with pytest.raises(ValueError, match=r"DiTAccelRAS: preset must be one of quality, balanced, fast, custom"):
        Request(records.RAS, "turbo")


def test_a_run_keeps_the_fields_that_chose_the_hooks():
    applied = TaylorSeerConfig(granularity="output", chosen="auto: order 0")
    run = Request(records.TAYLORSEER, "balanced").for_run(variant("flux-dev"), 50, applied)
    assert (run.config.granularity, run.config.order, run.config.interval) == ("output", 1, 6)


def test_steps_rules():
    assert Steps(3, 50).steps(28) == 2 and Steps(3, 50).steps(100) == 6
    assert Steps(8, 28, "sqrt", 1).steps(50) == round(8 * (50 / 28) ** 0.5)
    assert Steps(1, 50, minimum=1).steps(10) == 1


def test_the_node_widgets_are_settings_of_their_configs():
    """Every optional input of the preset nodes reaches the resolver as a config field (none is dropped)."""
    from comfyui_ditaccel.nodes import attention, caching, spatial

    nodes = {records.TAYLORSEER: caching.DiTAccelTaylorSeer, records.CG_TAYLOR: caching.DiTAccelCGTaylor,
             records.FBCACHE: caching.DiTAccelFirstBlockCache, records.RAS: spatial.DiTAccelRAS,
             records.JIT: spatial.DiTAccelJiT, records.SPARSE: attention.DiTAccelSparseAttention}
    for method, node in nodes.items():
        names = {i.id for i in node.define_schema().inputs} - {"model", "preset", "profile"}
        assert names <= SPECS[method].inputs, (method, names - SPECS[method].inputs)
        assert SPECS[method].node == node.define_schema().node_id


# --- variants from ComfyUI's own classes --------------------------------------------------------------

def wan(dim: int, in_dim: int = 16, heads: int = 2):
    from comfy.ldm.wan.model import WanModel

    return WanModel(dim=dim, in_dim=in_dim, out_dim=in_dim, ffn_dim=64, num_heads=heads, num_layers=1,
                    device="meta", operations=comfy.ops.disable_weight_init)


@pytest.mark.parametrize(("dim", "in_dim", "key"), [
    (256, 16, "embedded-image"), (1536, 16, "wan2.1-1.3b"), (5120, 16, "wan2.1-14b"), (3072, 48, "wan2.2-5b"),
    (4096, 16, "wan2.1-14b"),
])
def test_wan_variants_from_the_width(dim, in_dim, key):
    v = identify(WAN21, wan(dim, in_dim, heads=dim // 128))
    assert v.key == key and str(dim) in v.why


def test_the_run_tells_the_wan_22_experts_and_the_embedded_video_model_apart():
    v = identify(WAN21, wan(5120, heads=40))
    full = [1.0, 0.9, 0.5, 0.0]
    assert refine(v, full, 1.0, 1).key == "wan2.1-14b"
    high = refine(v, [1.0, 0.95, 0.9, 0.875], 1.0, 21)
    low = refine(v, [0.875, 0.5, 0.2, 0.0], 1.0, 21)
    assert (high.key, low.key) == ("wan2.2-a14b-high", "wan2.2-a14b-low")
    assert "stops early" in high.why and "starts late" in low.why
    small = identify(WAN21, wan(256))
    assert refine(small, full, 1.0, 5).key == "embedded-video" and refine(small, full, 1.0, 1).key == "embedded-image"


@pytest.mark.parametrize(("guidance", "key"), [(True, "flux-dev"), (False, "flux-schnell")])
def test_flux_dev_and_schnell_from_the_guidance_input(guidance, key):
    from comfy.ldm.flux.model import Flux

    model = Flux(in_channels=64, out_channels=64, vec_in_dim=768, context_in_dim=4096, hidden_size=256,
                 mlp_ratio=4.0, num_heads=2, depth=1, depth_single_blocks=0, axes_dim=[16, 56, 56], theta=10000,
                 patch_size=2, qkv_bias=True, guidance_embed=guidance, device="meta",
                 operations=comfy.ops.disable_weight_init)
    assert identify(FLUX, model).key == key


def test_lumina2_and_zimage_from_the_token_padding():
    from comfy.ldm.lumina.model import NextDiT

    ops = comfy.ops.disable_weight_init
    assert identify(LUMINA2, NextDiT(operations=ops, device="meta", **model_files.LUMINA2_TINY)).key == "lumina2"
    assert identify(LUMINA2, NextDiT(operations=ops, device="meta", **model_files.ZIMAGE_THIN)).key == "z-image"


def test_sd3_from_its_depth():
    from comfy.ldm.modules.diffusionmodules.mmdit import OpenAISignatureMMDITWrapper

    def mmdit(depth: int):
        return OpenAISignatureMMDITWrapper(input_size=None, patch_size=2, in_channels=16, depth=depth,
                                           num_patches=64 * 64, adm_in_channels=2048, context_embedder_config={
                                               "target": "torch.nn.Linear",
                                               "params": {"in_features": 4096, "out_features": 64 * depth}},
                                           device="meta", operations=comfy.ops.disable_weight_init)

    assert identify(SD3, mmdit(2)).key == "sd3-medium"
    assert identify(SD3, mmdit(38)).key == "sd3.5-large"


# --- SoftPAG's heads on "auto" -----------------------------------------------------------------------

@pytest.mark.parametrize(("key", "kind", "blocks", "heads"), [
    ("embedded-image", None, 6, "0:0; 5:1"), ("sd3-medium", None, 24, "9:all"), ("sd3.5-large", None, 38, "14:all"),
    ("flux-dev", "double", 19, "double:7:all; double:8:all; double:9:all"), ("wan2.1-14b", None, 40, "15:all"),
    ("hunyuan-video", "double", 20, "double:8:all"), ("qwen-image", None, 60, "22:all"),
])
def test_softpag_auto_heads_per_variant(key, kind, blocks, heads):
    from comfyui_ditaccel.accel_core.guidance.head_spec import parse
    from comfyui_ditaccel.accel_core.settings.resolve import default_heads

    got, source = default_heads(variant(key), kind, blocks)
    assert got == heads and parse(got) and source
    assert ("headhunter_arxiv.md" in source) == key.startswith("sd3")
    rule, why = default_heads(variant(key), kind, 2, use_record=False)
    assert parse(rule)[0].block <= 1 and why.startswith("derived")


def test_custom_inputs_left_at_auto_take_the_models_balanced_values():
    inputs = {"interval": -1, "order": 2, "warmup_steps": -1, "threshold": -1.0, "granularity": "auto"}
    flux = Request(records.TAYLORSEER, "custom", inputs).resolve(variant("flux-dev"), 50)
    assert (flux.config.interval, flux.config.order, flux.config.warmup_steps, flux.config.threshold) == (6, 2, 3, 0.0)
    assert flux.config.granularity == "auto"  # a real choice of that input, not the auto marker
    assert "interval, warmup_steps, threshold left at auto" in flux.source and "TaylorSeer-FLUX" in flux.source
    embedded = Request(records.TAYLORSEER, "custom", inputs).resolve(variant("embedded-image"), 28).config
    assert (embedded.interval, embedded.warmup_steps, embedded.threshold) == (8, 2, 0.1)
    jit = Request(records.JIT, "custom", {"stages": "auto", "densities": "auto", "interpolate": "auto",
                                          "relax": 5}).resolve(variant("wan2.1-14b"), 28).config
    assert (jit.densities, jit.interpolate, jit.relax) == ((0.35, 0.62, 1.0), "velocity", 5)
    sparse = Request(records.SPARSE, "custom", {"method": "draft", "density": 0.5, "dense_steps": -1,
                                                "dense_blocks": -1}).resolve(variant("wan2.1-14b"), 50).config
    assert (sparse.density, sparse.dense_steps, sparse.dense_blocks) == (0.5, 15, 1)


def test_auto_numbers_are_the_nodes_defaults_and_values_between_auto_and_the_floor_are_refused():
    from comfyui_ditaccel.nodes import caching, spatial
    from comfyui_ditaccel.nodes.inputs import AUTO, schema_error

    schema = {i.id: i for i in caching.DiTAccelTaylorSeer.define_schema().inputs}
    assert schema["interval"].default == AUTO and schema["threshold"].default == AUTO
    refused = schema_error(caching.DiTAccelTaylorSeer, None, interval=0)
    assert refused == "interval must be -1 (auto) or lie in [1, 50], got 0"
    assert schema_error(caching.DiTAccelTaylorSeer, None, threshold=-0.5).startswith("threshold must be -1 (auto)")
    assert schema_error(caching.DiTAccelTaylorSeer, None, interval=-1, threshold=-1.0) is None
    assert spatial.jit_inputs_error("auto", "auto") is None
    # one left at auto is judged against the records' entries, which all have as many
    assert "same number" in spatial.jit_inputs_error("auto", "0.5, 1")
    assert spatial.jit_inputs_error("0.3, 0.6, 1", "auto") is None
    lengths = {len(Request(records.JIT, p).resolve(variant(r.key), 28).config.stages)
               for r in RECORDS if records.JIT in r.methods for p in PRESETS}
    assert lengths == {len(spatial.JIT_BALANCED.stages)}


@pytest.mark.parametrize("px", [(256, 256), (512, 768), (1024, 1024), (2048, 1152)])
def test_the_records_size_dependent_parts_hold_from_256_to_2048_px(px):
    """No record value depends on the token count, but what the resolved settings do with it must hold at every
    size: RAS keeps at least one token and not more than there are, JiT's anchors are a non-empty part of the
    grid at every stage, sparse attention's tiles lay out the grid."""
    from comfyui_ditaccel.accel_core.attention.layout import TileLayout
    from comfyui_ditaccel.accel_core.spatial.jit import JiTState
    from comfyui_ditaccel.accel_core.spatial.ras import keep_count

    grid = (1, px[0] // 16, px[1] // 16)  # a VAE's 8x and a 2x2 patch
    tokens = grid[1] * grid[2]
    for rec in RECORDS:
        for preset in PRESETS:
            if records.RAS in rec.methods:
                ras = Request(records.RAS, preset).resolve(variant(rec.key), 28).config
                assert 1 <= keep_count(tokens, ras.sample_ratio) <= tokens
                state = JiTState(Request(records.JIT, preset).resolve(variant(rec.key), 28).config, 28, (1, 2, 2))
                for step in range(28):
                    mask = state.anchors(step, 1, grid)
                    assert mask is None or 0 < int(mask.sum()) < tokens, (rec.key, preset, step)
            sparse = Request(records.SPARSE, preset, {"method": "draft"}).resolve(variant(rec.key), 28).config
            order = TileLayout(grid, sparse.query_tile, sparse.key_tile).order()
            assert sorted(order.tolist()) == list(range(tokens))

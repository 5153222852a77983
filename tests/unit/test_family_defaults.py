"""Every node at its defaults, through its own `execute`, on the full-width random-weight Qwen-Image (3072 wide,
one block), whose 3584-wide text no text encoder here gives the server (Flux and Wan run on the server:
tests/integration/test_family_defaults_server.py): it samples with CFG 5 and CFG 1, or refuses when applied,
naming what it supports; the report names the variant and each setting's source. Random weights: plumbing and
settings, not quality."""

from __future__ import annotations

import pytest
import torch
from comfyui_ditaccel.accel_core.adapters import UnsupportedModelError
from comfyui_ditaccel.accel_core.comfy_patch import report_holder
from comfyui_ditaccel.nodes.attention import DiTAccelSparseAttention
from comfyui_ditaccel.nodes.caching import DiTAccelCGTaylor, DiTAccelFirstBlockCache, DiTAccelTaylorSeer
from comfyui_ditaccel.nodes.guidance import DiTAccelSoftPAG
from comfyui_ditaccel.nodes.spatial import DiTAccelJiT, DiTAccelRAS

from tools.runtime import dit_runtime
from tools.runtime.sampling import conditioning, sample

STEPS = 8
# the required inputs at their schema defaults
NODES = {DiTAccelTaylorSeer: {"preset": "balanced"}, DiTAccelCGTaylor: {"preset": "balanced"},
         DiTAccelFirstBlockCache: {"preset": "balanced"}, DiTAccelRAS: {"preset": "balanced"},
         DiTAccelJiT: {"preset": "balanced"}, DiTAccelSoftPAG: {"heads": "auto", "strength": 0.5, "scale": 3.0},
         DiTAccelSparseAttention: {"preset": "balanced", "method": "draft"}}
# family -> (load, variant shown, context width, pooled width, video, what the TaylorSeer record resolves to)
FAMILIES = {
    "qwen_image": (dit_runtime.ensure_qwen_image_thin, "Qwen-Image", 3584, 0, True, "interval=6, order=1"),
}
WAN_ONLY = (DiTAccelRAS, DiTAccelJiT)


def test_defaults_match_the_schema():
    for node, required in NODES.items():
        schema = {i.id: i for i in node.define_schema().inputs}
        for name, value in required.items():
            assert schema[name].default == value, (node.__name__, name)


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request):
    import comfy.sd

    load, *rest = FAMILIES[request.param]
    return (request.param, comfy.sd.load_diffusion_model(str(load())), *rest)


@pytest.mark.parametrize("cfg", [5.0, 1.0])
def test_every_node_at_its_defaults_samples_or_refuses_naming_what_it_supports(family, cfg):
    name, model, variant, context, pooled, video, taylorseer = family

    def draw(m):
        return sample(m, steps=STEPS, cfg=cfg, size=(128, 128), video=video, pooled=pooled,
                      positive=conditioning(1, tokens=5, dim=context, pooled=pooled),
                      negative=conditioning(2, tokens=5, dim=context, pooled=pooled))

    for node, required in NODES.items():
        if name != "wan" and node in WAN_ONLY:
            with pytest.raises(UnsupportedModelError, match=rf"{node.__name__}: .* Supported: Wan"):
                node.execute(model, **required)
            continue
        (patched,) = node.execute(model, **required).args
        out = draw(patched)
        assert torch.isfinite(out).all(), node.__name__
        record = report_holder(patched).latest
        assert record.variant.startswith(variant), record.variant
        (line,) = record.settings
        assert line.startswith(node.define_schema().node_id) and "source: " in line, line
        if node is DiTAccelTaylorSeer:
            assert taylorseer in line and "blocks" in line, line
        text = record.summary()
        assert text.index(f"model: {variant}") < text.index("settings: ") < text.index("methods: ")

"""Every node at its defaults (only its required inputs in the prompt) on the real server, on full-width
random-weight models: Flux at 3072 with one block and Wan at 1.3B's width (1536) with two. CFG 5 and CFG 1:
it samples, or the prompt fails when the node is applied, naming what it supports; the report names the
variant, each node's settings and their source. (Qwen-Image takes 3584-wide text, which no text encoder
here gives: tests/unit/test_family_defaults.py runs it in process.) Random weights: plumbing, not quality."""

from __future__ import annotations

import pytest

from tools.runtime import dit_runtime
from tools.runtime.comfy_client import ExecutionFailed

STEPS = 6
REQUIRED = {"DiTAccelTaylorSeer": {"preset": "balanced"}, "DiTAccelCGTaylor": {"preset": "balanced"},
            "DiTAccelFirstBlockCache": {"preset": "balanced"}, "DiTAccelRAS": {"preset": "balanced"},
            "DiTAccelJiT": {"preset": "balanced"}, "DiTAccelSoftPAG": {"heads": "auto", "strength": 0.5, "scale": 3.0},
            "DiTAccelSparseAttention": {"preset": "balanced", "method": "draft"}}
WAN_ONLY = ("DiTAccelRAS", "DiTAccelJiT")
# family -> (model file, its latent node, variant the report must name, TaylorSeer's resolved settings)
FAMILIES = {
    "flux": (dit_runtime.ensure_flux_thin, {"class_type": "EmptySD3LatentImage",
                                            "inputs": {"width": 128, "height": 128, "batch_size": 1}},
             "Flux.1-schnell", "interval=2, order=1"),
    "wan": (dit_runtime.ensure_wan_thin, {"class_type": "EmptyHunyuanLatentVideo",
                                          "inputs": {"width": 128, "height": 128, "length": 1, "batch_size": 1}},
            "Wan 2.1 1.3B", "interval=5, order=1"),
}


def graph(model_file: str, latent: dict, node: str, cfg: float) -> dict:
    # CLIP-L through SD3's encoder pads to the 4096-wide context and 2048-wide pooled vector both models take
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": model_file, "weight_dtype": "default"}},
        "2": {"class_type": "CLIPLoader", "inputs": {"clip_name": "ditaccel_clip_l.safetensors", "type": "sd3",
                                                     "device": "default"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red square", "clip": ["2", 0]}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["2", 0]}},
        "5": latent,
        "40": {"class_type": node, "inputs": {"model": ["1", 0], **REQUIRED[node]}},
        "6": {"class_type": "KSampler", "inputs": {"model": ["40", 0], "seed": 0, "steps": STEPS, "cfg": cfg,
                                                   "sampler_name": "euler", "scheduler": "simple",
                                                   "positive": ["3", 0], "negative": ["4", 0],
                                                   "latent_image": ["5", 0], "denoise": 1.0}},
        "50": {"class_type": "DiTAccelReport", "inputs": {"model": ["40", 0], "latent": ["6", 0]}},
    }


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("cfg", [5.0, 1.0])
def test_every_node_at_its_defaults_samples_or_refuses_on_full_width_models(client, family, cfg):
    ensure, latent, variant, taylorseer = FAMILIES[family]
    model_file = ensure().name
    for node in REQUIRED:
        prompt = graph(model_file, latent, node, cfg)
        if family != "wan" and node in WAN_ONLY:
            with pytest.raises(ExecutionFailed) as err:
                client.run(prompt)
            assert err.value.node_type == node and "Supported: Wan" in err.value.exception_message
            continue
        text = client.run(prompt).node_output("50")["text"][0]
        lines = text.splitlines()
        assert lines[1].startswith(f"model: {variant} ("), text
        assert lines[2].startswith(f"settings: {node} ") and "source: " in lines[2], text
        assert lines[3].startswith("methods: "), text
        rows = [line for line in lines if line[:4].strip().isdigit()]
        assert len(rows) == STEPS, text
        if node == "DiTAccelTaylorSeer":
            assert taylorseer in lines[2] and "blocks" in lines[2], text

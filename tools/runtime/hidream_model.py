"""A reduced HiDream-I1 built in process for plumbing tests (seeded random weights), and its conditioning.

No small file loads as HiDream through the stock loader: 0.3.75's detection
(comfy/model_detection.py, the `caption_projection.0.linear.weight` branch) fixes HiDream's whole
config whatever the weights hold — 16 double + 32 single blocks at width 2560 with four MoE experts,
~17B parameters, far beyond a CI machine. So the test model is built here from ComfyUI's own
classes with a reduced config: `comfy.model_detection.model_config_from_unet_config` matches it
to `comfy.supported_models.HiDream`, which builds `comfy.model_base.HiDream` around
`comfy.ldm.hidream.model.HiDreamImageTransformer2DModel`; then the stock loader's remaining steps
(dtype choice, weight loading, the ModelPatcher) run as in `comfy.sd.load_diffusion_model_state_dict`.
Only the depth and width differ from a real HiDream; the block code, the MoE routing, the
per-block Llama layers and the forward are ComfyUI's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

# the detected config, smaller: 2 double + 2 single blocks, 4 heads of 32 (width 128); what the
# detection fixes besides depth and width is kept (MoE 2 of 4 experts, T5 / Llama / pooled widths)
HIDREAM_TINY: dict[str, Any] = {
    "image_model": "hidream",
    "patch_size": 2,
    "in_channels": 16,
    "out_channels": 16,
    "num_layers": 2,
    "num_single_layers": 2,
    "attention_head_dim": 32,
    "num_attention_heads": 4,
    "caption_channels": [4096, 4096],  # T5-XXL, Llama 3.1 8B
    "text_emb_dim": 2048,  # pooled CLIP-L + CLIP-G
    "num_routed_experts": 4,
    "num_activated_experts": 2,
    "axes_dims_rope": [8, 12, 12],  # sums to the head width, as the detected (64, 32, 32) sums to 128
    "max_resolution": [128, 128],
    # the Llama layer each block reads (double blocks, then single ones); the last repeats, as in the
    # detected list (layers 0-31, then 31 for the remaining blocks)
    "llama_layers": [0, 1, 2, 2],
}
LLAMA_LAYERS = 3  # layers of Llama hidden states the conditioning carries (a real encoder gives 32)
T5_WIDTH, LLAMA_WIDTH, POOLED_WIDTH = 4096, 4096, 2048
SEED = 23


def make_hidream_tiny(seed: int = SEED) -> Any:
    """The reduced HiDream in a ModelPatcher, as ComfyUI's loader would hand it over."""
    import comfy.ldm.hidream.model as hidream
    import comfy.model_detection
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.ops
    import comfy.utils

    from tools.runtime import model_files

    config = {k: v for k, v in HIDREAM_TINY.items() if k != "image_model"}
    # names and shapes from ComfyUI's own class on the meta device (no memory), values from the
    # pack's seeded stream (the same bytes on every machine)
    meta = hidream.HiDreamImageTransformer2DModel(operations=comfy.ops.disable_weight_init, device="meta", **config)
    shapes = {k: tuple(t.shape) for k, t in meta.state_dict().items()}
    values = model_files.fill(model_files.specs_from_shapes(shapes), seed, np.float32)
    sd = {k: torch.from_numpy(v) for k, v in values.items()}

    model_config = comfy.model_detection.model_config_from_unet_config(HIDREAM_TINY, sd)
    if model_config is None or type(model_config).__name__ != "HiDream":
        raise RuntimeError(f"ComfyUI matched the reduced HiDream config to {type(model_config).__name__}")
    # the stock loader's steps after detection (comfy.sd.load_diffusion_model_state_dict on 0.3.75)
    load_device, offload_device = mm.get_torch_device(), mm.unet_offload_device()
    dtypes = list(model_config.supported_inference_dtypes)
    unet_dtype = mm.unet_dtype(model_params=comfy.utils.calculate_parameters(sd), supported_dtypes=dtypes,
                               weight_dtype=comfy.utils.weight_dtype(sd))
    model_config.set_inference_dtype(unet_dtype, mm.unet_manual_cast(unet_dtype, load_device, dtypes))
    model = model_config.get_model(sd, "").to(offload_device)
    model.load_model_weights(sd, "")
    return comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=offload_device)


def hidream_conditioning(seed: int, t5_tokens: int = 5, llama_tokens: int = 4) -> list:
    """What HiDream's text encoder (QuadrupleCLIPLoader) hands the model, with seeded random values: T5
    tokens as the context, pooled CLIP-L + CLIP-G, and every Llama layer's hidden states
    (`conditioning_llama3`: batch, layer, token, width), from which each block takes its own layer."""
    g = torch.Generator().manual_seed(seed)
    t5 = torch.randn(1, t5_tokens, T5_WIDTH, generator=g)
    pooled = torch.randn(1, POOLED_WIDTH, generator=g)
    llama = torch.randn(1, LLAMA_LAYERS, llama_tokens, LLAMA_WIDTH, generator=g)
    return [[t5, {"pooled_output": pooled, "conditioning_llama3": llama}]]

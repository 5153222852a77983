"""Deterministic model files for the runtime: the seeded CLIP-L and random-weight test models.

Values come from numpy's PCG64 raw stream (``random_raw``), turned into uniforms by our own
bit arithmetic, in a fixed key order, and the safetensors file is written by our own writer
with a canonical header. Nothing here depends on numpy's or torch's distribution code, so the
same seed gives the same bytes on every machine and version (the CLIP-L sha256 is tested).
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Shape = tuple[int, ...]

CLIP_L_SEED = 20260101
# sha256 of the seeded CLIP-L file; a change here means every trained model's conditioning changed.
CLIP_L_SHA256 = "cb94c83d132899825ec913700fbe44b73776e199a5f47b67d423f9e35abb9932"
CLIP_L_FILE = "ditaccel_clip_l.safetensors"
WAN_DIT_FILE = "ditaccel_wan21.safetensors"
WAN_VAE_FILE = "ditaccel_wan21_vae.safetensors"
WAN_VIDEO_DIT_FILE = "ditaccel_wan21_video.safetensors"  # the DiT trained further on moving scenes
FLUX_THIN_FILE = "ditaccel_flux_thin.safetensors"
SD3_TINY_FILE = "ditaccel_sd3_tiny.safetensors"
HUNYUAN_VIDEO_TINY_FILE = "ditaccel_hunyuan_video_tiny.safetensors"
QWEN_IMAGE_THIN_FILE = "ditaccel_qwen_image_thin.safetensors"
CHROMA_THIN_FILE = "ditaccel_chroma_thin.safetensors"
LUMINA2_TINY_FILE = "ditaccel_lumina2_tiny.safetensors"
ZIMAGE_THIN_FILE = "ditaccel_zimage_thin.safetensors"
WAN_THIN_FILE = "ditaccel_wan21_1.3b_thin.safetensors"


class SeededStream:
    """Uniform values with a given std from PCG64's raw 64-bit stream."""

    def __init__(self, seed: int) -> None:
        self._bits = np.random.PCG64(seed)

    def values(self, shape: Shape, std: float) -> np.ndarray:
        n = int(np.prod(shape)) if shape else 1
        raw = self._bits.random_raw(n)
        # Top 24 bits -> exact float32 uniform in [0, 1).
        u = (raw >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)
        half_width = np.float32(std * math.sqrt(3.0))
        return ((u * 2.0 - 1.0) * half_width).reshape(shape)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: Shape
    init: str  # "normal" (fan-in scaled), "ones", "zeros", "small"


def fill(specs: Iterable[TensorSpec], seed: int, dtype: np.dtype) -> dict[str, np.ndarray]:
    """Materialise specs in sorted-name order, so the stream is consumed the same way everywhere."""
    stream = SeededStream(seed)
    out: dict[str, np.ndarray] = {}
    for spec in sorted(specs, key=lambda s: s.name):
        if spec.init == "ones":
            arr = np.ones(spec.shape, np.float32)
        elif spec.init == "zeros":
            arr = np.zeros(spec.shape, np.float32)
        elif spec.init == "small":
            arr = stream.values(spec.shape, 0.02)
        else:
            fan_in = int(np.prod(spec.shape[1:])) if len(spec.shape) > 1 else spec.shape[0]
            arr = stream.values(spec.shape, 1.0 / math.sqrt(max(fan_in, 1)))
        out[spec.name] = arr.astype(dtype)
    return out


_ST_DTYPES = {np.dtype(np.float16): "F16", np.dtype(np.float32): "F32"}


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> str:
    """Write a safetensors file with a canonical header (sorted keys, no spaces); return its sha256."""
    header: dict[str, dict] = {}
    offset = 0
    names = sorted(tensors)
    for name in names:
        arr = tensors[name]
        nbytes = arr.size * arr.itemsize
        header[name] = {
            "dtype": _ST_DTYPES[arr.dtype],
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    blob = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    blob += b" " * ((8 - len(blob) % 8) % 8)
    digest = hashlib.sha256()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        for chunk in (struct.pack("<Q", len(blob)), blob):
            f.write(chunk)
            digest.update(chunk)
        for name in names:
            data = np.ascontiguousarray(tensors[name]).astype(tensors[name].dtype.newbyteorder("<"))
            raw = data.tobytes()
            f.write(raw)
            digest.update(raw)
    tmp.replace(path)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _linear(name: str, out_f: int, in_f: int, bias: bool = True) -> list[TensorSpec]:
    specs = [TensorSpec(f"{name}.weight", (out_f, in_f), "normal")]
    if bias:
        specs.append(TensorSpec(f"{name}.bias", (out_f,), "zeros"))
    return specs


def _norm(name: str, width: int, bias: bool = True, weight_name: str = "weight") -> list[TensorSpec]:
    specs = [TensorSpec(f"{name}.{weight_name}", (width,), "ones")]
    if bias:
        specs.append(TensorSpec(f"{name}.bias", (width,), "zeros"))
    return specs


def clip_l_specs() -> list[TensorSpec]:
    """OpenAI CLIP ViT-L/14 text tower, Hugging Face key names (what ComfyUI's CLIPLoader reads)."""
    width, layers, mlp, vocab, positions = 768, 12, 3072, 49408, 77
    specs = [
        TensorSpec("text_model.embeddings.token_embedding.weight", (vocab, width), "small"),
        TensorSpec("text_model.embeddings.position_embedding.weight", (positions, width), "small"),
        *_norm("text_model.final_layer_norm", width),
        *_linear("text_projection", width, width, bias=False),
    ]
    for i in range(layers):
        p = f"text_model.encoder.layers.{i}"
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            specs += _linear(f"{p}.self_attn.{proj}", width, width)
        specs += _norm(f"{p}.layer_norm1", width) + _norm(f"{p}.layer_norm2", width)
        specs += _linear(f"{p}.mlp.fc1", mlp, width) + _linear(f"{p}.mlp.fc2", width, mlp)
    return specs


@dataclass(frozen=True)
class WanDims:
    dim: int = 256
    ffn_dim: int = 1024
    num_layers: int = 4
    in_dim: int = 16
    out_dim: int = 16
    text_dim: int = 4096
    freq_dim: int = 256


def wan_dit_specs(d: WanDims) -> list[TensorSpec]:
    """Wan 2.1 T2V canonical keys; ComfyUI derives dim, heads (dim // 128), ffn and depth from them."""
    D = d.dim
    specs = [
        TensorSpec("patch_embedding.weight", (D, d.in_dim, 1, 2, 2), "normal"),
        TensorSpec("patch_embedding.bias", (D,), "zeros"),
        *_linear("text_embedding.0", D, d.text_dim),
        *_linear("text_embedding.2", D, D),
        *_linear("time_embedding.0", D, d.freq_dim),
        *_linear("time_embedding.2", D, D),
        *_linear("time_projection.1", 6 * D, D),
        TensorSpec("head.modulation", (1, 2, D), "small"),
        *_linear("head.head", d.out_dim * 4, D),
    ]
    for i in range(d.num_layers):
        p = f"blocks.{i}"
        specs.append(TensorSpec(f"{p}.modulation", (1, 6, D), "small"))
        for attn in ("self_attn", "cross_attn"):
            for proj in ("q", "k", "v", "o"):
                specs += _linear(f"{p}.{attn}.{proj}", D, D)
            specs += _norm(f"{p}.{attn}.norm_q", D, bias=False) + _norm(f"{p}.{attn}.norm_k", D, bias=False)
        specs += _norm(f"{p}.norm3", D)
        specs += _linear(f"{p}.ffn.0", d.ffn_dim, D) + _linear(f"{p}.ffn.2", D, d.ffn_dim)
    return specs


def flux_thin_specs(depth: int = 1, single: int = 0, context_dim: int = 4096, vec_dim: int = 2048) -> list[TensorSpec]:
    """Flux (schnell-style, no guidance embedder) at the only width 0.3.75 detects: 3072 = 24 x 128.

    context 4096 and pooled 2048 match what the stock CLIPLoader (type sd3) gives from CLIP-L alone.
    QK norms use the original release's `.scale` names, which 0.3.75 and newest both load.
    """
    H, M, C = 3072, 4 * 3072, 64
    specs = [
        *_linear("img_in", H, C),
        *_linear("time_in.in_layer", H, 256),
        *_linear("time_in.out_layer", H, H),
        *_linear("vector_in.in_layer", H, vec_dim),
        *_linear("vector_in.out_layer", H, H),
        *_linear("txt_in", H, context_dim),
        *_linear("final_layer.linear", C, H),
        *_linear("final_layer.adaLN_modulation.1", 2 * H, H),
    ]
    for b in range(depth):
        p = f"double_blocks.{b}"
        for stream in ("img", "txt"):
            specs += _linear(f"{p}.{stream}_mod.lin", 6 * H, H)
            specs += _linear(f"{p}.{stream}_attn.qkv", 3 * H, H)
            specs += _norm(f"{p}.{stream}_attn.norm.query_norm", 128, bias=False, weight_name="scale")
            specs += _norm(f"{p}.{stream}_attn.norm.key_norm", 128, bias=False, weight_name="scale")
            specs += _linear(f"{p}.{stream}_attn.proj", H, H)
            specs += _linear(f"{p}.{stream}_mlp.0", M, H) + _linear(f"{p}.{stream}_mlp.2", H, M)
    for s in range(single):
        p = f"single_blocks.{s}"
        specs += _linear(f"{p}.linear1", 3 * H + M, H) + _linear(f"{p}.linear2", H, H + M)
        specs += _norm(f"{p}.norm.query_norm", 128, bias=False, weight_name="scale")
        specs += _norm(f"{p}.norm.key_norm", 128, bias=False, weight_name="scale")
        specs += _linear(f"{p}.modulation.lin", 3 * H, H)
    return specs


def make_clip_l(path: Path) -> str:
    return write_safetensors(path, fill(clip_l_specs(), CLIP_L_SEED, np.float16))


def sd3_tiny_specs(depth: int = 2, context_dim: int = 4096, pooled_dim: int = 2048, max_side: int = 64,
                   patch: int = 2) -> list[TensorSpec]:
    """SD3 (MMDiT): 0.3.75 reads the width as 64 x depth, so 2 joint blocks give width 128 (2 heads of 64).

    The last block's context stream is "pre only" (no projection, no MLP), as in every SD3.
    """
    H = 64 * depth
    specs = [
        TensorSpec("x_embedder.proj.weight", (H, 16, patch, patch), "normal"),
        TensorSpec("x_embedder.proj.bias", (H,), "zeros"),
        TensorSpec("pos_embed", (1, max_side * max_side, H), "small"),
        *_linear("t_embedder.mlp.0", H, 256), *_linear("t_embedder.mlp.2", H, H),
        *_linear("y_embedder.mlp.0", H, pooled_dim), *_linear("y_embedder.mlp.2", H, H),
        *_linear("context_embedder", H, context_dim),
        *_linear("final_layer.linear", patch * patch * 16, H),
        *_linear("final_layer.adaLN_modulation.1", 2 * H, H),
    ]
    for i in range(depth):
        for stream in ("context_block", "x_block"):
            p = f"joint_blocks.{i}.{stream}"
            pre_only = stream == "context_block" and i == depth - 1
            specs += _linear(f"{p}.attn.qkv", 3 * H, H)
            specs += _linear(f"{p}.adaLN_modulation.1", (2 if pre_only else 6) * H, H)
            if not pre_only:
                specs += _linear(f"{p}.attn.proj", H, H)
                specs += _linear(f"{p}.mlp.fc1", 4 * H, H) + _linear(f"{p}.mlp.fc2", H, 4 * H)
    return specs


def make_sd3_tiny(path: Path, seed: int = 5) -> str:
    return write_safetensors(path, fill(sd3_tiny_specs(), seed, np.float16))


def specs_from_shapes(shapes: dict[str, tuple[int, ...]]) -> list[TensorSpec]:
    """Specs for a model's own parameter names and shapes: biases 0, 1-D weights and norm scales 1 (norms
    start as identity), everything else fan-in scaled normal."""
    specs = []
    for name, shape in shapes.items():
        if name.endswith("bias"):
            init = "zeros"
        elif len(shape) == 1:
            init = "ones"
        else:
            init = "normal"
        specs.append(TensorSpec(name, tuple(shape), init))
    return specs


HUNYUAN_VIDEO_TINY = {  # what 0.3.75's detection reads back from the weights (hidden 256 → 2 heads of 128)
    "in_channels": 16, "out_channels": 16, "vec_in_dim": 768, "context_in_dim": 4096, "hidden_size": 256,
    "mlp_ratio": 4.0, "num_heads": 2, "depth": 1, "depth_single_blocks": 1, "axes_dim": [16, 56, 56],
    "theta": 256, "patch_size": [1, 2, 2], "qkv_bias": True, "guidance_embed": False, "byt5": False,
    "meanflow": False, "use_cond_type_embedding": False, "vision_in_dim": None,
}


def make_hunyuan_video_tiny(path: Path, seed: int = 7) -> str:
    """One double and one single block at width 256; the names and shapes come from ComfyUI's own class
    (built on the meta device: no memory, no weights), so they match what its loader expects."""
    import comfy.ldm.hunyuan_video.model as hunyuan_video
    import comfy.ops

    model = hunyuan_video.HunyuanVideo(image_model="hunyuan_video", operations=comfy.ops.disable_weight_init,
                                       device="meta", **HUNYUAN_VIDEO_TINY)
    shapes = {k: tuple(t.shape) for k, t in model.state_dict().items()}
    return write_safetensors(path, fill(specs_from_shapes(shapes), seed, np.float16))


QWEN_IMAGE_THIN = {"num_layers": 1}  # 0.3.75 reads only the block count; width 3072 (24 heads of 128) is fixed


def make_qwen_image_thin(path: Path, seed: int = 11) -> str:
    """One dual-stream block at the fixed width 3072 (~0.7 GB in fp16); names and shapes from ComfyUI's own
    class on the meta device. The text input is 3584 wide (Qwen2.5-VL's hidden size)."""
    import comfy.ldm.qwen_image.model as qwen_image
    import comfy.ops

    model = qwen_image.QwenImageTransformer2DModel(operations=comfy.ops.disable_weight_init, device="meta",
                                                   **QWEN_IMAGE_THIN)
    shapes = {k: tuple(t.shape) for k, t in model.state_dict().items()}
    return write_safetensors(path, fill(specs_from_shapes(shapes), seed, np.float16))


# what 0.3.75's detection reads for Chroma: Flux's fixed width plus its fixed modulation approximator
CHROMA_THIN = {"in_channels": 64, "out_channels": 64, "context_in_dim": 4096, "hidden_size": 3072, "mlp_ratio": 4.0,
               "num_heads": 24, "depth": 1, "depth_single_blocks": 1, "axes_dim": [16, 56, 56], "theta": 10000,
               "patch_size": 2, "qkv_bias": True, "in_dim": 64, "out_dim": 3072, "hidden_dim": 5120, "n_layers": 5}


def make_chroma_thin(path: Path, seed: int = 13) -> str:
    """One double and one single block at the fixed width 3072 plus the fixed 5-layer, 5120-wide
    modulation approximator (~1.2 GB in fp16); names and shapes from ComfyUI's own class on the meta
    device."""
    import comfy.ldm.chroma.model as chroma
    import comfy.ops

    model = chroma.Chroma(operations=comfy.ops.disable_weight_init, device="meta", **CHROMA_THIN)
    shapes = {k: tuple(t.shape) for k, t in model.state_dict().items()}
    return write_safetensors(path, fill(specs_from_shapes(shapes), seed, np.float16))


# what 0.3.75's detection sets for Lumina 2 (dim 2304 picks 24 heads, 8 key/value heads); two main layers,
# the two refiner stacks of two layers each that the class always has; text input 2304 wide (Gemma 2 2B)
LUMINA2_TINY = {"patch_size": 2, "in_channels": 16, "dim": 2304, "cap_feat_dim": 2304, "n_layers": 2,
                "qk_norm": True, "n_heads": 24, "n_kv_heads": 8, "axes_dims": [32, 32, 32],
                "axes_lens": [300, 512, 512], "rope_theta": 10000.0, "ffn_dim_multiplier": 4.0}


def make_lumina2_tiny(path: Path, seed: int = 17) -> str:
    """A two-layer Lumina 2 at its detected width 2304 (~0.7 GB in fp16); names and shapes from ComfyUI's
    own class on the meta device."""
    import comfy.ldm.lumina.model as lumina
    import comfy.ops

    model = lumina.NextDiT(operations=comfy.ops.disable_weight_init, device="meta", **LUMINA2_TINY)
    shapes = {k: tuple(t.shape) for k, t in model.state_dict().items()}
    return write_safetensors(path, fill(specs_from_shapes(shapes), seed, np.float16))


# what 0.3.75's detection sets for Z-Image (dim 3840: 30 heads, Z-Image's modulation and time scale; the
# pad tokens' presence turns on padding the text and the image to multiples of 32); one main layer beside
# the class's two refiner stacks of two; text input 2560 wide (Qwen3 4B)
ZIMAGE_THIN = {"patch_size": 2, "in_channels": 16, "dim": 3840, "cap_feat_dim": 2560, "n_layers": 1,
               "qk_norm": True, "n_heads": 30, "n_kv_heads": 30, "axes_dims": [32, 48, 48],
               "axes_lens": [1536, 512, 512], "rope_theta": 256.0, "ffn_dim_multiplier": 8.0 / 3.0,
               "z_image_modulation": True, "time_scale": 1000.0, "pad_tokens_multiple": 32}


def make_zimage_thin(path: Path, seed: int = 19) -> str:
    """Z-Image at its detected width 3840 with one main layer (~1.8 GB in fp16); names and shapes from
    ComfyUI's own class on the meta device."""
    import comfy.ldm.lumina.model as lumina
    import comfy.ops

    model = lumina.NextDiT(operations=comfy.ops.disable_weight_init, device="meta", **ZIMAGE_THIN)
    shapes = {k: tuple(t.shape) for k, t in model.state_dict().items()}
    return write_safetensors(path, fill(specs_from_shapes(shapes), seed, np.float16))


# Wan 2.1 1.3B's width (1536: 12 heads of 128) and feed-forward, two blocks (~170 MB in fp16)
WAN_THIN = WanDims(dim=1536, ffn_dim=8960, num_layers=2)


def make_wan_thin(path: Path, seed: int = 23) -> str:
    return write_safetensors(path, fill(wan_dit_specs(WAN_THIN), seed, np.float16))


def make_flux_thin(path: Path, seed: int = 3) -> str:
    return write_safetensors(path, fill(flux_thin_specs(), seed, np.float16))

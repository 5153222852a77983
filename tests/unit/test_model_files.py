"""Seeded model files: byte-stable, and shaped the way ComfyUI's loaders detect them."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest

from tools.runtime import dit_runtime, model_files


def test_seeded_stream_is_pcg64_raw_bits():
    # PCG64's raw stream is fixed by its algorithm, so these values hold on every numpy version.
    raw = np.random.PCG64(7).random_raw(4)
    expected = ((raw >> np.uint64(40)).astype(np.float64) * 2.0**-24 * 2 - 1) * math.sqrt(3.0)
    got = model_files.SeededStream(7).values((4,), 1.0)
    assert np.allclose(got, expected, rtol=1e-6)
    assert abs(model_files.SeededStream(1).values((200_000,), 0.5).std() - 0.5) < 0.005


def test_clip_l_file_has_the_recorded_sha256(tmp_path):
    fresh = tmp_path / "clip.safetensors"
    assert model_files.make_clip_l(fresh) == model_files.CLIP_L_SHA256
    assert model_files.sha256_file(fresh) == model_files.CLIP_L_SHA256
    prepared = dit_runtime.layout().models / "text_encoders" / model_files.CLIP_L_FILE
    assert model_files.sha256_file(prepared) == model_files.CLIP_L_SHA256


def test_safetensors_header_is_canonical(tmp_path):
    path = tmp_path / "t.safetensors"
    model_files.write_safetensors(path, {"b": np.ones((2, 3), np.float16), "a": np.zeros(4, np.float32)})
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0
    header = json.loads(raw[8:8 + n])
    assert list(header) == ["a", "b"]
    assert header["a"] == {"data_offsets": [0, 16], "dtype": "F32", "shape": [4]}
    assert header["b"] == {"data_offsets": [16, 28], "dtype": "F16", "shape": [2, 3]}
    assert len(raw) == 8 + n + 28


@pytest.mark.parametrize("layers", [2, 4])
def test_wan_specs_are_what_comfyui_detects(layers):
    from comfy import model_detection

    dims = model_files.WanDims(dim=256, ffn_dim=512, num_layers=layers)
    sd = {s.name: np.zeros(s.shape, np.float16) for s in model_files.wan_dit_specs(dims)}
    import torch

    config = model_detection.detect_unet_config({k: torch.from_numpy(v) for k, v in sd.items()}, "")
    assert config["image_model"] == "wan2.1" and config["model_type"] == "t2v"
    assert (config["dim"], config["num_heads"], config["ffn_dim"], config["num_layers"]) == (256, 2, 512, layers)

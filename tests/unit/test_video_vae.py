"""The embedded VAE's video training left its image path alone: one frame never reaches the weights
tools/training/train_video.py trained, so every image figure measured before it still holds."""

from __future__ import annotations

import comfy.sd
import comfy.utils
import pytest
import torch

from tools.runtime import dit_runtime, model_files


def video_only(name: str, tensor: torch.Tensor) -> torch.Tensor | None:
    """The part of a weight only frames after the first reach (None: all of it is image path too)."""
    if ".time_conv." in name:
        return tensor
    if name.endswith(".weight") and tensor.dim() == 5 and tensor.shape[2] == 3:
        return tensor[:, :, :2]  # a causal conv's earlier taps: zero padding for a lone frame
    return None


@pytest.fixture(scope="module")
def vae_files():
    sd = comfy.utils.load_torch_file(str(dit_runtime.ASSETS / model_files.WAN_VAE_FILE))
    stripped = {}
    for name, tensor in sd.items():
        tensor = tensor.clone()
        part = video_only(name, tensor)
        if part is not None:
            part.zero_()
        stripped[name] = tensor
    return sd, stripped


def test_the_video_weights_were_trained(vae_files):
    sd, _ = vae_files
    trained = [name for name, t in sd.items() if (part := video_only(name, t)) is not None and part.abs().sum() > 0]
    assert any(".time_conv." in n for n in trained)
    assert sum(".residual." in n for n in trained) >= 10  # the earlier time taps of the residual convs


def test_one_frame_does_not_see_them(vae_files):
    sd, stripped = vae_files
    full, image_only = comfy.sd.VAE(sd=sd), comfy.sd.VAE(sd=stripped)
    gen = torch.Generator().manual_seed(0)
    pixels = torch.rand(1, 64, 64, 3, generator=gen)  # one frame, ComfyUI's IMAGE layout
    z_full, z_image = full.encode(pixels), image_only.encode(pixels)
    assert torch.equal(z_full, z_image)
    assert torch.equal(full.decode(z_full), image_only.decode(z_full))
    # while a clip depends on them: frames after the first decode differently without them
    clip = torch.randn(1, 16, 3, 8, 8, generator=gen)
    a, b = (v.decode(clip).reshape(-1, 64, 64, 3) for v in (full, image_only))  # frames
    assert a.shape[0] == 9 and torch.equal(a[:1], b[:1])
    assert (a[1:] - b[1:]).abs().mean() > 1e-3

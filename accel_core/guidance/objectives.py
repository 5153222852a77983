"""Image objectives for the head search that need no trained scorer: all higher-is-better.

Images are ComfyUI IMAGE tensors (B, H, W, 3) in [0, 1]; each function returns the batch mean.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..metrics import ssim


def _luma(images: torch.Tensor) -> torch.Tensor:
    return (images[..., 0] * 0.299 + images[..., 1] * 0.587 + images[..., 2] * 0.114).unsqueeze(1)


def sharpness(images: torch.Tensor) -> float:
    """Variance of the Laplacian of the luminance."""
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=images.dtype).view(1, 1, 3, 3)
    lap = F.conv2d(_luma(images), kernel)
    return lap.flatten(1).var(dim=1).mean().item()


def contrast(images: torch.Tensor) -> float:
    """Standard deviation of the luminance (RMS contrast)."""
    return _luma(images).flatten(1).std(dim=1).mean().item()


def colourfulness(images: torch.Tensor) -> float:
    """Hasler and Suesstrunk's colourfulness on 0-255 values."""
    r, g, b = (images[..., i] * 255.0 for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    std = (rg.flatten(1).std(1) ** 2 + yb.flatten(1).std(1) ** 2).sqrt()
    mean = (rg.flatten(1).mean(1) ** 2 + yb.flatten(1).mean(1) ** 2).sqrt()
    return (std + 0.3 * mean).mean().item()


def structure(images: torch.Tensor) -> float:
    """Share of pixels on an edge: luminance gradient magnitude above 0.1 (of the 0-1 range)."""
    y = _luma(images)
    gx = (y[..., :, 1:] - y[..., :, :-1])[..., :-1, :]
    gy = (y[..., 1:, :] - y[..., :-1, :])[..., :, :-1]
    return ((gx**2 + gy**2).sqrt() > 0.1).float().mean().item()


def closeness(reference: torch.Tensor) -> Callable[[torch.Tensor], float]:
    """SSIM against a reference image (resized to the samples' size when it differs)."""

    def score(images: torch.Tensor) -> float:
        ref = reference[:1].movedim(-1, 1)
        if ref.shape[-2:] != images.shape[1:3]:
            ref = F.interpolate(ref, size=images.shape[1:3], mode="bilinear", align_corners=False)
        ref = ref.movedim(1, -1).expand_as(images)
        return ssim(images, ref)

    return score


STATISTICS: dict[str, Callable[[torch.Tensor], float]] = {
    "sharpness": sharpness,
    "contrast": contrast,
    "colourfulness": colourfulness,
    "structure": structure,
}

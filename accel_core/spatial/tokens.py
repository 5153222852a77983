"""Running a block on a subset of the image tokens (`..token_subset`), and the maps between latent
pixels and tokens."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..memory import DEVICE, HOST, ModelDims, Need, RunShape


def rows_for_call(per_sample: torch.Tensor, chunks: int) -> torch.Tensor:
    """The subset of each batch row of a call that stacks `chunks` conditionings of the same samples."""
    return per_sample.repeat(chunks, 1)


def pad_to(x: torch.Tensor, patch: tuple[int, int, int]) -> torch.Tensor:
    """A latent (B, C, H, W) or (B, C, T, H, W) padded (replicating its edge) to whole patches."""
    pt, ph, pw = patch
    h, w = x.shape[-2:]
    pad = [0, (-w) % pw, 0, (-h) % ph]
    if x.dim() == 5:
        pad += [0, (-x.shape[2]) % pt]
    if not any(pad):
        return x
    return F.pad(x, pad, mode="replicate")


def per_token(x: torch.Tensor, patch: tuple[int, int, int]) -> torch.Tensor:
    """A per-latent-pixel map (B, H, W) or (B, T, H, W) averaged over each token's patch: (B, L).

    Tokens are numbered frame by frame, row by row, as the DiTs flatten them.
    """
    pt, ph, pw = patch
    if x.dim() == 3:
        x = x.unsqueeze(1)
        pt = 1
    x = pad_to(x.unsqueeze(1), (pt, ph, pw)).squeeze(1)
    return F.avg_pool3d(x.unsqueeze(1), (pt, ph, pw)).flatten(1)


def to_pixels(values: torch.Tensor, grid: tuple[int, int, int], patch: tuple[int, int, int],
              size: tuple[int, ...]) -> torch.Tensor:
    """A per-token map (B, L, ...) spread back onto the latent pixels: (B, ..., T, H, W) cropped to `size`."""
    t, h, w = grid
    pt, ph, pw = patch
    b, extra = values.shape[0], values.shape[2:]
    x = values.reshape(b, t, h, w, *extra)
    x = x.movedim((1, 2, 3), (-3, -2, -1))
    x = x.repeat_interleave(pt, -3).repeat_interleave(ph, -2).repeat_interleave(pw, -1)
    return x[..., : size[0], : size[1], : size[2]]


def channel_spread(v: torch.Tensor, kind: str) -> torch.Tensor:
    """Per latent pixel, how much the update moves it: std ("std") or L2 norm ("l2norm") over channels."""
    if kind == "std":
        return v.float().std(dim=1)
    if kind == "l2norm":
        return torch.linalg.vector_norm(v.float(), dim=1)
    raise ValueError(f"metric must be 'std' or 'l2norm', got {kind!r}")


def as_video(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) latents as one-frame videos (B, C, 1, H, W); video latents unchanged."""
    return x if x.dim() == 5 else x.unsqueeze(2)


def grid_of(shape: tuple[int, ...], patch: tuple[int, int, int]) -> tuple[int, int, int]:
    t = shape[2] if len(shape) == 5 else 1
    h, w = shape[-2:]
    return math.ceil(t / patch[0]), math.ceil(h / patch[1]), math.ceil(w / patch[2])


def keys_values_bytes(dims: ModelDims, shape: RunShape) -> int:
    """Every block's image self-attention keys and values, for every row of a call."""
    sites = sum(lst.blocks * lst.self_attention for lst in dims.lists)
    return sites * 2 * shape.rows * shape.image_tokens * dims.width * dims.compute_itemsize


def context_forms(kept: int, between: int, dims: ModelDims, shape: RunShape) -> tuple[Need, ...]:
    """The key / value cache on the device, or in host memory (one block's moved in per call)."""
    kv = keys_values_bytes(dims, shape)
    one_block = 2 * shape.rows * shape.image_tokens * dims.width * dims.compute_itemsize
    return (Need(DEVICE, held=kept + kv, between=between),
            Need(HOST, held=kept, transient=one_block, between=between, host=kv, moved=kv,
                 note="keys and values in host memory"))

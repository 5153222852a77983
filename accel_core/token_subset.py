"""A subset of the image tokens that a block call runs, and moving tensors between it and the full sequence.

A subset is a (rows, n) tensor of sorted token indices, one row per batch row of the model call
(ComfyUI stacks cond and uncond on the batch axis; both rows of a sample share its subset, so
the guidance difference is taken between outputs computed on the same tokens). The spatial
methods (RAS, JiT) choose subsets; a method that caches per-token tensors inside the blocks
(TaylorSeer at granularity `modules`) reads the subset of the call in progress so that what it
stores and what it hands back hold the same tokens as the call.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TokenSubset:
    index: torch.Tensor  # (rows, n) sorted token indices
    uniform: bool  # every row keeps the same tokens

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """`x` (rows, L, ...) restricted to the subset's tokens."""
        return gather_tokens(x, self.index, uniform=self.uniform)

    def scatter(self, full: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
        """A copy of `full` (rows, L, ...) with the subset's tokens replaced by `part`."""
        index = self.index.expand(full.shape[0], -1) if self.uniform and self.index.shape[0] != full.shape[0] \
            else self.index
        return scatter_tokens(full, index, part)


def gather_tokens(x: torch.Tensor, index: torch.Tensor, axis: int = 1, uniform: bool | None = None) -> torch.Tensor:
    """`x` restricted to the tokens in `index` (rows, n) along `axis`; a leading batch of 1 is shared.

    When every row keeps the same tokens (`uniform`; worked out here when None) the result keeps
    `x`'s batch size (RoPE tables are stored once for the whole batch).
    """
    if uniform is None:
        uniform = same_rows(index)
    if uniform:
        return x.index_select(axis, index[0])
    rows = index.shape[0]
    if x.shape[0] == 1 and rows > 1:
        x = x.expand(rows, *x.shape[1:])
    if axis != 1:
        raise ValueError("per-row token subsets are gathered on axis 1")
    shape = (rows, index.shape[1]) + (1,) * (x.dim() - 2)
    return torch.gather(x, 1, index.view(shape).expand(rows, index.shape[1], *x.shape[2:]))


def same_rows(index: torch.Tensor) -> bool:
    """Every row of a subset keeps the same tokens (asked once per model call: it syncs a GPU)."""
    return bool((index == index[:1]).all())


def scatter_tokens(full: torch.Tensor, index: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
    """A copy of `full` (rows, L, ...) with the tokens in `index` replaced by `part` (rows, n, ...)."""
    out = full.clone()
    shape = (index.shape[0], index.shape[1]) + (1,) * (full.dim() - 2)
    out.scatter_(1, index.view(shape).expand(*part.shape), part.to(full.dtype))
    return out

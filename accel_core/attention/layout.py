"""Where image tokens go so that attention blocks are spatially compact tiles.

Tokens arrive in the model's raster order (frame, row, column). `TileLayout` reorders them
tile by tile: a query block is a `query_tile`² square, split into `key_tile`² squares that are
the key blocks, so one permutation serves both. Tiles at the right and bottom edges can be
short; blocks are then cut by count and stay compact, and every rule below works on the
blocks' measured centroids rather than assuming full tiles.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch


@dataclass(frozen=True)
class TileLayout:
    grid: tuple[int, int, int]  # (frames, rows, columns) of image tokens
    query_tile: int  # side of a query block's square, in tokens
    key_tile: int  # side of a key block's square; divides query_tile

    @property
    def tokens(self) -> int:
        t, h, w = self.grid
        return t * h * w

    @property
    def block_q(self) -> int:
        return self.query_tile * self.query_tile

    @property
    def block_k(self) -> int:
        return self.key_tile * self.key_tile

    def order(self) -> torch.Tensor:
        """Permutation (N,): position i of the tiled sequence holds raster token order()[i]."""
        return _order(self.grid, self.query_tile, self.key_tile)

    def inverse(self) -> torch.Tensor:
        """Permutation (N,) back to raster order: tiled[inverse()] is the raster sequence."""
        return _inverse(self.grid, self.query_tile, self.key_tile)

    def key_centroids(self) -> torch.Tensor:
        """(nKb, 3) float: mean (frame, row, column) of each key block in the tiled order."""
        return _centroids(self.grid, self.query_tile, self.key_tile, self.block_k)

    def query_centroids(self) -> torch.Tensor:
        return _centroids(self.grid, self.query_tile, self.key_tile, self.block_q)


@lru_cache(maxsize=32)
def _order(grid: tuple[int, int, int], query_tile: int, key_tile: int) -> torch.Tensor:
    t, h, w = grid
    f, y, x = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    keys = [f, y // query_tile, x // query_tile, (y % query_tile) // key_tile, (x % query_tile) // key_tile,
            y % key_tile, x % key_tile]
    # lexicographic sort through one integer key (each field is smaller than its radix)
    radices = [t, -(-h // query_tile), -(-w // query_tile), query_tile // key_tile, query_tile // key_tile,
               key_tile, key_tile]
    code = torch.zeros_like(f)
    for field, radix in zip(keys, radices, strict=True):
        code = code * radix + field
    return torch.argsort(code.flatten(), stable=True)


@lru_cache(maxsize=32)
def _inverse(grid: tuple[int, int, int], query_tile: int, key_tile: int) -> torch.Tensor:
    return torch.argsort(_order(grid, query_tile, key_tile))


@lru_cache(maxsize=32)
def _centroids(grid: tuple[int, int, int], query_tile: int, key_tile: int, block: int) -> torch.Tensor:
    t, h, w = grid
    f, y, x = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    coords = torch.stack([f.flatten(), y.flatten(), x.flatten()], -1).float()
    coords = coords[_order(grid, query_tile, key_tile)]
    n = coords.shape[0]
    nb = -(-n // block)
    pad = nb * block - n
    sums = torch.nn.functional.pad(coords, (0, 0, 0, pad)).view(nb, block, 3).sum(1)
    counts = torch.full((nb, 1), float(block))
    counts[-1] = block - pad
    return sums / counts

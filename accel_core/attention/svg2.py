"""Sparse VideoGen2 (Yang et al. 2025): semantic-aware permutation, then top-p over blocks.

Per head, k-means groups the queries and the keys (separately) by content; sorting tokens by
cluster makes each fixed-size block semantically coherent (the paper runs variable-size
cluster blocks; fixed blocks over the sorted order keep one kernel for every method). Blocks
are ranked by the pooled attention weighted by block size and kept in descending probability
until `top_p` of the mass, capped by `density`. Centroids are warm-started from the previous
step (state per block and stream), as the reference does after its first step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ...kernels.block_sparse_reference import block_mean_reference, n_blocks
from .dispatch import gather_tokens
from .selection import Selection, budget, top_p

TOP_P = 0.9
COLD_ITERATIONS = 6
WARM_ITERATIONS = 2


@dataclass
class Centroids:
    q: torch.Tensor  # (B, H, QC, D)
    k: torch.Tensor  # (B, H, KC, D)


def kmeans(x: torch.Tensor, clusters: int, iterations: int, init: torch.Tensor | None = None
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, H, N, D) → labels (B, H, N), centroids (B, H, C, D). Deterministic: strided init."""
    xf = x.float()
    n = xf.shape[-2]
    if init is None or init.shape[-2] != clusters or init.shape[:2] != x.shape[:2]:
        init = xf[..., torch.linspace(0, n - 1, clusters, device=x.device).long(), :]
    centroids = init
    x_sq = (xf * xf).sum(-1, keepdim=True)
    labels = torch.zeros(xf.shape[:-1], dtype=torch.long, device=x.device)
    for _ in range(max(1, iterations)):
        dist = x_sq - 2 * xf @ centroids.transpose(-1, -2) + (centroids * centroids).sum(-1).unsqueeze(-2)
        labels = dist.argmin(-1)
        sums = torch.zeros_like(centroids).scatter_add_(-2, labels.unsqueeze(-1).expand_as(xf), xf)
        counts = torch.zeros(centroids.shape[:-1], device=x.device).scatter_add_(
            -1, labels, torch.ones_like(labels, dtype=torch.float))
        # an empty cluster keeps its old centroid
        centroids = torch.where(counts.unsqueeze(-1) > 0, sums / counts.clamp_min(1).unsqueeze(-1), centroids)
    return labels, centroids


def select(q: torch.Tensor, k: torch.Tensor, block_q: int, block_k: int, density: float,
           previous: Centroids | None) -> tuple[Selection, Centroids]:
    nqb, nkb = n_blocks(q.shape[-2], block_q), n_blocks(k.shape[-2], block_k)
    iterations = COLD_ITERATIONS if previous is None else WARM_ITERATIONS
    q_labels, q_cent = kmeans(q, nqb, iterations, previous.q if previous else None)
    k_labels, k_cent = kmeans(k, nkb, iterations, previous.k if previous else None)
    q_perm = torch.argsort(q_labels, dim=-1, stable=True)
    k_perm = torch.argsort(k_labels, dim=-1, stable=True)
    qm = block_mean_reference(gather_tokens(q, q_perm), block_q)
    km = block_mean_reference(gather_tokens(k, k_perm), block_k)
    sizes = torch.full((nkb,), float(block_k), device=q.device)
    sizes[-1] = k.shape[-2] - (nkb - 1) * block_k
    probs = torch.softmax(qm @ km.transpose(-1, -2) / math.sqrt(q.shape[-1]) + sizes.log(), dim=-1)
    index, count = top_p(probs, TOP_P, budget(density, nkb))
    return Selection(index, count, q_perm=q_perm, k_perm=k_perm), Centroids(q_cent, k_cent)

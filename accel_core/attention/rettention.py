"""Re-ttention (Chen et al. 2025): a very sparse local mask, reshaped by statistics of full steps.

At a refresh step attention runs in full and in sparse form; per query it stores the share of
softmax mass the mask keeps, ratio = exp(lse_mask − lse_full), and the residual
out_full − ratio·out_sparse. On the other steps the sparse output is scaled by the stored ratio
(its weights sum to the mass the mask held, not to 1) and the residual is added back. The
reference's `ratio += 0.04` per sparse step is a PixArt-tuned heuristic and is left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..memory import ON_DEVICE, Storage

REFRESH_INTERVAL = 5  # steps between refreshes after the dense steps, as the reference code


@dataclass
class Reshape:
    ratio: torch.Tensor  # (B, H, N, 1)
    residual: torch.Tensor  # (B, H, N, D)


def refresh(out_full: torch.Tensor, lse_full: torch.Tensor, out_sparse: torch.Tensor,
            lse_sparse: torch.Tensor, residual_dtype: torch.dtype = torch.float32,
            storage: Storage = ON_DEVICE) -> Reshape:
    """`residual_dtype`: float32, or the model's dtype (memory form MODEL_DTYPE); `storage`: where
    the reshape is kept (host memory in form HOST)."""
    ratio = torch.exp(lse_sparse - lse_full).nan_to_num(0.0).clamp(0.0, 1.0).unsqueeze(-1)
    residual = (out_full.float() - ratio * out_sparse.float()).to(residual_dtype)
    return Reshape(storage.keep(ratio), storage.keep(residual))


def apply(out_sparse: torch.Tensor, lse_sparse: torch.Tensor, reshape: Reshape,
          storage: Storage = ON_DEVICE) -> tuple[torch.Tensor, torch.Tensor]:
    """The reshaped output, and the full denominator the stored ratio implies."""
    ratio = storage.use(reshape.ratio, out_sparse.device)
    residual = storage.use(reshape.residual, out_sparse.device)
    out = (ratio * out_sparse.float() + residual.float()).to(out_sparse.dtype)
    return out, lse_sparse - ratio.squeeze(-1).clamp_min(1e-12).log()


def is_refresh_step(step: int, dense_steps: int) -> bool:
    """The last dense step (which pays for full attention anyway), then every REFRESH_INTERVAL steps."""
    first = max(dense_steps - 1, 0)
    return step >= first and (step - first) % REFRESH_INTERVAL == 0

"""Sparse attention node: DiTAccelSparseAttention."""

from __future__ import annotations

from typing import Any, ClassVar

from comfy_api.latest import io

from ..accel_core.attention.apply import apply_sparse_attention
from ..accel_core.attention.config import METHODS
from ..accel_core.settings import records
from .base import MethodNode, NodeText
from .inputs import ABSENT, AUTO, auto_float, auto_int, check, window_inputs

CATEGORY = "DiTAccel/attention"
METHOD_TIP = ("grat: static neighbourhood of each tile; pisa: exact top blocks + Taylor estimate of the rest; "
              "svg2: k-means reordering + top-p blocks; draft: low-resolution attention map picks blocks; "
              "rettention: very sparse window, rescaled by statistics of full steps.")


class DiTAccelSparseAttention(MethodNode):
    TEXT = NodeText("DiTAccelSparseAttention", "DiT Accel Sparse Attention", CATEGORY,
                    "Block-sparse image self-attention (GRAT, PISA, Sparse VideoGen2, DraftAttention, Re-ttention): "
                    "each query tile attends exactly to the chosen key tiles. Pays off at large images and videos "
                    "(thousands of tokens), where attention is most of the work. Chains with other attention "
                    "patches and stacks with the caching nodes.", "The model with sparse attention attached.")
    METHOD = records.SPARSE
    attach = staticmethod(apply_sparse_attention)
    # left out: the loaded model's balanced values
    OMITTED: ClassVar[dict[str, Any]] = {"density": AUTO, "dense_steps": AUTO, "dense_blocks": AUTO}

    @classmethod
    def custom_inputs(cls) -> list[Any]:
        return [
            io.Combo.Input("method", options=list(METHODS), default="draft", tooltip=METHOD_TIP),
            auto_float("density", 1.0, 0.01, "share of key blocks computed exactly per query block (svg2: "
                                              "the cap of its top-p budget)."),
            auto_int("dense_steps", 200, "this many first steps use full attention."),
            auto_int("dense_blocks", 200, "this many first transformer blocks use full attention."),
            *window_inputs("Sparse attention starts", "Sparse attention ends"),
            io.Boolean.Input("estimate_skipped", default=True, optional=True,
                             tooltip="Estimate the skipped key blocks from their means (PISA's Taylor "
                                     "estimate) instead of dropping them; pisa always does."),
        ]

    @classmethod
    def validate_inputs(cls, input_types: dict[str, Any] | None = None, preset: str = ABSENT, method: str = ABSENT,
                        density: float = ABSENT, start_percent: float = ABSENT,
                        end_percent: float = ABSENT) -> bool | str:
        return check(cls, input_types, preset=preset, method=method, density=density,
                     start_percent=start_percent, end_percent=end_percent)


NODES = [DiTAccelSparseAttention]

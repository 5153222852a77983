"""Sparse attention node: DiTAccelSparseAttention."""

from __future__ import annotations

from typing import Any

from comfy_api.latest import io

from ..accel_core.attention.apply import apply_sparse_attention
from ..accel_core.attention.config import METHODS
from ..accel_core.settings import records
from ..accel_core.settings.resolve import Request
from .inputs import ABSENT, AUTO, FAMILIES, auto_float, auto_int, preset_input, schema_error, window_error
from .schema import node_schema

CATEGORY = "DiTAccel/attention"
METHOD_TIP = ("grat: static neighbourhood of each tile; pisa: exact top blocks + Taylor estimate of the rest; "
              "svg2: k-means reordering + top-p blocks; draft: low-resolution attention map picks blocks; "
              "rettention: very sparse window, rescaled by statistics of full steps.")


class DiTAccelSparseAttention(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            node_id="DiTAccelSparseAttention",
            display_name="DiT Accel Sparse Attention",
            category=CATEGORY,
            description="Block-sparse image self-attention (GRAT, PISA, Sparse VideoGen2, DraftAttention, "
                        "Re-ttention): each query tile attends exactly to the chosen key tiles. Pays off at "
                        "large images and videos (thousands of tokens), where attention is most of the work. "
                        "Chains with other attention patches and stacks with the caching nodes.",
            inputs=[
                io.Model.Input("model", tooltip=f"The diffusion model ({FAMILIES})."),
                preset_input(),
                io.Combo.Input("method", options=list(METHODS), default="draft", tooltip=METHOD_TIP),
                auto_float("density", 1.0, 0.01, "share of key blocks computed exactly per query block (svg2: "
                                                  "the cap of its top-p budget)."),
                auto_int("dense_steps", 200, "this many first steps use full attention."),
                auto_int("dense_blocks", 200, "this many first transformer blocks use full attention."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.01, optional=True,
                               tooltip="Sparse attention starts at this share of the steps."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.01, optional=True,
                               tooltip="Sparse attention ends at this share of the steps."),
                io.Boolean.Input("estimate_skipped", default=True, optional=True,
                                 tooltip="Estimate the skipped key blocks from their means (PISA's Taylor "
                                         "estimate) instead of dropping them; pisa always does."),
            ],
            outputs=[io.Model.Output(tooltip="The model with sparse attention attached.")],
        )

    @classmethod
    def validate_inputs(cls, input_types: dict[str, Any] | None = None, preset: str = ABSENT, method: str = ABSENT,
                        density: float = ABSENT, start_percent: float = ABSENT,
                        end_percent: float = ABSENT) -> bool | str:
        return (schema_error(cls, input_types, preset=preset, method=method, density=density,
                             start_percent=start_percent, end_percent=end_percent)
                or window_error(start_percent, end_percent) or True)

    @classmethod
    def execute(cls, model, preset: str, method: str, density: float = AUTO, dense_steps: int = AUTO,
                dense_blocks: int = AUTO,
                start_percent: float = 0.0, end_percent: float = 1.0, estimate_skipped: bool = True
                ) -> io.NodeOutput:
        config = Request(records.SPARSE, preset, {
            "method": method, "density": density, "dense_steps": dense_steps, "dense_blocks": dense_blocks,
            "start_percent": start_percent, "end_percent": end_percent, "estimate_skipped": estimate_skipped})
        return io.NodeOutput(apply_sparse_attention(model, config))


NODES = [DiTAccelSparseAttention]

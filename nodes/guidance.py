"""Perturbation guidance nodes: DiTAccelSoftPAG."""

from __future__ import annotations

from comfy_api.latest import io

from ..accel_core.guidance.apply import apply_softpag
from ..accel_core.guidance.head_spec import HeadSpecError, parse
from ..accel_core.guidance.softpag import SoftPAGConfig

CATEGORY = "DiTAccel/guidance"
HEADS_TIP = ("Which attention heads to perturb: entries separated by ';', each [kind:]block:heads, 0-based; "
             "heads 'all' or a list like 0,1. Wan: '3:all; 5:0,1'. Flux: 'double:3:all; single:10:2,5'.")


class DiTAccelSoftPAG(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DiTAccelSoftPAG",
            display_name="DiT Accel SoftPAG",
            category=CATEGORY,
            description="Perturbation guidance on chosen attention heads: an extra pass where each chosen "
                        "head's attention map moves toward identity by `strength`, and the output is pushed "
                        "away from it by `scale`. Works with CFG on or off and with the caching nodes.",
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model (Wan 2.x or Flux)."),
                io.String.Input("heads", default="2:all", multiline=False, tooltip=HEADS_TIP),
                io.Float.Input("strength", default=0.5, min=0.0, max=1.0, step=0.01,
                               tooltip="u: attention map (1 - u) A + u I on the chosen heads; 0 turns guidance off."),
                io.Float.Input("scale", default=3.0, min=0.0, max=100.0, step=0.1,
                               tooltip="w: denoised + w (cond - perturbed cond)."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.01, optional=True,
                               tooltip="Guidance starts at this share of the steps."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.01, optional=True,
                               tooltip="Guidance ends at this share of the steps."),
            ],
            outputs=[io.Model.Output(tooltip="The model with SoftPAG guidance attached.")],
        )

    @classmethod
    def validate_inputs(cls, heads: str | None = None, strength: float | None = None, scale: float | None = None,
                        start_percent: float | None = None, end_percent: float | None = None) -> bool | str:
        if heads is not None:
            try:
                parse(heads)
            except HeadSpecError as e:
                return str(e)
        for name, value, lo, hi in (("strength", strength, 0.0, 1.0), ("scale", scale, 0.0, 100.0),
                                    ("start_percent", start_percent, 0.0, 1.0), ("end_percent", end_percent, 0.0, 1.0)):
            if value is not None and not lo <= value <= hi:
                return f"{name} must lie in [{lo:g}, {hi:g}], got {value}"
        if start_percent is not None and end_percent is not None and start_percent >= end_percent:
            return f"start_percent ({start_percent}) must be below end_percent ({end_percent})"
        return True

    @classmethod
    def execute(cls, model, heads: str, strength: float, scale: float, start_percent: float = 0.0,
                end_percent: float = 1.0) -> io.NodeOutput:
        config = SoftPAGConfig(heads, strength, scale, start_percent, end_percent)
        return io.NodeOutput(apply_softpag(model, config))


NODES = [DiTAccelSoftPAG]

"""Spatial acceleration nodes: DiTAccelRAS."""

from __future__ import annotations

from comfy_api.latest import io

from ..accel_core.spatial import presets
from ..accel_core.spatial.apply import apply_ras
from ..accel_core.spatial.ras import METRICS
from .inputs import choice_error, range_error, window_error

CATEGORY = "DiTAccel/spatial"
MODEL_TIP = "The diffusion model (Wan 2.1 / 2.2; other families are refused with a message). Stacks with the " \
            "other DiTAccel nodes."
PRESET_TIP = ("quality / balanced / fast: settings calibrated on the embedded model (see README); "
              "custom: the inputs below.")
RAS_DEFAULT = presets.RAS["balanced"]


class DiTAccelRAS(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        d = RAS_DEFAULT
        return io.Schema(
            node_id="DiTAccelRAS",
            display_name="DiT Accel RAS (Region-Adaptive Sampling)",
            category=CATEGORY,
            description="Region-Adaptive Sampling: after the warm-up, each step runs the transformer only on the "
                        "image tokens whose update matters most; the others reuse their last output, and attention "
                        "still sees every token through a key/value cache. Wan 2.x.",
            inputs=[
                io.Model.Input("model", tooltip=MODEL_TIP),
                io.Combo.Input("preset", options=list(presets.PRESET_NAMES), default="balanced", tooltip=PRESET_TIP),
                io.Float.Input("sample_ratio", default=d.sample_ratio, min=0.05, max=1.0, step=0.01, optional=True,
                               tooltip="custom: share of the image tokens computed on a sparse step."),
                io.Int.Input("warmup_steps", default=d.warmup_steps, min=0, max=1000, optional=True,
                             tooltip="custom: this many first steps compute every token."),
                io.Int.Input("dense_steps", default=d.dense_steps, min=0, max=1000, optional=True,
                             tooltip="custom: this many steps, spread evenly after the warm-up, compute every "
                                     "token and refresh the caches."),
                io.Int.Input("final_dense_steps", default=d.final_dense_steps, min=0, max=1000, optional=True,
                             tooltip="custom: this many last steps compute every token (the last step's output "
                                     "is the image)."),
                io.Float.Input("high_ratio", default=d.high_ratio, min=0.0, max=1.0, step=0.05, optional=True,
                               tooltip="custom: share of the skipped tokens taken from the fastest-changing end of "
                                       "the ranking (0: skip the slowest regions, as the paper describes; 1: as "
                                       "the reference code)."),
                io.Float.Input("starvation_scale", default=d.starvation_scale, min=0.0, max=10.0, step=0.05,
                               optional=True, tooltip="custom: how fast a token's rank changes each time it is "
                                                      "skipped."),
                io.Combo.Input("metric", options=list(METRICS), default=d.metric, optional=True,
                               tooltip="custom: per-pixel spread of the update over latent channels."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.01, optional=True,
                               tooltip="Sparse steps start at this share of the steps."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.01, optional=True,
                               tooltip="Sparse steps end at this share of the steps."),
            ],
            outputs=[io.Model.Output(tooltip="The model with RAS attached.")],
        )

    @classmethod
    def validate_inputs(cls, preset: str | None = None, sample_ratio: float | None = None,
                        high_ratio: float | None = None, metric: str | None = None,
                        start_percent: float | None = None, end_percent: float | None = None) -> bool | str:
        return (choice_error("preset", preset, presets.PRESET_NAMES) or choice_error("metric", metric, METRICS)
                or range_error("sample_ratio", sample_ratio, 0.05, 1.0) or range_error("high_ratio", high_ratio, 0, 1)
                or window_error(start_percent, end_percent) or True)

    @classmethod
    def execute(cls, model, preset: str, sample_ratio: float | None = None, warmup_steps: int | None = None,
                dense_steps: int | None = None, final_dense_steps: int | None = None, high_ratio: float | None = None,
                starvation_scale: float | None = None, metric: str | None = None, start_percent: float = 0.0,
                end_percent: float = 1.0) -> io.NodeOutput:
        config = presets.ras(preset, {"sample_ratio": sample_ratio, "warmup_steps": warmup_steps,
                                      "dense_steps": dense_steps, "final_dense_steps": final_dense_steps,
                                      "high_ratio": high_ratio,
                                      "starvation_scale": starvation_scale, "metric": metric})
        if (start_percent, end_percent) != (0.0, 1.0):
            config = config.with_window(start_percent, end_percent)
        return io.NodeOutput(apply_ras(model, config))


NODES = [DiTAccelRAS]

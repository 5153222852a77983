"""Spatial acceleration nodes: DiTAccelRAS, DiTAccelJiT."""

from __future__ import annotations

from typing import Any

from comfy_api.latest import io

from ..accel_core.settings import records
from ..accel_core.settings.resolve import AUTO_TEXT
from ..accel_core.spatial.apply import apply_jit, apply_ras
from ..accel_core.spatial.jit import INTERPOLATE, JiTConfig, parse_fractions
from ..accel_core.spatial.ras import METRICS
from .base import MethodNode, NodeText
from .inputs import ABSENT, auto_float, auto_int, check, given, schema_error, window_inputs

CATEGORY = "DiTAccel/spatial"
MODEL_TIP = "The diffusion model (Wan 2.1 / 2.2; other families are refused with a message). Stacks with the " \
            "other DiTAccel nodes."
RAS_METRIC = records.embedded_balanced(records.RAS)["metric"]  # every record uses it


class DiTAccelRAS(MethodNode):
    TEXT = NodeText("DiTAccelRAS", "DiT Accel RAS (Region-Adaptive Sampling)", CATEGORY,
                    "Region-Adaptive Sampling: after the warm-up, each step runs the transformer only on the image "
                    "tokens whose update matters most; the others reuse their last output, and attention still sees "
                    "every token through a key/value cache. Wan 2.x.", "The model with RAS attached.", MODEL_TIP)
    METHOD = records.RAS
    attach = staticmethod(apply_ras)

    @classmethod
    def custom_inputs(cls) -> list[Any]:
        return [
            auto_float("sample_ratio", 1.0, 0.01, "share of the image tokens computed on a sparse step."),
            auto_int("warmup_steps", 1000, "this many first steps compute every token."),
            auto_int("dense_steps", 1000, "this many steps, spread evenly after the warm-up, compute every "
                                          "token and refresh the caches."),
            auto_int("final_dense_steps", 1000, "this many last steps compute every token (the last step's "
                                                "output is the image)."),
            auto_float("high_ratio", 1.0, 0.05, "share of the skipped tokens taken from the fastest-changing "
                                                "end of the ranking (0: skip the slowest regions, as the paper "
                                                "describes; 1: as the reference code)."),
            auto_float("starvation_scale", 10.0, 0.05, "how fast a token's rank changes each time it is skipped."),
            io.Combo.Input("metric", options=list(METRICS), default=RAS_METRIC, optional=True,
                           tooltip="custom: per-pixel spread of the update over latent channels."),
            *window_inputs("Sparse steps start", "Sparse steps end"),
        ]

    @classmethod
    def validate_inputs(cls, input_types: dict[str, Any] | None = None, preset: str = ABSENT,
                        sample_ratio: float = ABSENT, high_ratio: float = ABSENT, starvation_scale: float = ABSENT,
                        metric: str = ABSENT, start_percent: float = ABSENT, end_percent: float = ABSENT) -> bool | str:
        return check(cls, input_types, preset=preset, sample_ratio=sample_ratio, high_ratio=high_ratio,
                     starvation_scale=starvation_scale, metric=metric, start_percent=start_percent,
                     end_percent=end_percent)


JIT_BALANCED = JiTConfig(**records.embedded_balanced(records.JIT))
# full_context, a boolean, cannot be left at auto: it starts at the embedded model's balanced value
JIT_FULL_CONTEXT = JIT_BALANCED.full_context


def jit_inputs_error(stages: str | None, densities: str | None) -> str | None:
    """Both parse, have equal lengths, rise as JiT needs (the message names the input). One left at auto is
    judged against the records' stages or densities, which all have the same number of entries."""
    stages = None if stages is None or stages.strip() == AUTO_TEXT else stages
    densities = None if densities is None or densities.strip() == AUTO_TEXT else densities
    if stages is None and densities is None:
        return None
    try:
        JiTConfig(stages=parse_fractions(stages, "stages") if stages is not None else JIT_BALANCED.stages,
                  densities=parse_fractions(densities, "densities") if densities is not None
                  else JIT_BALANCED.densities)
    except ValueError as e:
        return str(e)
    return None


class DiTAccelJiT(MethodNode):
    TEXT = NodeText("DiTAccelJiT", "DiT Accel JiT (Just-in-Time anchors)", CATEGORY,
                    "Just-in-Time: early steps run the transformer on a sparse, growing set of anchor tokens; the "
                    "other tokens follow the anchors' interpolated prediction, and tokens joining at a stage change "
                    "are eased in by a deterministic micro-flow. Works with the stock KSampler. Wan 2.x.",
                    "The model with JiT attached.", MODEL_TIP)
    METHOD = records.JIT
    attach = staticmethod(apply_jit)

    @classmethod
    def custom_inputs(cls) -> list[Any]:
        return [
            io.String.Input("stages", default=AUTO_TEXT, optional=True,
                            tooltip="custom: where each stage ends, as comma-separated shares of the steps, "
                                    "rising to 1.0 (e.g. 0.4, 0.65, 1.0); auto: the loaded model's balanced "
                                    "stages."),
            io.String.Input("densities", default=AUTO_TEXT, optional=True,
                            tooltip="custom: share of the image tokens computed in each stage, one per stage, "
                                    "never falling (e.g. 0.35, 0.62, 1.0); auto: the loaded model's balanced "
                                    "densities."),
            auto_int("relax", 100, "R of the micro-flow; a joining token moves 1/R of the way to the anchors' "
                                   "estimate."),
            io.Combo.Input("interpolate", options=[AUTO_TEXT, *INTERPOLATE], default=AUTO_TEXT, optional=True,
                           tooltip="custom: spread the anchors' clean-image estimate (clean) or their velocity "
                                   "(velocity, as the paper); auto: the loaded model's balanced choice."),
            auto_int("warmup_steps", 1000, "this many first steps compute every token before the stages start "
                                           "(ours; the paper starts sparse)."),
            io.Boolean.Input("full_context", default=JIT_FULL_CONTEXT, optional=True,
                             tooltip="custom: anchors attend to every token, the others' keys and values taken "
                                     "from the latest full step (ours; the paper's anchors see only anchors)."),
        ]

    @classmethod
    def validate_inputs(cls, input_types: dict[str, Any] | None = None, preset: str = ABSENT, stages: str = ABSENT,
                        densities: str = ABSENT, relax: int = ABSENT, interpolate: str = ABSENT) -> bool | str:
        # relax: -1 (auto) or 1-100, a gap ComfyUI's own range check cannot express
        return (schema_error(cls, input_types, preset=preset, stages=stages, densities=densities, relax=relax,
                             interpolate=interpolate)
                or jit_inputs_error(given(stages), given(densities)) or True)


NODES = [DiTAccelRAS, DiTAccelJiT]

"""Feature caching nodes: DiTAccelTaylorSeer, DiTAccelCGTaylor, DiTAccelFirstBlockCache."""

from __future__ import annotations

from typing import Any

from comfy_api.latest import io

from ..accel_core.caching.apply import apply_cg_taylor, apply_first_block_cache, apply_taylorseer
from ..accel_core.caching.taylorseer import GRANULARITIES
from ..accel_core.calibration.plan import BUDGETS, UNIT
from ..accel_core.calibration.profiled import ProfiledRequest, model_fingerprint
from ..accel_core.settings import records
from ..accel_core.settings.resolve import Request
from .calibration import PROFILE
from .inputs import ABSENT, FAMILIES, auto_float, auto_int, preset_input, schema_error, window_error
from .schema import node_schema

CATEGORY = "DiTAccel/caching"


def window_inputs() -> list[Any]:
    return [
        auto_int("warmup_steps", 100, "this many first steps always run in full."),
        io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.01, optional=True,
                       tooltip="custom: skipping starts at this share of the steps."),
        io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.01, optional=True,
                       tooltip="custom: skipping ends at this share of the steps; the last step always runs."),
    ]


def profile_input() -> Any:
    budgets = " / ".join(f"{v:g}" for v in BUDGETS.values())
    return PROFILE.Input("profile", optional=True, tooltip=(
        f"Optional: a DiT Accel Calibrate or Load Profile measurement of this model. With it, "
        f"{' / '.join(BUDGETS)} are error budgets ({UNIT}: {budgets}) and the node runs the least compute "
        "predicted to stay within; a profile that does not fit the run (another model, step count or size) "
        "is not used and the report says why."))


def request(model: Any, method: str, preset: str, profile: Any, custom: dict[str, Any]) -> Any:
    """The node's preset and inputs, planned from `profile` where one is connected."""
    req = Request(method, preset, custom)
    return req if profile is None else ProfiledRequest(req, profile, model_fingerprint(model))


def max_skips_input() -> io.Int.Input:
    return auto_int("max_skips", 50, "at most this many skipped steps in a row.")



def check_inputs(node: type[io.ComfyNode], input_types: dict[str, Any] | None, **values: Any) -> bool | str:
    """validate_inputs of the caching nodes: the named widgets against the schema, then the window."""
    return (schema_error(node, input_types, **values)
            or window_error(values["start_percent"], values["end_percent"]) or True)


MODEL_TIP = f"The diffusion model ({FAMILIES}). Stacks with the other DiTAccel nodes."


class DiTAccelTaylorSeer(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            node_id="DiTAccelTaylorSeer",
            display_name="DiT Accel TaylorSeer",
            category=CATEGORY,
            description="TaylorSeer: run the transformer every `interval` steps and forecast the steps "
                        "in between with a Taylor series built from the computed steps.",
            inputs=[
                io.Model.Input("model", tooltip=MODEL_TIP),
                preset_input(),
                profile_input(),
                auto_int("interval", 50, "one full step every this many steps."),
                auto_int("order", 4, "Taylor order of the forecast (0 reuses the last full step)."),
                *window_inputs(),
                io.Combo.Input("granularity", options=list(GRANULARITIES), default="auto", optional=True,
                               tooltip="auto: output at order 0, blocks above. output: forecast the model's "
                                       "output, so a forecast step runs nothing of the model (order + 1 "
                                       "latents per cond/uncond; orders >= 1 extrapolate badly; SD3 uses "
                                       "blocks). blocks: forecast the block stack's output, the head still "
                                       "runs (order + 1 hidden states). modules: forecast every attention "
                                       "and MLP output, as the paper (Wan only; 3 x blocks x (order + 1) "
                                       "hidden states). Applies to every preset."),
                auto_float("threshold", 10.0, 0.005,
                           "0 runs a full step every `interval` steps. Above 0 the schedule is adaptive: a full "
                           "step as soon as the estimated relative change of the forecast feature since the last "
                           "full step reaches this, and at the latest every `interval` steps."),
            ],
            outputs=[io.Model.Output(tooltip="The model with TaylorSeer attached.")],
        )

    @classmethod
    def validate_inputs(cls, input_types: dict[str, Any] | None = None, preset: str = ABSENT,
                        interval: int = ABSENT, threshold: float = ABSENT, granularity: str = ABSENT,
                        start_percent: float = ABSENT, end_percent: float = ABSENT) -> bool | str:
        # interval: -1 (auto) or 1-50, a gap ComfyUI's own range check cannot express
        return check_inputs(cls, input_types, preset=preset, interval=interval, threshold=threshold,
                            granularity=granularity, start_percent=start_percent, end_percent=end_percent)

    @classmethod
    def execute(cls, model, preset: str, profile: Any = None, **custom: Any) -> io.NodeOutput:
        return io.NodeOutput(apply_taylorseer(model, request(model, records.TAYLORSEER, preset, profile, custom)))


class GateNode(io.ComfyNode):
    """The input check of the two first-block gates (CG-Taylor, FirstBlockCache): the same widgets to judge."""

    @classmethod
    def validate_inputs(cls, input_types: dict[str, Any] | None = None, preset: str = ABSENT,
                        threshold: float = ABSENT, start_percent: float = ABSENT,
                        end_percent: float = ABSENT) -> bool | str:
        return check_inputs(cls, input_types, preset=preset, threshold=threshold, start_percent=start_percent,
                            end_percent=end_percent)


class DiTAccelCGTaylor(GateNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            node_id="DiTAccelCGTaylor",
            display_name="DiT Accel CG-Taylor",
            category=CATEGORY,
            description="Confidence-gated Taylor: always run the first block and compare it with its own "
                        "Taylor forecast; when the forecast was good, skip the rest and forecast the "
                        "last block's output too.",
            inputs=[
                io.Model.Input("model", tooltip=MODEL_TIP),
                preset_input(),
                profile_input(),
                auto_float("threshold", 2.0, 0.005, "skip when the first block's relative forecast error is "
                                                    "below this."),
                auto_int("order", 4, "Taylor order of the last-block forecast."),
                auto_int("first_block_order", 4, "Taylor order of the first-block forecast used as the gate."),
                max_skips_input(),
                *window_inputs(),
            ],
            outputs=[io.Model.Output(tooltip="The model with CG-Taylor attached.")],
        )

    @classmethod
    def execute(cls, model, preset: str, profile: Any = None, **custom: Any) -> io.NodeOutput:
        return io.NodeOutput(apply_cg_taylor(model, request(model, records.CG_TAYLOR, preset, profile, custom)))


class DiTAccelFirstBlockCache(GateNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            node_id="DiTAccelFirstBlockCache",
            display_name="DiT Accel First Block Cache",
            category=CATEGORY,
            description="First-block cache (the FBCache / TeaCache family): skip the rest of the stack while "
                        "the first block's residual barely changed, reusing the rest's cached residual.",
            inputs=[
                io.Model.Input("model", tooltip=MODEL_TIP),
                preset_input(),
                profile_input(),
                auto_float("threshold", 2.0, 0.005, "skip while the first block's residual changed by less "
                                                    "than this (relative L1) since the last full step."),
                max_skips_input(),
                *window_inputs(),
            ],
            outputs=[io.Model.Output(tooltip="The model with the first-block cache attached.")],
        )

    @classmethod
    def execute(cls, model, preset: str, profile: Any = None, **custom: Any) -> io.NodeOutput:
        return io.NodeOutput(apply_first_block_cache(model, request(model, records.FBCACHE, preset, profile,
                                                                    custom)))


NODES = [DiTAccelTaylorSeer, DiTAccelCGTaylor, DiTAccelFirstBlockCache]

"""Feature caching nodes: DiTAccelTaylorSeer, DiTAccelCGTaylor, DiTAccelFirstBlockCache."""

from __future__ import annotations

from typing import Any

from comfy_api.latest import io

from ..accel_core.caching.apply import apply_cg_taylor, apply_first_block_cache, apply_taylorseer
from ..accel_core.caching.taylorseer import GRANULARITIES
from ..accel_core.calibration.plan import BUDGETS, UNIT
from ..accel_core.calibration.profiled import ProfiledRequest, model_fingerprint
from ..accel_core.settings import records
from . import inputs
from .base import MethodNode, NodeText
from .calibration import PROFILE
from .inputs import ABSENT, FAMILIES, auto_float, auto_int, check

CATEGORY = "DiTAccel/caching"


def window_inputs() -> list[Any]:
    return [auto_int("warmup_steps", 100, "this many first steps always run in full."),
            *inputs.window_inputs("custom: skipping starts", "custom: skipping ends", "; the last step always runs")]


def profile_input() -> Any:
    budgets = " / ".join(f"{v:g}" for v in BUDGETS.values())
    return PROFILE.Input("profile", optional=True, tooltip=(
        f"Optional: a DiT Accel Calibrate or Load Profile measurement of this model. With it, "
        f"{' / '.join(BUDGETS)} are error budgets ({UNIT}: {budgets}) and the node runs the least compute "
        "predicted to stay within; a profile that does not fit the run (another model, step count or size) "
        "is not used and the report says why."))


def max_skips_input() -> io.Int.Input:
    return auto_int("max_skips", 50, "at most this many skipped steps in a row.")


def text(node_id: str, display_name: str, description: str, output: str) -> NodeText:
    return NodeText(node_id, display_name, CATEGORY, description, output, model=f"The diffusion model ({FAMILIES})."
                    + inputs.STACKS)


class CachingNode(MethodNode):
    """A caching node: the preset may be planned from a calibration profile (the optional `profile` input)."""

    @classmethod
    def request(cls, model: Any, preset: str, custom: dict[str, Any]) -> Any:
        profile = custom.pop("profile", None)
        req = super().request(model, preset, custom)
        return req if profile is None else ProfiledRequest(req, profile, model_fingerprint(model))


class DiTAccelTaylorSeer(CachingNode):
    TEXT = text("DiTAccelTaylorSeer", "DiT Accel TaylorSeer",
                "TaylorSeer: run the transformer every `interval` steps and forecast the steps in between with a "
                "Taylor series built from the computed steps.", "The model with TaylorSeer attached.")
    METHOD = records.TAYLORSEER
    attach = staticmethod(apply_taylorseer)

    @classmethod
    def custom_inputs(cls) -> list[Any]:
        return [
            profile_input(),
            auto_int("interval", 50, "one full step every this many steps."),
            auto_int("order", 4, "Taylor order of the forecast (0 reuses the last full step)."),
            *window_inputs(),
            io.Combo.Input("granularity", options=list(GRANULARITIES), default="auto", optional=True,
                           tooltip="What is forecast: output (the model's output, the cheapest), blocks (the "
                                   "block stack's output), modules (every attention and MLP output, as the "
                                   "paper; Wan only); auto: output at order 0, blocks above. Every preset."),
            auto_float("threshold", 10.0, 0.005,
                       "0 runs a full step every `interval` steps. Above 0 the schedule is adaptive: a full "
                       "step as soon as the estimated relative change of the forecast feature since the last "
                       "full step reaches this, and at the latest every `interval` steps."),
        ]

    @classmethod
    def validate_inputs(cls, input_types: dict[str, Any] | None = None, preset: str = ABSENT,
                        interval: int = ABSENT, threshold: float = ABSENT, granularity: str = ABSENT,
                        start_percent: float = ABSENT, end_percent: float = ABSENT) -> bool | str:
        # interval: -1 (auto) or 1-50, a gap ComfyUI's own range check cannot express
        return check(cls, input_types, preset=preset, interval=interval, threshold=threshold,
                     granularity=granularity, start_percent=start_percent, end_percent=end_percent)


class GateNode(CachingNode):
    """The input check of the two first-block gates (CG-Taylor, FirstBlockCache): the same widgets to judge."""

    @classmethod
    def validate_inputs(cls, input_types: dict[str, Any] | None = None, preset: str = ABSENT,
                        threshold: float = ABSENT, start_percent: float = ABSENT,
                        end_percent: float = ABSENT) -> bool | str:
        return check(cls, input_types, preset=preset, threshold=threshold, start_percent=start_percent,
                     end_percent=end_percent)


class DiTAccelCGTaylor(GateNode):
    TEXT = text("DiTAccelCGTaylor", "DiT Accel CG-Taylor",
                "Confidence-gated Taylor: always run the first block and compare it with its own Taylor forecast; "
                "when the forecast was good, skip the rest and forecast the last block's output too.",
                "The model with CG-Taylor attached.")
    METHOD = records.CG_TAYLOR
    attach = staticmethod(apply_cg_taylor)

    @classmethod
    def custom_inputs(cls) -> list[Any]:
        return [
            profile_input(),
            auto_float("threshold", 2.0, 0.005, "skip when the first block's relative forecast error is below this."),
            auto_int("order", 4, "Taylor order of the last-block forecast."),
            auto_int("first_block_order", 4, "Taylor order of the first-block forecast used as the gate."),
            max_skips_input(),
            *window_inputs(),
        ]


class DiTAccelFirstBlockCache(GateNode):
    TEXT = text("DiTAccelFirstBlockCache", "DiT Accel First Block Cache",
                "First-block cache (the FBCache / TeaCache family): skip the rest of the stack while the first "
                "block's residual barely changed, reusing the rest's cached residual.",
                "The model with the first-block cache attached.")
    METHOD = records.FBCACHE
    attach = staticmethod(apply_first_block_cache)

    @classmethod
    def custom_inputs(cls) -> list[Any]:
        return [
            profile_input(),
            auto_float("threshold", 2.0, 0.005, "skip while the first block's residual changed by less than this "
                                                "(relative L1) since the last full step."),
            max_skips_input(),
            *window_inputs(),
        ]


NODES = [DiTAccelTaylorSeer, DiTAccelCGTaylor, DiTAccelFirstBlockCache]

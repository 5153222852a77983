"""Calibration nodes: DiTAccelCalibrate (measure the model once), DiTAccelLoadProfile (pick a saved measurement)."""

from __future__ import annotations

from typing import Any

import comfy.samplers
import folder_paths
from comfy_api.latest import io

from ..accel_core.calibration import run, store
from .base import KitNode, NodeText, with_text
from .inputs import ABSENT, FAMILIES, given, schema_error

CATEGORY = "DiTAccel/calibration"
PROFILE = io.Custom("DITACCEL_PROFILE")
# samplers that call the model once per step: the profile's curves are per step
ONE_CALL_SAMPLERS = ("euler", "euler_ancestral", "ddim", "ddpm", "lms", "dpmpp_2m", "deis", "ipndm", "ipndm_v",
                     "uni_pc", "uni_pc_bh2", "res_multistep", "lcm", "euler_cfg_pp", "dpmpp_2m_cfg_pp",
                     "res_multistep_cfg_pp")


def profiles_folder():
    return store.folder(folder_paths.get_user_directory())


class DiTAccelCalibrate(KitNode):
    TEXT = NodeText("DiTAccelCalibrate", "DiT Accel Calibrate", CATEGORY,
                    "Samples once at full compute, as KSampler, and measures per step and per cond / uncond "
                    "entry how the model's features move: the relative change of the output, of the block "
                    "stack's output and of the first block's residual, and the error of Taylor forecasts of "
                    "orders 0-2 over gaps of 1-16 steps. Saves the profile in ComfyUI's user folder "
                    "(user/ditaccel/profiles/), keyed by the model's fingerprint, steps, sampler and size.")
    IS_OUTPUT_NODE = True

    @classmethod
    def schema_inputs(cls) -> list[Any]:
        return [
            io.Model.Input("model", tooltip=f"The diffusion model as you sample it, LoRAs applied ({FAMILIES}); "
                                            "no DiTAccel acceleration node before this one."),
            io.Conditioning.Input("positive", tooltip="The prompt, as KSampler's."),
            io.Conditioning.Input("negative", tooltip="The negative prompt, as KSampler's."),
            io.Latent.Input("latent_image", tooltip="The empty latent: its size is part of the profile's key."),
            io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                         tooltip="The noise seed, as KSampler's."),
            io.Int.Input("steps", default=28, min=2, max=200, tooltip="Steps; the profile serves this count."),
            io.Float.Input("cfg", default=5.0, min=0.0, max=100.0, step=0.1, tooltip="CFG, as KSampler's."),
            io.Combo.Input("sampler_name", options=list(comfy.samplers.KSampler.SAMPLERS), default="euler",
                           tooltip="One model call per step: " + ", ".join(ONE_CALL_SAMPLERS) + "."),
            io.Combo.Input("scheduler", options=list(comfy.samplers.KSampler.SCHEDULERS), default="simple",
                           tooltip="The scheduler, as KSampler's."),
            io.Boolean.Input("save", default=True, tooltip="Save the profile (off: only this graph uses it)."),
        ]

    @classmethod
    def schema_outputs(cls) -> list[Any]:
        return [
            io.Latent.Output("LATENT", tooltip="The full-compute sample (decode it as KSampler's)."),
            PROFILE.Output("profile", display_name="profile", tooltip="The measured profile."),
            io.Image.Output("plot", display_name="plot",
                            tooltip="The relative changes and the forecast errors per step (log scale)."),
        ]

    @classmethod
    def validate_inputs(cls, input_types: dict[str, Any] | None = None, cfg: float = ABSENT,
                        sampler_name: str = ABSENT, scheduler: str = ABSENT) -> bool | str:
        if error := schema_error(cls, input_types, cfg=cfg, sampler_name=sampler_name, scheduler=scheduler):
            return error
        sampler = given(sampler_name)
        if sampler is not None and sampler not in ONE_CALL_SAMPLERS:
            return (f"sampler_name: calibration measures one model call per step; {sampler} calls the model more "
                    f"often. Use one of {', '.join(ONE_CALL_SAMPLERS)}")
        return True

    @classmethod
    def execute(cls, model, positive, negative, latent_image, seed: int, steps: int, cfg: float, sampler_name: str,
                scheduler: str, save: bool = True) -> io.NodeOutput:
        return with_text(*run.calibrate(model, positive, negative, latent_image, seed, steps, cfg, sampler_name,
                                        scheduler, profiles_folder() if save else None))


class DiTAccelLoadProfile(KitNode):
    TEXT = NodeText("DiTAccelLoadProfile", "DiT Accel Load Profile", CATEGORY,
                    "A profile DiT Accel Calibrate saved (user/ditaccel/profiles/), so a graph uses the "
                    "measurement without calibrating again.")
    IS_OUTPUT_NODE = True

    @classmethod
    def schema_inputs(cls) -> list[Any]:
        return [io.Combo.Input("profile_name", options=store.names(profiles_folder()) or ["(none saved yet)"],
                               tooltip="Saved profiles, newest first, named family-fingerprint-steps-sampler-"
                                       "scheduler-size (the fingerprint samples the weights, LoRAs included).")]

    @classmethod
    def schema_outputs(cls) -> list[Any]:
        return [PROFILE.Output("profile", display_name="profile", tooltip="The profile read from its file.")]

    @classmethod
    def validate_inputs(cls, input_types: dict[str, Any] | None = None, profile_name: str = ABSENT) -> bool | str:
        # judged against the folder now, not the list the UI last read: a profile saved since is valid too
        name = given(profile_name)
        if name is None:  # left out, linked, or a JSON null (refused)
            return schema_error(cls, input_types, profile_name=profile_name) or True
        saved = store.names(profiles_folder())
        if name not in saved:
            return (f"profile_name: no saved profile {name!r} in {profiles_folder()} (saved: "
                    f"{', '.join(saved[:5]) or 'none; run DiT Accel Calibrate first'})")
        return True

    @classmethod
    def execute(cls, profile_name: str) -> io.NodeOutput:
        return with_text(*run.load(profiles_folder(), profile_name))


NODES = [DiTAccelCalibrate, DiTAccelLoadProfile]

"""Perturbation guidance nodes: DiTAccelSoftPAG."""

from __future__ import annotations

from typing import Any

import comfy.samplers
from comfy_api.latest import io

from ..accel_core.guidance import head_search, scene_detector
from ..accel_core.guidance.apply import apply_softpag
from ..accel_core.guidance.head_spec import HeadSpecError, parse
from ..accel_core.guidance.softpag import AUTO, SoftPAGConfig
from .base import KitNode, NodeText, with_text
from .inputs import ABSENT, given, model_input, schema_error, window_error, window_inputs

CATEGORY = "DiTAccel/guidance"
HEADS_TIP = ("Which attention heads to perturb: entries separated by ';', each [kind:]block:heads, 0-based; "
             "heads 'all' or a list like 0,1. Wan: '3:all; 5:0,1'. Flux: 'double:3:all; single:10:2,5'. "
             "auto: the loaded model's record (searched heads where there are any, else the layers layer-level "
             "guidance uses); the report names them and their source.")


class DiTAccelSoftPAG(KitNode):
    TEXT = NodeText("DiTAccelSoftPAG", "DiT Accel SoftPAG", CATEGORY,
                    "Perturbation guidance on chosen attention heads: an extra pass where each chosen "
                    "head's attention map moves toward identity by `strength`, and the output is pushed "
                    "away from it by `scale`. Works with CFG on or off and with the caching nodes.")

    @classmethod
    def schema_inputs(cls) -> list[Any]:
        return [
            model_input(),
            io.String.Input("heads", default=AUTO, multiline=False, tooltip=HEADS_TIP),
            io.Float.Input("strength", default=0.5, min=0.0, max=1.0, step=0.01,
                           tooltip="u: attention map (1 - u) A + u I on the chosen heads; 0 turns guidance off."),
            io.Float.Input("scale", default=3.0, min=0.0, max=100.0, step=0.1,
                           tooltip="w: denoised + w (cond - perturbed cond)."),
            *window_inputs("Guidance starts", "Guidance ends"),
        ]

    @classmethod
    def schema_outputs(cls) -> list[Any]:
        return [io.Model.Output(tooltip="The model with SoftPAG guidance attached.")]

    @classmethod
    def validate_inputs(cls, heads: str = ABSENT, strength: float = ABSENT, scale: float = ABSENT,
                        start_percent: float = ABSENT, end_percent: float = ABSENT) -> bool | str:
        if error := schema_error(cls, heads=heads, strength=strength, scale=scale, start_percent=start_percent,
                                 end_percent=end_percent):
            return error
        if given(heads) is not None and heads.strip() != AUTO:
            try:
                parse(heads)
            except HeadSpecError as e:
                return str(e)
        return window_error(start_percent, end_percent) or True

    @classmethod
    def execute(cls, model, heads: str, strength: float, scale: float, **window: float) -> io.NodeOutput:
        return io.NodeOutput(apply_softpag(model, SoftPAGConfig(heads, strength, scale, **window)))


class DiTAccelHeadHunter(KitNode):
    TEXT = NodeText("DiTAccelHeadHunter", "DiT Accel HeadHunter", CATEGORY,
                    "Offline search for the attention heads SoftPAG should perturb (HeadHunter): each "
                    "round samples every remaining candidate head together with the heads chosen so far, "
                    "for every seed, scores the images and keeps the best `top_k`. Costs rounds x "
                    "candidates x seeds sampling runs; feed the `heads` output to DiT Accel SoftPAG.")
    IS_OUTPUT_NODE = True

    @classmethod
    def schema_inputs(cls) -> list[Any]:
        return [
            model_input(),
            io.Conditioning.Input("positive", tooltip="The prompt the search's samples are drawn with."),
            io.Conditioning.Input("negative", tooltip="The negative prompt (used when cfg is above 1)."),
            io.Latent.Input("latent", tooltip="The empty latent to sample (its size and batch)."),
            io.Vae.Input("vae", tooltip="Decodes the samples for the objective."),
            io.String.Input("seeds", default="1,2,3", tooltip="Seeds of the search's samples, separated by ','."),
            io.String.Input("layers", default="all",
                            tooltip="Candidate blocks, in the heads grammar with 'all' heads (e.g. '1:all; 3:all'),"
                                    " or 'all' for every block."),
            io.Int.Input("rounds", default=2, min=1, max=20, tooltip="Search rounds."),
            io.Int.Input("top_k", default=2, min=1, max=64, tooltip="Heads kept per round."),
            io.Combo.Input("objective", options=list(head_search.OBJECTIVES), default="structure",
                           tooltip="structure / sharpness / contrast / colourfulness: image statistics any model's "
                                   "images have (structure: share of pixels on an edge); adherence: how clearly "
                                   "the embedded model's detector finds the caption's first '<colour> <shape>' "
                                   "(embedded model only); reference: SSIM to the reference image."),
            io.String.Input("caption", default="", optional=True,
                            tooltip="For objective adherence: the caption the positive conditioning encodes."),
            io.Image.Input("reference", optional=True, tooltip="For objective reference."),
            io.Int.Input("steps", default=28, min=1, max=200, optional=True,
                         tooltip="Sampler steps of each search sample, as in KSampler."),
            io.Float.Input("cfg", default=0.0, min=0.0, max=30.0, step=0.1, optional=True,
                           tooltip="CFG scale of each search sample, as in KSampler; 0 (auto): 1 on guidance-"
                                   "distilled models (Flux.1, HunyuanVideo), 5 on the others."),
            io.Combo.Input("sampler_name", options=list(comfy.samplers.KSampler.SAMPLERS), default="euler",
                           optional=True, tooltip="Sampler of each search sample, as in KSampler."),
            io.Combo.Input("scheduler", options=list(comfy.samplers.KSampler.SCHEDULERS), default="simple",
                           optional=True, tooltip="Scheduler of each search sample, as in KSampler."),
            io.Float.Input("strength", default=1.0, min=0.0, max=1.0, step=0.01, optional=True,
                           tooltip="SoftPAG u during the search (the paper searches at 1)."),
            io.Float.Input("scale", default=3.0, min=0.0, max=100.0, step=0.1, optional=True,
                           tooltip="SoftPAG w during the search."),
        ]

    @classmethod
    def schema_outputs(cls) -> list[Any]:
        return [
            io.String.Output("heads", display_name="heads", tooltip="The chosen heads, in SoftPAG's grammar."),
            io.Image.Output("plot", display_name="plot", tooltip="The objective per round."),
        ]

    @classmethod
    def validate_inputs(cls, input_types: dict[str, Any] | None = None, seeds: str = ABSENT, layers: str = ABSENT,
                        objective: str = ABSENT, caption: str = ABSENT, cfg: float = ABSENT,
                        sampler_name: str = ABSENT, scheduler: str = ABSENT, strength: float = ABSENT,
                        scale: float = ABSENT) -> bool | str:
        if error := schema_error(cls, input_types, seeds=seeds, layers=layers, objective=objective, caption=caption,
                                 cfg=cfg, sampler_name=sampler_name, scheduler=scheduler, strength=strength,
                                 scale=scale):
            return error
        seeds, layers, objective, caption = given(seeds), given(layers), given(objective), given(caption)
        try:
            if seeds is not None:
                head_search.parse_seeds(seeds)
            if layers is not None and layers.strip() != "all":
                parse(layers)
            if objective == "adherence" and caption is not None:
                scene_detector.primary_object(caption)
        except ValueError as e:
            return str(e).replace("heads:", "layers:", 1)
        return True

    @classmethod
    def execute(cls, model, positive, negative, latent, vae, seeds: str, layers: str, rounds: int, top_k: int,
                objective: str, caption: str = "", reference=None, steps: int = 28, cfg: float = 0.0,
                sampler_name: str = "euler", scheduler: str = "simple", strength: float = 1.0,
                scale: float = 3.0) -> io.NodeOutput:
        return with_text(*head_search.run_node(model, positive, negative, latent, vae, seeds, layers, rounds, top_k,
                                               objective, caption, reference, steps, cfg, sampler_name, scheduler,
                                               strength, scale))


NODES = [DiTAccelSoftPAG, DiTAccelHeadHunter]

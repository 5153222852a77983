"""DiTAccelRecord and DiTAccelReport: what ran at each step, as text and as a plot."""

from __future__ import annotations

from typing import Any

from comfy_api.latest import io, ui

from ..accel_core.comfy_patch import attach
from ..accel_core.report_node import last_run
from .base import KitNode, NodeText
from .inputs import FAMILIES

CATEGORY = "DiTAccel"


class DiTAccelRecord(KitNode):
    TEXT = NodeText("DiTAccelRecord", "DiT Accel Record", CATEGORY,
                    "Records every sampling step of this model for DiTAccelReport without changing "
                    "what it computes. Every DiTAccel acceleration node records already; use this one "
                    "on a baseline graph to compare against.")

    @classmethod
    def schema_inputs(cls) -> list[Any]:
        return [io.Model.Input("model", tooltip=f"The diffusion model to record ({FAMILIES}).")]

    @classmethod
    def schema_outputs(cls) -> list[Any]:
        return [io.Model.Output(tooltip="The same model, recording its sampling runs.")]

    @classmethod
    def execute(cls, model) -> io.NodeOutput:
        return io.NodeOutput(attach(model, None, name="DiTAccelRecord")[0])


class DiTAccelReport(KitNode):
    TEXT = NodeText("DiTAccelReport", "DiT Accel Report", CATEGORY,
                    "Per step of the model's last sampling run: sigma, what ran, what was skipped, "
                    "estimated transformer FLOPs and wall time. Connect the model the sampler used "
                    "and the sampler's output latent (so this runs after it).")
    IS_OUTPUT_NODE = True

    @classmethod
    def schema_inputs(cls) -> list[Any]:
        return [
            io.Model.Input("model", tooltip="The model that went into the sampler, after the DiTAccel nodes."),
            io.Latent.Input("latent", tooltip="The sampler's output; only used so the report runs after sampling."),
        ]

    @classmethod
    def schema_outputs(cls) -> list[Any]:
        return [
            io.String.Output("summary", display_name="summary",
                             tooltip="Table of the last run: one line per step."),
            io.Image.Output("plot", display_name="plot", tooltip="FLOPs run per step (bars) and wall time (line)."),
        ]

    @classmethod
    def execute(cls, model, latent) -> io.NodeOutput:
        summary, plot = last_run(model)
        # the plot as a preview on the node (a temp file, as PreviewImage); the text through web/js/report.js
        return io.NodeOutput(summary, plot, ui={"text": [summary], **ui.PreviewImage(plot, cls=cls).as_dict()})


NODES = [DiTAccelRecord, DiTAccelReport]

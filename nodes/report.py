"""DiTAccelRecord and DiTAccelReport: what ran at each step, as text and as a plot."""

from __future__ import annotations

import torch
from comfy_api.latest import io, ui

from ..accel_core.comfy_patch import attach, report_holder
from ..accel_core.report import render_plot
from .inputs import FAMILIES
from .schema import node_schema

CATEGORY = "DiTAccel"


class DiTAccelRecord(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            node_id="DiTAccelRecord",
            display_name="DiT Accel Record",
            category=CATEGORY,
            description="Records every sampling step of this model for DiTAccelReport without changing "
                        "what it computes. Every DiTAccel acceleration node records already; use this one "
                        "on a baseline graph to compare against.",
            inputs=[io.Model.Input("model", tooltip=f"The diffusion model to record ({FAMILIES}).")],
            outputs=[io.Model.Output(tooltip="The same model, recording its sampling runs.")],
        )

    @classmethod
    def execute(cls, model) -> io.NodeOutput:
        patched, _ = attach(model, None, name="DiTAccelRecord")
        return io.NodeOutput(patched)


class DiTAccelReport(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            node_id="DiTAccelReport",
            display_name="DiT Accel Report",
            category=CATEGORY,
            description="Per step of the model's last sampling run: sigma, what ran, what was skipped, "
                        "estimated transformer FLOPs and wall time. Connect the model the sampler used "
                        "and the sampler's output latent (so this runs after it).",
            inputs=[
                io.Model.Input("model", tooltip="The model that went into the sampler, after the DiTAccel nodes."),
                io.Latent.Input("latent", tooltip="The sampler's output; only used so the report runs after sampling."),
            ],
            outputs=[
                io.String.Output("summary", display_name="summary",
                                 tooltip="Table of the last run: one line per step."),
                io.Image.Output("plot", display_name="plot", tooltip="FLOPs run per step (bars) and wall time (line)."),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, model, latent) -> io.NodeOutput:
        holder = report_holder(model)
        record = holder.latest if holder is not None else None
        if record is None:
            summary = ("No DiTAccel record on this model: nothing was recorded. Put a DiTAccel node "
                       "(or DiTAccelRecord) between the model loader and the sampler, and connect the "
                       "model that went into the sampler here.")
        else:
            summary = record.summary()
        plot = torch.from_numpy(render_plot(record)).unsqueeze(0)
        # the plot as a preview on the node (a temp file, as PreviewImage); the text through web/js/report.js
        preview = ui.PreviewImage(plot, cls=cls).as_dict()
        return io.NodeOutput(summary, plot, ui={"text": [summary], **preview})


NODES = [DiTAccelRecord, DiTAccelReport]

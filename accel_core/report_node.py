"""What DiTAccelReport shows: the last sampling run recorded on a model, as a table and a plot."""

from __future__ import annotations

from typing import Any

import torch

from .comfy_patch import report_holder
from .report import render_plot

NOTHING_RECORDED = ("No DiTAccel record on this model: nothing was recorded. Put a DiTAccel node (or DiTAccelRecord) "
                    "between the model loader and the sampler, and connect the model that went into the sampler here.")


def last_run(model: Any) -> tuple[str, torch.Tensor]:
    """(summary, plot image batch) of the model's latest recorded run."""
    holder = report_holder(model)
    record = holder.latest if holder is not None else None
    summary = NOTHING_RECORDED if record is None else record.summary()
    return summary, torch.from_numpy(render_plot(record)).unsqueeze(0)

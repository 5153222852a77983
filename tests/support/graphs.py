"""Small edits of the baseline API graph used by the integration tests."""

from __future__ import annotations

from typing import Any

SAMPLER = "6"
LOADER = "1"


def insert_model_node(prompt: dict, node_id: str, class_type: str, **inputs: Any) -> dict:
    """Put a MODEL -> MODEL node between the sampler and whatever fed its model input."""
    prompt[node_id] = {"class_type": class_type, "inputs": {"model": prompt[SAMPLER]["inputs"]["model"], **inputs}}
    prompt[SAMPLER]["inputs"]["model"] = [node_id, 0]
    return prompt


def add_report(prompt: dict, node_id: str = "50", model_from: str | None = None) -> dict:
    model = [model_from, 0] if model_from else prompt[SAMPLER]["inputs"]["model"]
    prompt[node_id] = {"class_type": "DiTAccelReport", "inputs": {"model": model, "latent": [SAMPLER, 0]}}
    return prompt


def report_plots(client: Any, result: Any, node_id: str = "50") -> list[tuple[int, ...]]:
    """Shapes of the plots the report node previews on itself (temp files, not saved images)."""
    from tools.runtime.comfy_client import decode_png

    images = result.node_output(node_id).get("images", [])
    assert all(img["type"] == "temp" for img in images), images
    return [decode_png(client.view(img)).shape for img in images]


def set_steps(prompt: dict, steps: int) -> dict:
    prompt[SAMPLER]["inputs"]["steps"] = steps
    return prompt

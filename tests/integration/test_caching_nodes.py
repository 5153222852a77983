"""The caching nodes on a real ComfyUI server (--cache-none)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from graphs import add_report, insert_model_node, report_plots, set_steps

from tools.runtime import dit_runtime
from tools.runtime.comfy_client import ComfyError, PromptRejected, decode_png

NODES = {
    "DiTAccelTaylorSeer": {"preset": "fast"},
    "DiTAccelCGTaylor": {"preset": "custom", "threshold": 2.0, "max_skips": 2},
    "DiTAccelFirstBlockCache": {"preset": "custom", "threshold": 2.0, "max_skips": 2},
}
STEPS = 10


def run_image(client, prompt) -> np.ndarray:
    return decode_png(client.run(prompt).images[0])


@pytest.fixture(scope="module")
def fresh(client):
    """Fresh baseline images by (width, height)."""
    cache = {}

    def get(baseline_prompt, size=(256, 256)):
        if size not in cache:
            prompt = set_steps(baseline_prompt, STEPS)
            prompt["5"]["inputs"]["width"], prompt["5"]["inputs"]["height"] = size
            cache[size] = run_image(client, prompt)
        return cache[size]

    return get


@pytest.mark.parametrize("node", list(NODES))
def test_node_runs_skips_work_and_leaves_nothing_behind(client, baseline_prompt, fresh, node):
    base = fresh(copy.deepcopy(baseline_prompt))
    prompt = add_report(insert_model_node(set_steps(copy.deepcopy(baseline_prompt), STEPS), "40", node,
                                          **NODES[node]))
    result = client.run(prompt)
    image = decode_png(result.images[0])
    assert image.shape == base.shape and np.isfinite(image).all()
    text = result.node_output("50")["text"][0]
    rows = [line.split() for line in text.splitlines() if line[:4].strip().isdigit()]
    assert len(rows) == STEPS and any(r[2] in ("forecast", "gated") for r in rows), text
    # the same graph without the node (what bypassing it submits) is the fresh baseline, bit for bit
    assert np.array_equal(run_image(client, set_steps(copy.deepcopy(baseline_prompt), STEPS)), base)


def test_two_sizes_in_a_row_match_fresh_runs(client, baseline_prompt, fresh):
    for size in ((256, 256), (192, 128), (256, 256)):
        prompt = insert_model_node(set_steps(copy.deepcopy(baseline_prompt), STEPS), "40", "DiTAccelTaylorSeer",
                                   preset="fast")
        prompt["5"]["inputs"]["width"], prompt["5"]["inputs"]["height"] = size
        first = run_image(client, prompt)
        assert first.shape == (size[1], size[0], 3)
        assert np.array_equal(run_image(client, prompt), first)


def test_interrupted_prompt_leaves_the_next_one_unchanged(client, baseline_prompt):
    prompt = insert_model_node(set_steps(copy.deepcopy(baseline_prompt), 28), "40", "DiTAccelTaylorSeer",
                               preset="balanced")
    expected = run_image(client, prompt)

    def stop_mid_sampling(msg):
        if msg.get("type") == "progress" and msg["data"]["value"] == 10:
            client.interrupt()

    with pytest.raises(ComfyError, match="interrupted"):
        client.run(prompt, on_event=stop_mid_sampling)
    assert np.array_equal(run_image(client, prompt), expected)


@pytest.mark.parametrize("name, node", [("taylorseer", "TaylorSeer"), ("cg_taylor", "CGTaylor"),
                                        ("first_block_cache", "FirstBlockCache")])
def test_example_workflow_runs_the_method(client, name, node):
    prompt = json.loads((dit_runtime.REPO / "workflows" / "api" / f"{name}.json").read_text())  # as shipped
    result = client.run(prompt)
    assert [decode_png(b).shape for b in result.images] == [(256, 256, 3)]  # what SaveImage saved
    assert report_plots(client, result) == [(384, 768, 3)]  # the plot, previewed on the report node
    text = result.node_output("50")["text"][0]
    assert f"methods: {node}(" in text
    assert "transformer FLOPs run: 100.0 %" not in text  # the balanced preset skips work at 28 steps


@pytest.mark.parametrize("node, inputs, name", [
    ("DiTAccelTaylorSeer", {"preset": "custom", "interval": 0}, "interval"),
    ("DiTAccelTaylorSeer", {"preset": "turbo"}, "preset"),
    ("DiTAccelTaylorSeer", {"preset": "custom", "threshold": 11.0}, "threshold"),
    ("DiTAccelCGTaylor", {"preset": "custom", "threshold": -0.5}, "threshold"),  # -1 is auto
    ("DiTAccelFirstBlockCache", {"preset": "custom", "start_percent": 0.8, "end_percent": 0.2}, "start_percent"),
])
def test_invalid_inputs_are_refused_naming_the_input(client, baseline_prompt, node, inputs, name):
    prompt = insert_model_node(baseline_prompt, "40", node, **inputs)
    with pytest.raises(PromptRejected) as err:
        client.submit(prompt)
    assert name in str(err.value)


def test_the_recorder_counts_calls_a_peer_cache_answered_as_reused(client, baseline_prompt):
    prompt = insert_model_node(copy.deepcopy(baseline_prompt), "40", "EasyCache", reuse_threshold=0.2,
                               start_percent=0.15, end_percent=0.95, verbose=False)
    prompt = add_report(insert_model_node(prompt, "41", "DiTAccelRecord"))
    text = client.run(prompt).node_output("50")["text"][0]
    assert "reused" in text and "another node reused an output" in text
    assert "transformer FLOPs run: 100.0 %" not in text
    # LazyCache skips the whole prediction, outside the model call: its steps are counted as reused too
    lazy = insert_model_node(copy.deepcopy(baseline_prompt), "40", "LazyCache", reuse_threshold=0.2,
                             start_percent=0.15, end_percent=0.95, verbose=False)
    text = client.run(add_report(insert_model_node(lazy, "41", "DiTAccelRecord"))).node_output("50")["text"][0]
    assert "the whole step (another node reused an output)" in text and "28/28 steps" in text
    assert "transformer FLOPs run: 100.0 %" not in text
    plain = add_report(insert_model_node(copy.deepcopy(baseline_prompt), "41", "DiTAccelRecord"))
    assert "transformer FLOPs run: 100.0 %" in client.run(plain).node_output("50")["text"][0]

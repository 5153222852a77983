"""DiTAccelSparseAttention on a real ComfyUI server (--cache-none)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from graphs import add_report, insert_model_node, report_plots, set_steps

from tools.runtime import dit_runtime
from tools.runtime.comfy_client import PromptRejected, decode_png

STEPS = 4
CUSTOM = {"preset": "custom", "density": 0.3, "dense_steps": 1, "dense_blocks": 1}


def sized(prompt: dict, width: int, height: int, batch: int = 1) -> dict:
    prompt = set_steps(copy.deepcopy(prompt), STEPS)
    prompt["5"]["inputs"].update(width=width, height=height, batch_size=batch)
    return prompt


@pytest.mark.parametrize("method", ["grat", "pisa", "svg2", "draft", "rettention"])
def test_each_method_runs_sparse_with_batch_two_cfg_and_a_rectangular_size(client, baseline_prompt, method):
    base = sized(baseline_prompt, 512, 640, batch=2)  # 32 x 40 = 1280 image tokens
    prompt = add_report(insert_model_node(copy.deepcopy(base), "40", "DiTAccelSparseAttention", method=method,
                                          **CUSTOM))
    result = client.run(prompt)
    assert len(result.images) == 2
    text = result.node_output("50")["text"][0]
    assert f"sparse ({method}, torch)" in text and "dense (dense step)" in text
    assert "previous (cross-attention)" in text
    image = decode_png(result.images[0])
    plain = decode_png(client.run(base).images[0])
    assert image.shape == plain.shape == (640, 512, 3)
    assert not np.array_equal(image, plain)


def test_bypassed_node_leaves_the_baseline_bit_identical_and_small_images_stay_dense(client, baseline_prompt):
    base = sized(baseline_prompt, 512, 512)
    before = decode_png(client.run(base).images[0])
    client.run(insert_model_node(copy.deepcopy(base), "40", "DiTAccelSparseAttention", method="pisa", **CUSTOM))
    assert np.array_equal(decode_png(client.run(base).images[0]), before)
    # the default 256 px image has 256 tokens: too few to pay, the node says so and changes nothing
    small = set_steps(copy.deepcopy(baseline_prompt), STEPS)
    prompt = add_report(insert_model_node(copy.deepcopy(small), "40", "DiTAccelSparseAttention", method="draft",
                                          preset="balanced"))
    result = client.run(prompt)
    assert "dense (under 1024 image tokens)" in result.node_output("50")["text"][0]
    assert np.array_equal(decode_png(result.images[0]), decode_png(client.run(small).images[0]))


def test_chains_after_softpag_whose_override_still_runs(client, baseline_prompt):
    base = sized(baseline_prompt, 512, 512)
    guided = insert_model_node(copy.deepcopy(base), "40", "DiTAccelSoftPAG", heads="3:all", strength=1.0, scale=3.0)
    only_guided = decode_png(client.run(guided).images[0])
    both = add_report(insert_model_node(copy.deepcopy(guided), "41", "DiTAccelSparseAttention", method="draft",
                                        **{**CUSTOM, "density": 1.0, "estimate_skipped": False}))
    result = client.run(both)
    assert "sparse (draft, torch)" in result.node_output("50")["text"][0]
    # at density 1 sparse attention is exact, so the image is SoftPAG's: its perturbation still ran
    image = decode_png(result.images[0])
    assert np.abs(image.astype(float) - only_guided.astype(float)).mean() < 1.0 / 255


@pytest.mark.parametrize("inputs, needle", [({"method": "dense"}, "method"), ({"density": 0.0}, "density"),
                                            ({"preset": "turbo", "method": "grat"}, "preset"),
                                            ({"method": "grat", "start_percent": 0.8, "end_percent": 0.2},
                                             "start_percent")])
def test_invalid_inputs_are_refused_with_their_name(client, baseline_prompt, inputs, needle):
    prompt = insert_model_node(set_steps(copy.deepcopy(baseline_prompt), STEPS), "40", "DiTAccelSparseAttention",
                               **{"preset": "custom", "method": "grat", **inputs})
    with pytest.raises(PromptRejected) as err:
        client.submit(prompt)
    assert needle in str(err.value)


def test_example_workflow_runs_sparse_attention(client):
    prompt = json.loads((dit_runtime.REPO / "workflows" / "api" / "sparse_attention.json").read_text())
    prompt = set_steps(prompt, 6)  # as shipped but shorter: two sparse steps after the four dense ones
    result = client.run(prompt)
    assert [decode_png(b).shape for b in result.images] == [(1024, 1024, 3)]  # what SaveImage saved
    assert report_plots(client, result) == [(384, 768, 3)]  # the plot, previewed on the report node
    text = result.node_output("50")["text"][0]
    assert "sparse (draft, torch)" in text and "transformer FLOPs run: 100.0 %" not in text

"""DiTAccelRAS and DiTAccelJiT on a real ComfyUI server (--cache-none)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from graphs import LOADER, add_report, insert_model_node, report_plots, set_steps

from tools.runtime import dit_runtime
from tools.runtime.comfy_client import ExecutionFailed, PromptRejected, decode_png

STEPS = 8
NODES = {"DiTAccelRAS": {"preset": "custom", "sample_ratio": 0.3, "warmup_steps": 2, "dense_steps": 1},
         "DiTAccelJiT": {"preset": "custom", "stages": "0.5, 1.0", "densities": "0.4, 1.0", "warmup_steps": 1,
                         "full_context": True}}


def sized(prompt: dict, width: int, height: int, batch: int = 1) -> dict:
    prompt = set_steps(copy.deepcopy(prompt), STEPS)
    prompt["5"]["inputs"].update(width=width, height=height, batch_size=batch)
    return prompt


@pytest.mark.parametrize("node", list(NODES))
def test_runs_on_part_of_the_tokens_with_batch_two_cfg_and_a_rectangular_size(client, baseline_prompt, node):
    base = sized(baseline_prompt, 256, 384, batch=2)  # 24 x 16 = 384 image tokens per sample
    prompt = add_report(insert_model_node(copy.deepcopy(base), "40", node, **NODES[node]))
    result = client.run(prompt)
    assert len(result.images) == 2
    text = result.node_output("50")["text"][0]
    assert "subset" in text and "/384" in text  # the tokens column: computed / all, per step
    plain = [decode_png(i) for i in client.run(base).images]
    images = [decode_png(i) for i in result.images]
    for image, ref in zip(images, plain, strict=True):
        assert image.shape == ref.shape == (384, 256, 3)
        assert not np.array_equal(image, ref)
        assert np.abs(image.astype(float) - ref.astype(float)).mean() < 40  # the same picture, roughly
    assert not np.array_equal(images[0], images[1])


@pytest.mark.parametrize("node", list(NODES))
def test_bypassed_node_leaves_the_baseline_bit_identical(client, baseline_prompt, node):
    base = sized(baseline_prompt, 256, 256)
    before = decode_png(client.run(base).images[0])
    client.run(insert_model_node(copy.deepcopy(base), "40", node, preset="balanced"))
    assert np.array_equal(decode_png(client.run(base).images[0]), before)


@pytest.mark.parametrize("node, inputs, needle", [
    ("DiTAccelRAS", {"sample_ratio": 0.0}, "sample_ratio"),
    ("DiTAccelRAS", {"metric": "max"}, "metric"),
    ("DiTAccelRAS", {"preset": "turbo"}, "preset"),
    ("DiTAccelRAS", {"start_percent": 0.9, "end_percent": 0.1}, "start_percent"),
    ("DiTAccelJiT", {"stages": "0.4, x, 1.0"}, "stages"),
    ("DiTAccelJiT", {"densities": "0.5, 1.0"}, "same number"),
    ("DiTAccelJiT", {"densities": "0.6, 0.3, 1.0"}, "densities"),
    ("DiTAccelJiT", {"interpolate": "nearest"}, "interpolate"),
])
def test_invalid_inputs_are_refused_with_their_name(client, baseline_prompt, node, inputs, needle):
    prompt = insert_model_node(set_steps(copy.deepcopy(baseline_prompt), STEPS), "40", node,
                               **{"preset": "custom", **inputs})
    with pytest.raises(PromptRejected) as err:
        client.submit(prompt)
    assert needle in str(err.value)


@pytest.mark.parametrize("node", list(NODES))
def test_an_unsupported_family_fails_before_sampling_naming_what_is_supported(client, baseline_prompt, node):
    prompt = insert_model_node(set_steps(copy.deepcopy(baseline_prompt), STEPS), "40", node, preset="balanced")
    prompt[LOADER]["inputs"]["unet_name"] = dit_runtime.ensure_sd3_tiny().name
    seen = []
    with pytest.raises(ExecutionFailed) as err:
        client.run(prompt, on_event=seen.append)
    assert err.value.node_type == node and "SD3" in str(err.value) and "Supported: Wan" in str(err.value)
    assert not any(e.get("type") == "progress" for e in seen)


@pytest.mark.parametrize("name, method", [("ras", "RAS"), ("jit", "JiT")])
def test_example_workflows_run_the_method(client, name, method):
    prompt = json.loads((dit_runtime.REPO / "workflows" / "api" / f"{name}.json").read_text())  # as shipped
    result = client.run(prompt)
    assert [decode_png(b).shape for b in result.images] == [(256, 256, 3)]  # what SaveImage saved
    assert report_plots(client, result) == [(384, 768, 3)]  # the plot, previewed on the report node
    text = result.node_output("50")["text"][0]
    assert f"methods: {method}(" in text and "subset" in text

"""Every input of the pack judged by /prompt before anything runs: NaN, infinity and null on every numeric and
combo input, digits of other scripts in the heads grammar, a 100,000-character text, and which input an
error is filed under."""

from __future__ import annotations

import copy
import json
import math

import pytest
from graphs import SAMPLER, insert_model_node

from tools.benchmarks import soak
from tools.runtime.comfy_client import PromptRejected

NODE_ID = "40"
BAD_VALUES = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "null": None}
# the nodes that take a MODEL and give one, with their required widgets (HeadHunter is wired by hand below)
REQUIRED = soak.REQUIRED
MODEL_NODES = tuple(REQUIRED)


def pack_inputs(object_info: dict, kinds: tuple[str, ...]) -> list[tuple[str, str]]:
    """(node, input) for every widget input of the pack's nodes whose type is one of `kinds` (COMBO: a list
    of options or the V3 "COMBO" type)."""
    out = []
    for node, info in sorted(object_info.items()):
        if not node.startswith("DiTAccel"):
            continue
        for section in ("required", "optional"):
            for name, spec in info["input"].get(section, {}).items():
                kind = "COMBO" if isinstance(spec[0], list) else spec[0]
                if kind in kinds:
                    out.append((node, name))
    return out


def graph_with(baseline_prompt: dict, node: str, **inputs) -> dict:
    prompt = copy.deepcopy(baseline_prompt)
    if node in MODEL_NODES:
        return insert_model_node(prompt, NODE_ID, node, **REQUIRED[node] | inputs)
    if node == "DiTAccelHeadHunter":
        prompt[NODE_ID] = {"class_type": node, "inputs": {
            "model": ["1", 0], "positive": ["3", 0], "negative": ["4", 0], "latent": ["5", 0], "vae": ["7", 0],
            "seeds": "1", "layers": "all", "rounds": 1, "top_k": 1, "objective": "contrast", **inputs}}
        return insert_model_node(prompt, "41", "DiTAccelSoftPAG", heads=[NODE_ID, 0], strength=0.5, scale=1.0)
    if node == "DiTAccelCalibrate":  # where the baseline's KSampler samples, with KSampler's inputs
        inputs.pop("preset", None)
        prompt[NODE_ID] = {"class_type": node, "inputs": {
            "model": ["10", 0], "positive": ["3", 0], "negative": ["4", 0], "latent_image": ["5", 0], "seed": 0,
            "steps": 2, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple", "save": False, **inputs}}
        return prompt
    if node == "DiTAccelLoadProfile":
        inputs.pop("preset", None)
        prompt[NODE_ID] = {"class_type": node, "inputs": {"profile_name": "none.json", **inputs}}
        return prompt
    raise AssertionError(f"no graph for {node}")


def rejected(client, prompt: dict) -> tuple[list[dict], str]:
    with pytest.raises(PromptRejected) as err:
        client.submit(prompt)
    body = json.dumps(err.value.body)
    assert "Traceback" not in body and len(body) < 8000, body[:2000]
    return err.value.node_errors[NODE_ID]["errors"], body


def test_the_graphs_here_are_valid(client, baseline_prompt):
    """The control: without a bad value each graph below validates and runs (so a rejection is the value's)."""
    for node in (*MODEL_NODES, "DiTAccelHeadHunter"):
        small = {"steps": 1, "layers": "1:0"} if node == "DiTAccelHeadHunter" else {}
        prompt = graph_with(baseline_prompt, node, **small)
        prompt[SAMPLER]["inputs"]["steps"] = 2
        assert client.run(prompt).images


@pytest.mark.parametrize("bad", list(BAD_VALUES))
def test_nan_inf_and_null_are_refused_on_every_numeric_input(client, baseline_prompt, object_info, bad):
    cases = pack_inputs(object_info, ("INT", "FLOAT"))
    assert len(cases) >= 30
    for node, name in cases:
        errors, _ = rejected(client, graph_with(baseline_prompt, node, preset="custom", **{name: BAD_VALUES[bad]}))
        # ComfyUI's own conversion (INT) or the node's check (FLOAT): either way the error names the input
        assert any(e["extra_info"].get("input_name") == name for e in errors), (node, name, errors)
        assert all(name in (e["details"] or "") for e in errors), (node, name, errors)


def test_null_and_unknown_choices_are_refused_on_every_combo_input(client, baseline_prompt, object_info):
    cases = pack_inputs(object_info, ("COMBO",))
    assert len(cases) >= 10
    for node, name in cases:
        for value in (None, "nonsense"):
            inputs = {name: value} if name == "preset" else {"preset": "custom", name: value}
            errors, _ = rejected(client, graph_with(baseline_prompt, node, **inputs))
            assert all(f" - {name}" in e["details"] for e in errors), (node, name, value, errors)


@pytest.mark.parametrize("heads", ["0:\u00b2", "\u0661:all", "1:\u0660,1", "\uff11:all"])
def test_heads_take_ascii_digits_only(client, baseline_prompt, heads):
    errors, _ = rejected(client, graph_with(baseline_prompt, "DiTAccelSoftPAG", heads=heads))
    assert {e["type"] for e in errors} == {"custom_validation_failed"}
    for e in errors:
        assert "ASCII digits" in e["details"] and e["details"].split(" - ", 1)[1].startswith("heads: ")
    # filed under the inputs the check reads, never under the model
    assert "model" not in {e["extra_info"]["input_name"] for e in errors}


def test_a_100k_character_text_is_refused_in_one_short_line(client, baseline_prompt):
    for node, name in (("DiTAccelSoftPAG", "heads"), ("DiTAccelJiT", "stages"), ("DiTAccelHeadHunter", "seeds")):
        errors, body = rejected(client, graph_with(baseline_prompt, node, preset="custom", **{name: "1" * 100_000}))
        message = errors[0]["details"].split(" - ", 1)[1]
        assert message.startswith(f"{name} is too long: 100000 characters"), message
        assert len(body) < 8000


def test_a_bad_entry_is_quoted_at_most_80_characters(client, baseline_prompt):
    heads = "1:" + "x" * 3000
    errors, _ = rejected(client, graph_with(baseline_prompt, "DiTAccelSoftPAG", heads=heads))
    message = errors[0]["details"].split(" - ", 1)[1]
    assert message.startswith("heads: ") and len(message) < 300 and "(3002 characters)" in message, message


def test_links_of_the_wrong_type_are_still_refused(client, baseline_prompt):
    """Nodes that take ComfyUI's `input_types` check their links' types themselves (ComfyUI then does not)."""
    prompt = graph_with(baseline_prompt, "DiTAccelTaylorSeer")
    prompt[NODE_ID]["inputs"]["model"] = ["2", 0]  # the CLIP loader's output
    errors, _ = rejected(client, prompt)
    assert any("model: the linked output gives CLIP, this input takes MODEL" in e["details"] for e in errors), errors

"""DiTAccelSoftPAG on a real ComfyUI server (--cache-none)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from graphs import SAMPLER, add_report, insert_model_node, set_steps

from tools.runtime import dit_runtime
from tools.runtime.comfy_client import ExecutionFailed, PromptRejected, decode_png

STEPS = 8


def image(client, prompt) -> np.ndarray:
    return decode_png(client.run(prompt).images[0])


@pytest.mark.parametrize("cfg", [1.0, 5.0])
def test_guidance_with_cfg_on_and_off_batch_two_and_stacked_with_taylorseer(client, baseline_prompt, cfg):
    base = set_steps(copy.deepcopy(baseline_prompt), STEPS)
    base[SAMPLER]["inputs"]["cfg"] = cfg
    base["5"]["inputs"]["batch_size"] = 2
    plain = client.run(base)
    guided = add_report(insert_model_node(copy.deepcopy(base), "40", "DiTAccelSoftPAG", heads="1:all; 3:0",
                                          strength=1.0, scale=3.0))
    result = client.run(guided)
    assert len(result.images) == len(plain.images) == 2
    assert not np.array_equal(decode_png(result.images[0]), decode_png(plain.images[0]))
    text = result.node_output("50")["text"][0]
    assert f"{2 * STEPS} model calls" in text  # one perturbed pass per step
    stacked = insert_model_node(copy.deepcopy(guided), "41", "DiTAccelTaylorSeer", preset="custom", interval=2,
                                warmup_steps=2)
    stacked["50"]["inputs"]["model"] = ["41", 0]
    text = client.run(stacked).node_output("50")["text"][0]
    assert "forecast" in text and "SoftPAG" in text and "TaylorSeer" in text


def test_strength_zero_is_the_unguided_image(client, baseline_prompt):
    base = set_steps(copy.deepcopy(baseline_prompt), STEPS)
    off = insert_model_node(copy.deepcopy(base), "40", "DiTAccelSoftPAG", heads="2:all", strength=0.0, scale=3.0)
    assert np.array_equal(image(client, off), image(client, base))


@pytest.mark.parametrize("heads, token", [("2:x", "'x'"), ("1:2:3:4", "'1:2:3:4'"), ("1:0,,1", "'0,,1'")])
def test_invalid_head_specs_are_refused_by_validation(client, baseline_prompt, heads, token):
    prompt = insert_model_node(set_steps(copy.deepcopy(baseline_prompt), STEPS), "40", "DiTAccelSoftPAG", heads=heads,
                               strength=0.5, scale=3.0)
    with pytest.raises(PromptRejected) as err:
        client.submit(prompt)
    assert token in str(err.value) and "heads" in str(err.value)


@pytest.mark.parametrize("heads, message", [("9:all", "blocks 0-5"), ("1:5", "heads 0-1"),
                                            ("double:1:all", "without 'double:'")])
def test_heads_the_model_lacks_fail_before_sampling(client, baseline_prompt, heads, message):
    prompt = insert_model_node(set_steps(copy.deepcopy(baseline_prompt), STEPS), "40", "DiTAccelSoftPAG", heads=heads,
                               strength=0.5, scale=3.0)
    seen = []
    with pytest.raises(ExecutionFailed) as err:
        client.run(prompt, on_event=seen.append)
    assert err.value.node_type == "DiTAccelSoftPAG" and message in str(err.value)
    assert not any(e.get("type") == "progress" for e in seen)  # the sampler never started


def headhunter_graph(baseline_prompt, objective: str, caption: str = "") -> dict:
    prompt = set_steps(copy.deepcopy(baseline_prompt), 6)
    prompt["60"] = {"class_type": "DiTAccelHeadHunter", "inputs": {
        "model": prompt[SAMPLER]["inputs"]["model"], "positive": ["3", 0], "negative": ["4", 0], "latent": ["5", 0],
        "vae": ["7", 0], "seeds": "1", "layers": "1:all; 4:all", "rounds": 2, "top_k": 1, "objective": objective,
        "caption": caption, "steps": 6, "cfg": 5.0, "sampler_name": "euler", "scheduler": "simple",
        "strength": 1.0, "scale": 3.0}}
    # the search's heads feed SoftPAG on the sampler's model, as a user would wire it
    prompt = insert_model_node(prompt, "40", "DiTAccelSoftPAG", heads=["60", 0], strength=0.5, scale=3.0)
    prompt["61"] = {"class_type": "PreviewImage", "inputs": {"images": ["60", 1]}}
    return prompt


def test_headhunter_searches_and_feeds_softpag(client, baseline_prompt):
    caption = baseline_prompt["3"]["inputs"]["text"]
    result = client.run(headhunter_graph(baseline_prompt, "adherence", caption))
    text = result.node_output("60")["text"][0]
    assert "8 scored head sets" in text  # CFG only, then 4 candidates, then the 3 left
    chosen = text.splitlines()[0].split("chosen heads: ")[1]
    assert len([e for e in chosen.split(";") if e.strip()]) in (1, 2)  # two heads, maybe of one block
    assert sorted(decode_png(b).shape for b in result.images)[0][2] == 3  # the saved image and the plot


def test_headhunter_refuses_a_caption_outside_the_grammar(client, baseline_prompt):
    with pytest.raises(PromptRejected) as err:
        client.submit(headhunter_graph(baseline_prompt, "adherence", "a photo of a cat"))
    assert "caption" in str(err.value) and "names no '<colour> <shape>'" in str(err.value)


def test_softpag_example_workflow_guides_with_the_searched_heads(client, baseline_prompt):
    prompt = json.loads((dit_runtime.REPO / "workflows" / "api" / "softpag.json").read_text())  # as shipped
    result = client.run(prompt)
    text = result.node_output("50")["text"][0]
    assert "SoftPAG(heads='0:0; 5:1'" in text and "56 model calls" in text  # 28 steps, one perturbed pass each
    guided = sorted((decode_png(b) for b in result.images), key=lambda a: a.shape)[0]
    assert guided.shape == (256, 256, 3)
    assert not np.array_equal(guided, image(client, baseline_prompt))


def test_headhunter_example_workflow_feeds_its_heads_to_softpag(client):
    prompt = json.loads((dit_runtime.REPO / "workflows" / "api" / "headhunter.json").read_text())
    prompt = set_steps(prompt, 3)
    prompt["60"]["inputs"]["steps"] = 3  # as shipped but short: 13 head sets x 2 seeds
    result = client.run(prompt)
    text = result.node_output("60")["text"][0]
    assert "13 scored head sets" in text
    chosen = text.splitlines()[0].split("chosen heads: ")[1]
    assert 1 <= len([e for e in chosen.split(";") if e.strip()]) <= 2  # two heads, maybe of one block

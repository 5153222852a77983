"""DiTAccelCalibrate and DiTAccelLoadProfile on a real server: measure, save, load; nothing leaks or half-written."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from graphs import SAMPLER, add_report, insert_model_node, set_steps

from tools.runtime import dit_runtime
from tools.runtime.comfy_client import ComfyError, PromptRejected, decode_png

PROFILES = dit_runtime.COMFY_HOME / "user" / "ditaccel" / "profiles"
CALIBRATE = "6"  # the calibrate graph samples with DiTAccelCalibrate where the baseline has its KSampler


@pytest.fixture
def calibrate_prompt() -> dict:
    return copy.deepcopy(json.loads((dit_runtime.REPO / "workflows" / "api" / "calibrate.json").read_text()))


def saved_profiles() -> set[str]:
    return {p.name for p in PROFILES.glob("*.json")} if PROFILES.is_dir() else set()


def test_calibrate_saves_a_profile_that_load_profile_reads_in_a_later_prompt(client, calibrate_prompt):
    prompt = copy.deepcopy(calibrate_prompt)
    prompt[CALIBRATE]["inputs"]["steps"] = 10
    result = client.run(prompt)
    text = result.node_output(CALIBRATE)["text"][0]
    name = text.split()[1].rstrip(":")
    assert name.startswith("wan-") and name.endswith("-10steps-euler-simple-1024pos.json"), text
    assert name in saved_profiles()
    assert decode_png(result.images[0]).shape == (256, 256, 3)  # the full-compute sample, decoded
    data = json.loads((PROFILES / name).read_text())
    assert data["format"] == "ditaccel-profile" and set(data["entries"]) == {"cond", "uncond", "guided"}
    assert len(data["entries"]["cond"]["output_change"]) == 10
    # a second prompt picks it from the list (the combo is the folder's content)
    info = client.object_info()["DiTAccelLoadProfile"]  # read again: the list changed
    spec = info["input"]["required"]["profile_name"]
    options = spec[0] if isinstance(spec[0], list) else spec[1]["options"]
    assert name in options
    loaded = client.run({"1": {"class_type": "DiTAccelLoadProfile", "inputs": {"profile_name": name}}})
    assert loaded.node_output("1")["text"][0].startswith(f"profile {name}: wan (")


def test_a_missing_profile_is_refused_before_anything_runs(client):
    with pytest.raises(PromptRejected) as err:
        client.submit({"1": {"class_type": "DiTAccelLoadProfile", "inputs": {"profile_name": "nothing-here.json"}}})
    assert "profile_name: no saved profile 'nothing-here.json'" in str(err.value)


def test_a_sampler_with_several_calls_per_step_is_refused_before_sampling(client, calibrate_prompt):
    calibrate_prompt[CALIBRATE]["inputs"]["sampler_name"] = "heun"
    with pytest.raises(PromptRejected) as err:
        client.submit(calibrate_prompt)
    assert "sampler_name: calibration measures one model call per step; heun" in str(err.value)


def test_calibrating_leaves_the_other_outputs_bit_identical(client, baseline_prompt, calibrate_prompt):
    """The baseline's KSampler beside a calibration on the same model gives the image it gives alone."""
    baseline = set_steps(copy.deepcopy(baseline_prompt), 8)
    alone = decode_png(client.run(baseline).images[0])
    both = copy.deepcopy(baseline)
    for key, node in calibrate_prompt.items():
        if node["class_type"] in ("DiTAccelCalibrate", "PreviewImage"):
            both[f"7{key}"] = copy.deepcopy(node)
    both["76"]["inputs"]["steps"] = 8
    both["711"]["inputs"]["images"] = ["76", 2]
    result = client.run(both)
    assert np.array_equal(decode_png(result.images[0]), alone)
    assert both[SAMPLER]["inputs"]["model"] == both["76"]["inputs"]["model"]  # one model feeds both


def test_an_interrupted_calibration_writes_no_profile(client, calibrate_prompt):
    prompt = copy.deepcopy(calibrate_prompt)
    prompt[CALIBRATE]["inputs"]["steps"] = 40
    prompt[CALIBRATE]["inputs"]["seed"] = 12345  # nothing else saves this key
    before = saved_profiles()

    def stop_mid_sampling(msg):
        if msg.get("type") == "progress" and msg["data"]["value"] >= 5:
            client.interrupt()

    with pytest.raises(ComfyError, match="interrupted"):
        client.run(prompt, on_event=stop_mid_sampling)
    assert saved_profiles() == before
    assert not list(PROFILES.glob("*.tmp"))


def test_calibrating_a_model_with_an_acceleration_node_is_refused(client, calibrate_prompt):
    prompt = copy.deepcopy(calibrate_prompt)
    prompt["40"] = {"class_type": "DiTAccelTaylorSeer",
                    "inputs": {"model": prompt[CALIBRATE]["inputs"]["model"], "preset": "balanced"}}
    prompt[CALIBRATE]["inputs"]["model"] = ["40", 0]
    with pytest.raises(ComfyError, match="Connect the model before the acceleration nodes"):
        client.run(prompt)


def test_the_fingerprint_tells_a_lora_apart_loaded_or_not(client, calibrate_prompt):
    """A LoRA changes the key; the same LoRA twice gives the same key, though the second run finds the model
    still loaded with the LoRA written into its weights (the fingerprint reads ComfyUI's backup)."""
    import torch
    from safetensors.torch import save_file

    loras = dit_runtime.COMFY_HOME / "models" / "loras"
    loras.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    name = "blocks.0.self_attn.q"
    save_file({f"diffusion_model.{name}.lora_up.weight": 0.05 * torch.randn(256, 2, generator=g),
               f"diffusion_model.{name}.lora_down.weight": 0.05 * torch.randn(2, 256, generator=g)},
              str(loras / "ditaccel_test_lora.safetensors"))
    plain = copy.deepcopy(calibrate_prompt)
    plain[CALIBRATE]["inputs"].update(steps=3, save=False)
    with_lora = copy.deepcopy(plain)
    with_lora["20"] = {"class_type": "LoraLoaderModelOnly", "inputs": {
        "model": ["1", 0], "lora_name": "ditaccel_test_lora.safetensors", "strength_model": 1.0}}
    with_lora["10"]["inputs"]["model"] = ["20", 0]

    def key(prompt):
        return client.run(prompt).node_output(CALIBRATE)["text"][0].split()[1].split("-")[1]

    first, second, base = key(with_lora), key(with_lora), key(plain)
    assert first == second != base


def flops_share(text: str) -> float:
    line = next(x for x in text.splitlines() if x.startswith("transformer FLOPs run:"))
    return float(line.split(":")[1].split("%")[0])


@pytest.mark.parametrize("node", ["DiTAccelTaylorSeer", "DiTAccelFirstBlockCache", "DiTAccelCGTaylor"])
def test_a_saved_profile_plans_the_caching_nodes_and_falls_back_where_it_does_not_fit(client, baseline_prompt,
                                                                                      calibrate_prompt, node):
    """Calibrate at 12 steps and save; a later prompt loads the profile into a caching node: at 12 steps the
    report names the profile, the budget and the predicted error, and the skipped work follows the budget
    (quality runs at least what fast runs); at 16 steps the profile does not fit, the preset's record
    applies and the report says why."""
    prompt = copy.deepcopy(calibrate_prompt)
    prompt[CALIBRATE]["inputs"].update(steps=12, seed=7)
    name = client.run(prompt).node_output(CALIBRATE)["text"][0].split()[1].rstrip(":")

    def run(steps: int, preset: str) -> str:
        graph = set_steps(copy.deepcopy(baseline_prompt), steps)
        graph["30"] = {"class_type": "DiTAccelLoadProfile", "inputs": {"profile_name": name}}
        insert_model_node(graph, "40", node, preset=preset, profile=["30", 0])
        return client.run(add_report(graph)).node_output("50")["text"][0]

    shares = {}
    for preset in ("quality", "fast"):
        text = run(12, preset)
        settings = next(x for x in text.splitlines() if x.startswith("settings: "))
        assert f"profile {name}, {preset} = budget" in settings and "predicted per skipped step" in settings, text
        shares[preset] = flops_share(text)
    assert shares["fast"] <= shares["quality"] and shares["fast"] < 100.0, shares
    text = run(16, "balanced")
    assert f"profile {name} not used: the profile was measured at 12 steps, this run has 16" in text, text
    assert "preset's record applies" in text


def test_a_profile_with_custom_values_is_refused_before_sampling(client, baseline_prompt, calibrate_prompt):
    prompt = copy.deepcopy(calibrate_prompt)
    prompt[CALIBRATE]["inputs"].update(steps=4, save=False)
    graph = copy.deepcopy(baseline_prompt)
    for key, node in prompt.items():
        if node["class_type"] == "DiTAccelCalibrate":
            graph[f"7{key}"] = copy.deepcopy(node)
    insert_model_node(graph, "40", "DiTAccelTaylorSeer", preset="custom", interval=3, profile=["76", 1])
    with pytest.raises(ComfyError, match=r"profile: .*preset 'custom' takes the node's own values"):
        client.run(graph)


def test_the_calibrated_taylorseer_workflow_plans_from_its_own_calibration(client):
    """workflows/api/taylorseer_calibrated.json: Calibrate's profile output feeds TaylorSeer in the same graph,
    so one run measures (then ComfyUI's cache keeps it) and samples with the planned schedule."""
    prompt = json.loads((dit_runtime.REPO / "workflows" / "api" / "taylorseer_calibrated.json").read_text())
    prompt["60"]["inputs"].update(steps=10, save=False)
    prompt[SAMPLER]["inputs"]["steps"] = 10
    result = client.run(prompt)
    text = result.node_output("50")["text"][0]
    assert "settings: DiTAccelTaylorSeer balanced" in text and ", balanced = budget 0.05" in text, text
    assert flops_share(text) < 100.0
    assert decode_png(result.images[0]).shape == (256, 256, 3)


def test_the_saved_profile_workflow_uses_what_the_calibrate_workflow_saved(client, calibrate_prompt):
    """workflows/api/taylorseer_saved_profile.json names the profile workflows/api/calibrate.json saves for the
    embedded model (same weights, 28 steps, euler / simple, 256 px): run in that order, the second plans from it."""
    saved = client.run(calibrate_prompt).node_output(CALIBRATE)["text"][0].split()[1].rstrip(":")
    prompt = json.loads((dit_runtime.REPO / "workflows" / "api" / "taylorseer_saved_profile.json").read_text())
    assert prompt["30"]["inputs"]["profile_name"] == saved
    text = client.run(prompt).node_output("50")["text"][0]
    assert f"profile {saved}, balanced = budget 0.05" in text, text

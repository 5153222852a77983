"""The memory contract on a real ComfyUI server whose device budget is set small (DITACCEL_DEVICE_MEMORY):
a graph that fits only in another form runs and the report names the form; a stacked graph that cannot
fit is refused before the first step, naming the node and a setting that fits; nothing it leaves
changes the next prompt."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from comfyui_ditaccel.accel_core import memory
from comfyui_ditaccel.accel_core.spatial import jit, ras
from graphs import add_report, insert_model_node, set_steps

from tools.runtime import dit_runtime
from tools.runtime.comfy_client import ComfyClient, ExecutionFailed, decode_png

BUDGET = 3 * 10**6  # bytes of device memory the pack's methods may use on the budgeted server
STEPS = 6
# the embedded model: 6 Wan blocks of width 256 (float32 on the CPU); CFG: cond and uncond
EMBEDDED = memory.ModelDims("embedded", (memory.ListDims(6, False, 3, 1),), width=256, heads=2, hidden_itemsize=4,
                            compute_itemsize=4)
RAS = {"preset": "custom", "sample_ratio": 0.3, "warmup_steps": 2, "dense_steps": 1}
JIT = {"preset": "custom", "stages": "0.5, 1.0", "densities": "0.4, 1.0", "warmup_steps": 1, "full_context": True}


def shape(side: int) -> memory.RunShape:
    latent = side // 8
    return memory.RunShape(image_tokens=(latent // 2) ** 2, text_tokens=77, batch=1, streams=2,
                           latent_values=16 * latent * latent)


def activations(side: int) -> int:
    """ComfyUI's CPU estimate of the sampling's activations (BaseModel.memory_required without flash
    attention: 2 x latent cells x 0.15 MiB x memory_usage_factor, Wan's factor width / 2222)."""
    return int(2 * (side // 8) ** 2 * 0.15 * 256 / 2222 * 2**20)


def sized(prompt: dict, side: int) -> dict:
    prompt = set_steps(copy.deepcopy(prompt), STEPS)
    prompt["5"]["inputs"].update(width=side, height=side)
    return prompt


@pytest.fixture(scope="module")
def budgeted() -> ComfyClient:
    log = dit_runtime.COMFY_HOME / "logs" / "budget-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with dit_runtime.running_server(log=log, env={memory.DEVICE_ENV: str(BUDGET)}) as url:
        yield ComfyClient(url, timeout=300)


def test_the_budget_sits_where_these_tests_need_it():
    """RAS at 256 px fits only in host memory; JiT with full context at 512 px fits in no form, without it it does."""
    ras_forms = {n.form: n for n in ras.memory_needs(ras.RASConfig(sample_ratio=0.3), EMBEDDED, shape(256))}
    act = activations(256)
    assert ras_forms[memory.DEVICE].device(act) > BUDGET >= ras_forms[memory.HOST].device(act) + 10**6
    jit_forms = jit.memory_needs(jit.JiTConfig(full_context=True), EMBEDDED, shape(512))
    assert all(n.device(activations(512)) > BUDGET for n in jit_forms)
    assert jit.memory_needs(jit.JiTConfig(), EMBEDDED, shape(512))[0].device(activations(512)) < BUDGET - 10**6


def test_a_graph_that_fits_only_in_another_form_runs_and_the_report_names_it(client, budgeted, baseline_prompt):
    prompt = sized(baseline_prompt, 256)
    prompt = insert_model_node(prompt, "40", "DiTAccelRAS", **RAS)
    prompt = add_report(insert_model_node(prompt, "41", "DiTAccelTaylorSeer", preset="balanced"))
    small = budgeted.run(prompt)
    text = small.node_output("50")["text"][0]
    assert "memory: DiTAccelRAS: host memory" in text and "over the budget" in text
    assert "memory: DiTAccelTaylorSeer: device" in text
    full = client.run(prompt)
    assert "memory: DiTAccelRAS: device" in full.node_output("50")["text"][0]
    # on the CPU the host form keeps its caches in the same memory with the same arithmetic
    assert np.array_equal(decode_png(small.images[0]), decode_png(full.images[0]))


def test_a_stacked_graph_that_cannot_fit_is_refused_before_the_first_step(client, budgeted, baseline_prompt):
    prompt = sized(baseline_prompt, 512)
    prompt = insert_model_node(prompt, "40", "DiTAccelJiT", **JIT)
    prompt = insert_model_node(prompt, "41", "DiTAccelTaylorSeer", preset="balanced")
    events: list[dict] = []
    with pytest.raises(ExecutionFailed) as failed:
        budgeted.run(prompt, on_event=events.append)
    message = failed.value.exception_message
    assert failed.value.node_type == "KSampler"
    assert message.startswith("DiTAccelJiT: not enough memory to run at 1024 image tokens")
    assert "as DITACCEL_DEVICE_MEMORY sets" in message and "Fits with full_context off" in message
    assert not [e for e in events if e.get("type") == "progress"]  # no sampler step ran
    # the refused prompt left nothing behind: the baseline is what the unbudgeted server makes
    base = sized(baseline_prompt, 256)
    assert np.array_equal(decode_png(budgeted.run(base).images[0]), decode_png(client.run(base).images[0]))

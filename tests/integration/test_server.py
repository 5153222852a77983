"""The pack on a real ComfyUI server: node listing, baseline graph, report, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from graphs import LOADER, SAMPLER, add_report, insert_model_node, set_steps

from tools.runtime import dit_runtime
from tools.runtime.comfy_client import PromptRejected, decode_png
from tools.workflows import catalog
from tools.workflows.workflow_ui import strip_meta, ui_to_api

OUR_NODES = ("DiTAccelReport", "DiTAccelRecord", "DiTAccelTaylorSeer", "DiTAccelCGTaylor", "DiTAccelFirstBlockCache",
             "DiTAccelSoftPAG", "DiTAccelHeadHunter", "DiTAccelSparseAttention", "DiTAccelRAS", "DiTAccelJiT",
             "DiTAccelCalibrate", "DiTAccelLoadProfile")


def test_object_info_lists_our_nodes_with_a_tooltip_on_every_input(object_info):
    for node in OUR_NODES:
        assert node in object_info, f"{node} missing from /object_info"
        info = object_info[node]
        assert info["python_module"].startswith("custom_nodes.ComfyUI-DiTAccel")
        inputs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        assert inputs
        for name, spec in inputs.items():
            assert len(spec) > 1 and spec[1].get("tooltip"), f"{node}.{name} has no tooltip"
    report = object_info["DiTAccelReport"]
    assert report["output"] == ["STRING", "IMAGE"]
    assert report["output_name"] == ["summary", "plot"]


def test_search_aliases_reach_the_node_library_where_comfyui_has_them(object_info):
    """0.33.0 lists search aliases for its own nodes and ours; 0.3.75 has no such field (and the pack's nodes
    still register there: nodes/schema.py passes the aliases only where the schema takes them)."""
    has_aliases = "search_aliases" in object_info["CLIPTextEncode"]
    assert has_aliases == (dit_runtime.comfyui_version() >= (0, 33))
    for node in OUR_NODES:
        if has_aliases:
            assert object_info[node]["search_aliases"], f"{node} has no search aliases"
        else:
            assert "search_aliases" not in object_info[node]
    if has_aliases:
        assert "fbcache" in object_info["DiTAccelFirstBlockCache"]["search_aliases"]
        assert "pag" in object_info["DiTAccelSoftPAG"]["search_aliases"]


def test_baseline_graph_gives_an_image_with_progress_events(client, baseline_prompt):
    result = client.run(baseline_prompt)
    progress = result.progress_events()
    values = [e["data"]["value"] for e in progress]
    # 0.3.75 sends every step; newer ComfyUI sends the first and the last and at most one per 100 ms between
    assert values[0] == 1 and values[-1] == 28 and values == sorted(set(values)), values
    assert all(e["data"]["max"] == 28 for e in progress)
    assert len(result.images) == 1
    image = decode_png(result.images[0])
    assert image.shape == (256, 256, 3)
    assert np.isfinite(image).all()


def test_same_seed_twice_gives_the_same_image(client, baseline_prompt):
    prompt = set_steps(baseline_prompt, 6)
    first = decode_png(client.run(prompt).images[0])
    second = decode_png(client.run(prompt).images[0])
    assert np.array_equal(first, second)
    prompt[SAMPLER]["inputs"]["seed"] = 1
    other = decode_png(client.run(prompt).images[0])
    assert not np.array_equal(first, other)


def report_text(result, node_id: str = "50") -> str:
    return result.node_output(node_id)["text"][0]


def test_report_on_the_baseline_lists_every_step_as_computed(client, baseline_prompt):
    plain = decode_png(client.run(baseline_prompt).images[0])
    prompt = add_report(insert_model_node(baseline_prompt, "40", "DiTAccelRecord"))
    result = client.run(prompt)
    assert np.array_equal(decode_png(result.images[0]), plain), "recording changed the image"
    text = report_text(result)
    rows = [line.split() for line in text.splitlines() if line[:4].strip().isdigit()]
    assert [int(r[0]) for r in rows] == list(range(28))
    assert all(r[2] == "full" for r in rows)
    assert "28/28 steps, 28 model calls" in text
    assert "FLOPs run: 100.0 % of full" in text
    sigmas = [float(r[1]) for r in rows]
    assert sigmas[0] == pytest.approx(1.0, abs=1e-3) and sigmas == sorted(sigmas, reverse=True)


def test_report_without_a_record_explains_instead_of_failing(client, baseline_prompt):
    prompt = add_report(set_steps(baseline_prompt, 2), model_from=LOADER)
    text = report_text(client.run(prompt))
    assert text.startswith("No DiTAccel record on this model")


def test_missing_required_input_is_rejected_before_running(client, baseline_prompt):
    prompt = add_report(baseline_prompt)
    del prompt["9"]  # the report is then the only output, so nothing at all may run
    del prompt["50"]["inputs"]["latent"]
    with pytest.raises(PromptRejected) as err:
        client.submit(prompt)
    assert err.value.status == 400
    errors = err.value.node_errors["50"]["errors"]
    assert any(e["extra_info"].get("input_name") == "latent" for e in errors)
    assert "input 'latent'" in str(err.value)


@pytest.mark.parametrize("name", catalog.names())
def test_ui_workflows_keep_a_slot_for_every_widget_linked_or_not(object_info, name):
    """The frontend reads widgets_values by position over every widget, a linked one included: a missing slot
    shifts every later value (SoftPAG fed by HeadHunter's heads once read scale 0 and start 1)."""
    from tools.workflows.workflow_ui import _inputs, _is_widget

    for node in json.loads(catalog.ui_file(name).read_text())["nodes"]:
        widgets = [opts for _, kind, opts in _inputs(object_info[node["type"]]) if _is_widget(kind, opts)]
        slots = sum(1 + bool(opts.get("control_after_generate")) for opts in widgets)
        assert len(node["widgets_values"]) == slots, (node["type"], node["widgets_values"])
        # a title is what the canvas shows: the pack's nodes show their display names, never their class names
        assert not node["type"].startswith("DiTAccel") or node.get("title") != node["type"], node["type"]


@pytest.mark.parametrize("name", catalog.names())
def test_ui_workflow_is_the_api_workflow(object_info, name):
    api = json.loads((catalog.API_DIR / f"{name}.json").read_text())
    ui = json.loads(catalog.ui_file(name).read_text())
    assert ui_to_api(ui, object_info) == strip_meta(api)


def test_partly_invalid_prompt_is_reported_not_silently_trimmed(client, baseline_prompt):
    prompt = add_report(set_steps(baseline_prompt, 2))
    del prompt["50"]["inputs"]["latent"]  # SaveImage still validates, so ComfyUI answers 200
    with pytest.raises(PromptRejected) as err:
        client.submit(prompt)
    assert err.value.status == 200
    assert "node 50 (DiTAccelReport) input 'latent'" in str(err.value)


def test_node_help_pages_are_the_nodes_own_schemas(object_info):
    """web/docs/<NodeId>.md (the frontend's help panel) is what tools/docs/node_help.py writes from the schemas
    this server reports: a changed input, range or tooltip without its page fails here (rerun the tool)."""
    from tools.docs import node_help

    pages = node_help.pages(object_info)
    assert set(pages) == {k for k in object_info if k.startswith("DiTAccel")}
    for node, text in pages.items():
        path = node_help.DOCS / f"{node}.md"
        assert path.is_file() and path.read_text() == text, f"{path.name} is stale: run python -m tools.docs.node_help"
        assert (node_help.DOCS / node_help.picture(node)).is_file(), f"no picture for {node}"

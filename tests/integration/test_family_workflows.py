"""The per-family baseline graphs and the Flux method graphs (tools/workflows/family_workflows.py) against the
server's node schemas: every node exists, links join matching types, widget values are allowed.

They name the model files of ComfyUI's own examples, which are not here, so they are checked, not run."""

from __future__ import annotations

import json

import pytest

from tools.runtime import dit_runtime
from tools.workflows import catalog, family_workflows

FILE_INPUTS = {"unet_name", "clip_name", "clip_name1", "clip_name2", "clip_name3", "clip_name4", "vae_name",
               "ckpt_name"}


def test_the_files_are_what_the_tool_writes():
    for name, graph in family_workflows.graphs().items():
        path = dit_runtime.REPO / "workflows" / "api" / f"{name}.json"
        assert json.loads(path.read_text()) == graph, f"{path.name} is stale: run tools/workflows/family_workflows.py"
        assert catalog.ui_file(name).is_file(), f"no UI file for {name}"


def problems(graph: dict, object_info: dict) -> list[str]:
    out = []
    for node_id, node in graph.items():
        info = object_info.get(node["class_type"])
        if info is None:
            out.append(f"{node_id}: unknown node {node['class_type']}")
            continue
        specs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        for name in info["input"].get("required", {}):
            if name not in node["inputs"]:
                out.append(f"{node_id} {node['class_type']}: missing input {name}")
        for name, value in node["inputs"].items():
            spec = specs.get(name)
            if spec is None:
                out.append(f"{node_id} {node['class_type']}: no input named {name}")
                continue
            kind, opts = spec[0], spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if isinstance(value, list):  # a link [node id, output index]
                source = graph.get(value[0])
                if source is None:
                    out.append(f"{node_id}.{name}: link to missing node {value[0]}")
                    continue
                outputs = object_info[source["class_type"]]["output"]
                if value[1] >= len(outputs) or outputs[value[1]] != kind:
                    out.append(f"{node_id}.{name}: expects {kind}, gets output {value[1]} of {source['class_type']}")
            elif isinstance(kind, list) or kind == "COMBO":
                choices = kind if isinstance(kind, list) else opts.get("options", [])
                if name not in FILE_INPUTS and value not in choices:
                    out.append(f"{node_id}.{name}: {value!r} is not one of its choices")
            elif kind in ("INT", "FLOAT"):
                if not opts.get("min", -float("inf")) <= value <= opts.get("max", float("inf")):
                    out.append(f"{node_id}.{name}: {value} outside [{opts.get('min')}, {opts.get('max')}]")
    return out


@pytest.mark.parametrize("name", sorted(family_workflows.graphs()))
def test_graph_matches_the_node_schemas(object_info, name):
    graph = json.loads((dit_runtime.REPO / "workflows" / "api" / f"{name}.json").read_text())
    assert problems(graph, object_info) == []


def test_the_checker_catches_a_broken_graph(object_info):
    graph = family_workflows.graphs()["baseline_flux"]
    graph["6"]["inputs"]["sampler_name"] = "no_such_sampler"
    graph["6"]["inputs"]["model"] = ["2", 0]  # a CLIP into a MODEL input
    found = problems(graph, object_info)
    assert any("sampler_name" in p for p in found) and any("expects MODEL" in p for p in found)

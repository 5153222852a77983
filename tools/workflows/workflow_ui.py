"""Convert API-format workflows to the UI format (drag into ComfyUI) and back.

    python -m tools.workflows.workflow_ui        # regenerate workflows/<title>.json from workflows/api/<name>.json

(the readable titles: tools/workflows/catalog.py)

Widget order, combo detection and the seed's extra "control after generate" value follow
the node schemas the running server reports at /object_info, so the files match what the
front end itself would save.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from tools.runtime.comfy_client import ComfyClient
from tools.runtime.dit_runtime import REPO, running_server
from tools.workflows import catalog

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def _inputs(info: dict) -> list[tuple[str, Any, dict]]:
    out = []
    for section in ("required", "optional"):
        for name, spec in info["input"].get(section, {}).items():
            kind = spec[0]
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            out.append((name, kind, opts))
    return out


def _is_widget(kind: Any, opts: dict) -> bool:
    return (isinstance(kind, list) or kind in WIDGET_TYPES) and not opts.get("forceInput")


def _type_name(kind: Any) -> str:
    return "COMBO" if isinstance(kind, list) else str(kind)


def _depths(prompt: dict) -> dict[str, int]:
    depth: dict[str, int] = {}

    def visit(node_id: str) -> int:
        if node_id not in depth:
            links = [v[0] for v in prompt[node_id]["inputs"].values() if isinstance(v, list)]
            depth[node_id] = 1 + max((visit(src) for src in links), default=-1)
        return depth[node_id]

    for node_id in prompt:
        visit(node_id)
    return depth


def api_to_ui(prompt: dict, object_info: dict) -> dict:
    depth = _depths(prompt)
    rows: dict[int, int] = {}
    nodes, links = [], []
    outputs: dict[tuple[str, int], list[int]] = {}
    link_id = 0
    order = sorted(prompt, key=lambda n: (depth[n], int(n)))
    for node_id in order:
        node = prompt[node_id]
        info = object_info[node["class_type"]]
        ui_inputs, widgets = [], []
        for name, kind, opts in _inputs(info):
            value = node["inputs"].get(name)
            if isinstance(value, list):
                link_id += 1
                links.append([link_id, int(value[0]), value[1], int(node_id), len(ui_inputs), _type_name(kind)])
                outputs.setdefault((value[0], value[1]), []).append(link_id)
                entry = {"name": name, "type": _type_name(kind), "link": link_id}
                if _is_widget(kind, opts):
                    # a widget fed by a link keeps its slot (and value) in widgets_values, as the frontend saves
                    # it; left out, every later widget would read its neighbour's value
                    entry["widget"] = {"name": name}
                    widgets.append(opts.get("default"))
                    if opts.get("control_after_generate"):
                        widgets.append("fixed")
                ui_inputs.append(entry)
            elif _is_widget(kind, opts):
                widgets.append(value if value is not None else opts.get("default"))
                if opts.get("control_after_generate"):
                    widgets.append("fixed")
        d = depth[node_id]
        row = rows.get(d, 0)
        rows[d] = row + 1
        nodes.append({
            "id": int(node_id), "type": node["class_type"], "pos": [40 + 340 * d, 40 + 220 * row],
            "size": [300, 160], "flags": {}, "order": order.index(node_id), "mode": 0,
            "inputs": ui_inputs, "outputs": [], "properties": {"Node name for S&R": node["class_type"]},
            "widgets_values": widgets,
            **({"title": node["_meta"]["title"]} if node.get("_meta", {}).get("title") else {}),
        })
    for ui_node in nodes:
        info = object_info[ui_node["type"]]
        names = info.get("output_name") or info["output"]
        ui_node["outputs"] = [
            {"name": names[i], "type": kind, "links": outputs.get((str(ui_node["id"]), i), []), "slot_index": i}
            for i, kind in enumerate(info["output"])
        ]
    return {"last_node_id": max(int(n) for n in prompt), "last_link_id": link_id, "nodes": nodes, "links": links,
            "groups": [], "config": {}, "extra": {}, "version": 0.4}


def ui_to_api(workflow: dict, object_info: dict) -> dict:
    link_src = {link[0]: (str(link[1]), link[2]) for link in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        info = object_info[node["type"]]
        linked = {i["name"]: i["link"] for i in node.get("inputs", []) if i.get("link") is not None}
        values = list(node.get("widgets_values", []))
        inputs: dict[str, Any] = {}
        for name, kind, opts in _inputs(info):
            if name in linked:
                inputs[name] = list(link_src[linked[name]])
                if _is_widget(kind, opts):  # its slot in widgets_values holds the unused value
                    values.pop(0)
                    if opts.get("control_after_generate"):
                        values.pop(0)
            elif _is_widget(kind, opts):
                inputs[name] = values.pop(0)
                if opts.get("control_after_generate"):
                    values.pop(0)
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def strip_meta(prompt: dict) -> dict:
    return {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in prompt.items()}


def main() -> int:
    with running_server() as url:
        info = ComfyClient(url).object_info()
    for name in catalog.names():
        prompt = json.loads((catalog.API_DIR / f"{name}.json").read_text())
        ui = api_to_ui(prompt, info)
        assert ui_to_api(ui, info) == strip_meta(prompt), f"round trip failed for {name}"
        target = catalog.ui_file(name)
        target.write_text(json.dumps(ui, indent=1) + "\n")
        print(f"wrote {target.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

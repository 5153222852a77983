"""pyproject.toml as the Comfy Registry reads it (the registry's own validator runs in `make registry-check`)."""

from __future__ import annotations

import re

import tomllib
from PIL import Image

from tools import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
RAW = "https://raw.githubusercontent.com/ditaccel/ComfyUI-DiTAccel/main/"


def test_tool_comfy_is_complete():
    comfy = PYPROJECT["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"]
    assert comfy["requires-comfyui"] == ">=0.3.75"  # the oldest ComfyUI CI runs the pack on
    urls = PYPROJECT["project"]["urls"]
    assert {"Repository", "Homepage", "Documentation", "Issues"} <= set(urls)


def test_the_icon_is_a_file_in_the_repository():
    icon = PYPROJECT["tool"]["comfy"]["Icon"]
    assert icon.startswith(RAW), icon
    path = REPO / icon.removeprefix(RAW)
    assert path.is_file(), f"{icon} names {path.relative_to(REPO)}, which is not in the repository"
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] == img.size[1] and img.size[0] <= 400


def test_the_node_id_follows_the_registry_rules():
    name = PYPROJECT["project"]["name"]
    assert re.fullmatch(r"[a-z][a-z0-9]*([-_.][a-z0-9]+)*", name) and len(name) <= 100, name
    assert re.fullmatch(r"\d+\.\d+\.\d+", PYPROJECT["project"]["version"])

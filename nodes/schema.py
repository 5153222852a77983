"""The nodes' schemas, built the same way on every ComfyUI the pack supports.

Newer ComfyUI (0.33.0) lets a V3 schema carry `search_aliases`: other words the node library's
search finds a node by (users type "teacache" or "pag", not the pack's names). 0.3.75's Schema has
no such field and refuses unknown keywords, so the aliases are passed only where the field exists.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from comfy_api.latest import io

# the node id -> the words a user searching the node library may type for it
SEARCH_ALIASES: dict[str, tuple[str, ...]] = {
    "DiTAccelTaylorSeer": ("taylorseer", "feature forecast", "speed up"),
    "DiTAccelCGTaylor": ("cg taylor", "confidence gated", "magcache", "easycache", "speed up"),
    "DiTAccelFirstBlockCache": ("fbcache", "first block cache", "teacache", "wavespeed", "cache", "speed up"),
    "DiTAccelRAS": ("ras", "region adaptive sampling", "token skip", "speed up"),
    "DiTAccelJiT": ("jit", "just in time", "anchor tokens", "token skip", "speed up"),
    "DiTAccelSoftPAG": ("pag", "perturbed attention guidance", "softpag", "guidance"),
    "DiTAccelHeadHunter": ("headhunter", "attention heads", "pag heads", "guidance"),
    "DiTAccelSparseAttention": ("sparse attention", "sage", "svg", "pisa", "grat", "attention", "speed up"),
    "DiTAccelCalibrate": ("calibrate", "calibration", "profile", "magcache calibration", "measure"),
    "DiTAccelLoadProfile": ("profile", "calibration", "load profile"),
    "DiTAccelRecord": ("report", "benchmark", "flops", "timing"),
    "DiTAccelReport": ("report", "benchmark", "flops", "timing", "speed up"),
}

_HAS_ALIASES = any(f.name == "search_aliases" for f in dataclasses.fields(io.Schema))


def node_schema(**fields: Any) -> io.Schema:
    """io.Schema(**fields) with the node's search aliases where this ComfyUI's schema takes them."""
    if _HAS_ALIASES:
        fields["search_aliases"] = list(SEARCH_ALIASES[fields["node_id"]])
    return io.Schema(**fields)

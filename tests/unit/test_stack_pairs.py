"""Every ordered pair of the pack's nodes (and common triples) on the embedded image and video models:
each stack samples correctly, or a pack node refuses it at apply time naming both nodes.

The nodes run at their `fast` presets (the most skipping), TaylorSeer in each granularity; sparse
attention with tiles small enough to engage on these sizes. Sizes are odd on purpose (176 x 192: 11 x 12
tokens), the size at which JiT / RAS followed by TaylorSeer at granularity `modules` once failed inside
the sampler.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from comfyui_ditaccel.accel_core.attention.apply import apply_sparse_attention
from comfyui_ditaccel.accel_core.attention.config import SparseAttentionConfig
from comfyui_ditaccel.accel_core.caching.apply import apply_cg_taylor, apply_first_block_cache, apply_taylorseer
from comfyui_ditaccel.accel_core.comfy_patch import report_holder
from comfyui_ditaccel.accel_core.guidance.apply import apply_softpag
from comfyui_ditaccel.accel_core.guidance.softpag import SoftPAGConfig
from comfyui_ditaccel.accel_core.metrics import psnr
from comfyui_ditaccel.accel_core.settings import records
from comfyui_ditaccel.accel_core.settings.resolve import Request
from comfyui_ditaccel.accel_core.spatial.apply import apply_jit, apply_ras

from tools.runtime import model_files
from tools.runtime.sampling import WAN_FILE, load_model, sample

Apply = Callable[[Any], Any]

def taylorseer(granularity: str) -> Request:
    return Request(records.TAYLORSEER, "fast", {"granularity": granularity})


NODES: dict[str, Apply] = {
    "TaylorSeer blocks": lambda m: apply_taylorseer(m, taylorseer("blocks")),
    "TaylorSeer modules": lambda m: apply_taylorseer(m, taylorseer("modules")),
    "TaylorSeer output": lambda m: apply_taylorseer(m, taylorseer("output")),
    "CGTaylor": lambda m: apply_cg_taylor(m, Request(records.CG_TAYLOR, "fast")),
    "FirstBlockCache": lambda m: apply_first_block_cache(m, Request(records.FBCACHE, "fast")),
    "RAS": lambda m: apply_ras(m, Request(records.RAS, "fast")),
    "JiT": lambda m: apply_jit(m, Request(records.JIT, "fast")),
    "SoftPAG": lambda m: apply_softpag(m, SoftPAGConfig("1:all; 4:0", 1.0, 1.0)),
    "SparseAttention": lambda m: apply_sparse_attention(m, SparseAttentionConfig(
        method="draft", density=0.3, dense_steps=1, dense_blocks=0, query_tile=4, key_tile=2, min_tokens=1)),
}
# the node (class) each entry is, for the refusal messages
NODE_CLASS = {name: "DiTAccelTaylorSeer" if name.startswith("TaylorSeer") else f"DiTAccel{name}" for name in NODES}
# RAS and JiT each choose which tokens the blocks run: one model takes one of them
REFUSED = {frozenset({"RAS", "JiT"})}
PAIRS = [(a, b) for a, b in itertools.permutations(NODES, 2)
         if not (a.startswith("TaylorSeer") and b.startswith("TaylorSeer"))]  # a second TaylorSeer replaces the first
TRIPLES = [("JiT", "TaylorSeer modules", "SoftPAG"), ("RAS", "TaylorSeer modules", "SparseAttention"),
           ("SoftPAG", "SparseAttention", "TaylorSeer blocks"), ("RAS", "FirstBlockCache", "SoftPAG"),
           ("SparseAttention", "JiT", "CGTaylor"), ("TaylorSeer output", "SoftPAG", "RAS")]

# (model file, latent size in pixels, video frames or None, steps, CFG)
SETTINGS = {
    "image": (WAN_FILE, (176, 192), None, 13, 5.0),
    "video": (model_files.WAN_VIDEO_DIT_FILE, (64, 96), 5, 8, 1.0),
}
# a stack's PSNR against the full-compute image may fall this far below what its nodes' errors alone would give
# if they simply added up; a stack that mixes up tokens or steps falls far further
MARGIN_DB = 6.0  # measured: the worst pair (TaylorSeer blocks + sparse attention) 3.9 dB below


@pytest.fixture(scope="module", params=list(SETTINGS))
def setting(request) -> dict:
    file, size, frames, steps, cfg = SETTINGS[request.param]
    model = load_model(file)

    def draw(m: Any) -> torch.Tensor:
        if frames is None:
            return sample(m, steps=steps, cfg=cfg, size=size)
        return sample(m, steps=steps, cfg=cfg, size=size, seed=7, frames=frames)

    baseline = draw(model)
    alone = {name: db(draw(apply(model)), baseline) for name, apply in NODES.items()}
    return {"name": request.param, "model": model, "draw": draw, "baseline": baseline, "steps": steps,
            "alone": alone}


def db(out: torch.Tensor, base: torch.Tensor) -> float:
    return psnr(out, base, data_range=float(base.max() - base.min()))


def check_stack(setting: dict, names: tuple[str, ...]) -> None:
    model = setting["model"]
    if any(frozenset(p) in REFUSED for p in itertools.combinations(names, 2)):
        with pytest.raises(ValueError) as refused:
            for name in names:
                model = NODES[name](model)
        pair = next(p for p in itertools.combinations(names, 2) if frozenset(p) in REFUSED)
        assert all(NODE_CLASS[n] in str(refused.value) for n in pair), str(refused.value)
        return
    for name in names:
        model = NODES[name](model)
    out = setting["draw"](model)
    base = setting["baseline"]
    assert out.shape == base.shape and torch.isfinite(out).all()
    record = report_holder(model).latest
    assert len(record.methods) == len({NODE_CLASS[n] for n in names}), record.methods
    assert {s.step for s in record.steps()} == set(range(setting["steps"]))
    added = -10.0 * math.log10(sum(10.0 ** (-setting["alone"][n] / 10.0) for n in names))
    got = db(out, base)
    assert got >= added - MARGIN_DB, f"{' + '.join(names)} on the {setting['name']} model: {got:.1f} dB; " \
                                     f"its nodes' errors added up give {added:.1f} dB"


@pytest.mark.parametrize("pair", PAIRS, ids=" then ".join)
def test_every_ordered_pair_samples_or_is_refused_naming_both(setting, pair):
    check_stack(setting, pair)


@pytest.mark.parametrize("triple", TRIPLES, ids=" then ".join)
def test_common_triples_sample(setting, triple):
    check_stack(setting, triple)


def test_module_forecasts_hold_every_token_and_follow_the_calls_subset():
    """Granularity `modules` under RAS / JiT: a forecast handed to a subset call holds that call's tokens, and
    what a subset call computes is stored for every token (the others at their forecast)."""
    from comfyui_ditaccel.accel_core.caching.schedule import IntervalSchedule
    from comfyui_ditaccel.accel_core.caching.taylorseer import TaylorSeerState
    from comfyui_ditaccel.accel_core.token_subset import TokenSubset

    g = torch.Generator().manual_seed(0)
    a, b, part = (torch.randn(2, 6, 3, generator=g) for _ in range(3))  # cond + uncond rows, 6 tokens
    subset = TokenSubset(torch.tensor([[1, 4]]), uniform=True)
    state = TaylorSeerState(IntervalSchedule(2), total_steps=10, order=1)
    state.call_streams, state.call_full = ["cond", "uncond"], True

    state.call_coord = 1.0
    state.module_computed("ffn", part[:, :2], subset)  # no full-token value yet: nothing to fill the rest from
    assert not state.forecaster("cond", "ffn").ready
    for coord, value in ((1.0, a), (0.8, b)):
        state.call_coord = coord
        state.module_computed("ffn", value)
    state.call_coord, state.call_full = 0.6, False
    full = 2 * b - a  # order 1 on equally spaced nodes
    torch.testing.assert_close(state.module_output("ffn"), full)
    torch.testing.assert_close(state.module_output("ffn", subset), full[:, [1, 4]])

    state.call_full = True
    state.module_computed("ffn", part[:, :2], subset)
    stored = torch.cat([state.forecaster(s, "ffn").diffs[0] for s in ("cond", "uncond")])
    expected = full.clone()
    expected[:, [1, 4]] = part[:, :2]
    torch.testing.assert_close(stored, expected)

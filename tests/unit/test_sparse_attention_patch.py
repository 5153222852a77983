"""Sparse attention on a real ComfyUI model in process: it engages, chains, falls back and reports."""

from __future__ import annotations

import pytest
import torch
from comfy_fixtures import attention_counts
from comfyui_ditaccel.accel_core.attention.apply import apply_sparse_attention
from comfyui_ditaccel.accel_core.attention.config import SparseAttentionConfig
from comfyui_ditaccel.accel_core.caching.apply import apply_taylorseer
from comfyui_ditaccel.accel_core.caching.taylorseer import TaylorSeerConfig
from comfyui_ditaccel.accel_core.comfy_patch import report_holder
from comfyui_ditaccel.accel_core.metrics import psnr

from tools.runtime.sampling import WAN_FILE, load_model, sample

SIZE = (256, 256)  # 32 x 32 latent → 16 x 16 = 256 image tokens: four 8 x 8 query tiles


def config(**kw) -> SparseAttentionConfig:
    base = {"method": "draft", "density": 0.5, "dense_steps": 1, "dense_blocks": 1, "query_tile": 8,
            "key_tile": 4, "min_tokens": 64}
    return SparseAttentionConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def wan():
    return load_model(WAN_FILE)


@pytest.fixture(scope="module")
def baseline(wan):
    return sample(wan, steps=4, size=SIZE)


@pytest.mark.parametrize("method", ["grat", "pisa", "svg2", "draft", "rettention"])
def test_each_method_engages_and_stays_close(wan, baseline, method):
    m = apply_sparse_attention(wan, config(method=method))
    out = sample(m, steps=4, size=SIZE)
    counts = attention_counts(m)
    blocks = len(wan.get_model_object("diffusion_model").blocks)
    # one batched CFG call per step; sparse after the dense step, in every block but the first
    assert counts[f"sparse ({method}, torch)"] == 3 * (blocks - 1)
    assert counts["dense (dense step)"] == blocks
    assert counts["dense (dense block)"] == 3
    assert counts["previous (cross-attention)"] == 4 * blocks
    record = report_holder(m).latest
    assert record.flops_share < 1.0
    assert "sparse" in record.summary()
    assert torch.isfinite(out).all()
    assert not torch.equal(out, baseline)
    assert psnr(out, baseline, data_range=float(baseline.max() - baseline.min())) > 15


def test_density_one_without_estimate_matches_the_baseline(wan, baseline):
    m = apply_sparse_attention(wan, config(density=1.0, estimate_skipped=False, dense_steps=0, dense_blocks=0))
    out = sample(m, steps=4, size=SIZE)
    assert (out - baseline).abs().max() < 1e-3


def test_previous_override_runs_on_every_call_with_the_sparse_result_as_its_base(wan):
    seen = {"previous": 0, "sparse base": 0}

    def previous(func, *args, **kwargs):
        seen["previous"] += 1
        if getattr(func, "__name__", "") == "sparse":
            seen["sparse base"] += 1
        return func(*args, **kwargs)

    base = wan.clone()
    base.model_options.setdefault("transformer_options", {})["optimized_attention_override"] = previous
    m = apply_sparse_attention(base, config())
    sample(m, steps=4, size=SIZE)
    counts = attention_counts(m)
    sparse = sum(n for k, n in counts.items() if k.startswith("sparse"))
    assert seen["previous"] == sum(counts.values())
    assert seen["sparse base"] == sparse > 0


def test_small_images_and_masks_fall_back_with_a_reason(wan, baseline):
    m = apply_sparse_attention(wan, config(min_tokens=1024))
    out = sample(m, steps=4, size=SIZE)
    assert torch.equal(out, baseline)
    counts = attention_counts(m)
    assert not any(k.startswith("sparse") for k in counts)
    assert counts["dense (under 1024 image tokens)"] > 0


def test_stacks_with_taylorseer(wan):
    ts = TaylorSeerConfig(interval=2, order=0, warmup_steps=1)
    both = apply_sparse_attention(apply_taylorseer(wan, ts), config())
    sample(both, steps=6, size=SIZE)
    record = report_holder(both).latest
    ran = {s.ran for s in record.steps()}
    assert "forecast" in ran and "sparse" in ran


def test_batch_two_and_a_rectangular_size(wan):
    m = apply_sparse_attention(wan, config())
    out = sample(m, steps=3, size=(256, 384), batch=2)
    assert out.shape[0] == 2 and torch.isfinite(out).all()
    assert any(k.startswith("sparse") for k in attention_counts(m))


def test_cross_attention_and_masks_go_to_the_previous_function_with_a_reason():
    from comfyui_ditaccel.accel_core.adapters import WAN21
    from comfyui_ditaccel.accel_core.attention.apply import dense_reason
    from comfyui_ditaccel.accel_core.run_context import BlockSite, RunContext

    site = BlockSite(spec=WAN21.block_lists[0], index=3, flat_index=3, last=False)
    ctx = RunContext(adapter=WAN21, flops=None, record=None, sample_sigmas=[0.0] * 29, steps_done=10)  # step 10 of 28
    q = torch.zeros(2, 1024, 256)
    cfg = config(dense_steps=0, dense_blocks=0)
    assert dense_reason(cfg, ctx, site, "self", q, q, None, 1024, False) is None
    assert dense_reason(cfg, ctx, site, "cross", q, torch.zeros(2, 77, 256), None, 1024, False) == \
        "previous (cross-attention)"
    assert dense_reason(cfg, ctx, site, "self", q, q, torch.zeros(1024, 1024), 1024, False) == \
        "previous (attention mask)"
    assert dense_reason(cfg, ctx, site, "self", q, q, None, 900, False) == "previous (token count not the image's)"
    assert dense_reason(config(dense_steps=11), ctx, site, "self", q, q, None, 1024, False) == "dense (dense step)"
    assert dense_reason(config(dense_blocks=4, dense_steps=0), ctx, site, "self", q, q, None, 1024, False) == \
        "dense (dense block)"
    assert dense_reason(config(start_percent=0.5, dense_steps=0), ctx, site, "self", q, q, None, 1024, False) == \
        "dense (outside start/end)"
    # joint text + image: only when the sequence is exactly the two (Z-Image pads, edit models append images)
    joint = torch.zeros(2, 1024 + 77, 256)
    assert dense_reason(cfg, ctx, site, "joint", joint, joint, None, 1024, False, 77) is None
    padded = torch.zeros(2, 1024 + 77 + 16, 256)
    assert dense_reason(cfg, ctx, site, "joint", padded, padded, None, 1024, False, 77) == \
        "previous (tokens beside the text and the image)"


def test_per_site_state_is_kept_per_conditioning_not_per_label(wan, monkeypatch):
    """With CFG off, SoftPAG's perturbed pass and the normal pass are both one "cond" entry of the same
    shape: each must keep its own Re-ttention residual."""
    import comfyui_ditaccel.accel_core.attention.apply as sparse_apply
    from comfyui_ditaccel.accel_core.guidance.apply import apply_softpag
    from comfyui_ditaccel.accel_core.guidance.softpag import SoftPAGConfig

    uuids_per_state: dict[int, set] = {}
    real_call, real_engine = sparse_apply._sparse_call, sparse_apply.engine.sparse_attention
    current: list[tuple] = []

    def call(config_, ctx, marker, q, k, v, heads, kwargs):
        current[:] = [tuple(str(u) for u in kwargs["transformer_options"]["uuids"])]
        return real_call(config_, ctx, marker, q, k, v, heads, kwargs)

    def engine_call(q, k, v, layout, cfg, step, state, form):
        uuids_per_state.setdefault(id(state), set()).add(current[0])
        return real_engine(q, k, v, layout, cfg, step, state, form)

    monkeypatch.setattr(sparse_apply, "_sparse_call", call)
    monkeypatch.setattr(sparse_apply.engine, "sparse_attention", engine_call)
    m = apply_sparse_attention(apply_softpag(wan, SoftPAGConfig("2:all", 1.0, 3.0)), config(method="rettention"))
    sample(m, steps=4, cfg=1.0, size=SIZE)
    assert len({u for s in uuids_per_state.values() for u in s}) == 2  # the normal and the perturbed pass
    assert all(len(s) == 1 for s in uuids_per_state.values())  # never one stored state for both

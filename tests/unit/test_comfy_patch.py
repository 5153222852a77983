"""The patching layer on real ComfyUI models and samplers, in process (no server)."""

from __future__ import annotations

import pytest
import torch
from comfy_fixtures import ProbeMethod, ProbeState
from comfyui_ditaccel.accel_core import comfy_patch
from comfyui_ditaccel.accel_core.adapters import WAN21, UnsupportedModelError, adapter_for
from comfyui_ditaccel.accel_core.comfy_patch import (
    METHODS_KEY,
    REPORT_KEY,
    RUN_KEY,
    attach,
    report_holder,
    set_attention_override,
    set_block_patches,
)

from tools.runtime.sampling import WAN_FILE, conditioning, load_model, sample


@pytest.fixture(scope="module")
def wan():
    return load_model(WAN_FILE)


@pytest.fixture(scope="module")
def baseline(wan):
    return sample(wan)


@pytest.fixture(scope="module")
def blocks(wan):
    return WAN21.block_count(wan.get_model_object("diffusion_model"))


def probe_blocks(method: ProbeMethod):
    def fn(args, call_block, site, ctx):
        state: ProbeState = ctx.state(method.key)
        if method.fail_at_step is not None and ctx.step == method.fail_at_step:
            method.fail_at_step = None
            raise RuntimeError("probe failure")
        state.block_calls.append((ctx.step, site.flat_index, args["img"].shape[0]))
        return call_block(args)
    return fn


def with_probe(model, method: ProbeMethod | None = None):
    method = method or ProbeMethod()
    m, adapter = attach(model, method)
    set_block_patches(m, adapter, method.key, probe_blocks(method))
    return m, method


def test_recording_only_is_bit_identical(wan, baseline):
    m, _ = attach(wan, None)
    assert torch.equal(sample(m), baseline)
    record = report_holder(m).latest
    assert record.status == "finished"
    assert [s.step for s in record.steps()] == [0, 1, 2, 3]
    assert all(s.ran == "full" for s in record.steps())


def test_attach_leaves_the_input_model_untouched(wan):
    before = dict(wan.model_options["transformer_options"])
    m, _ = with_probe(wan)
    assert wan.model_options["transformer_options"] == before
    assert REPORT_KEY in m.model_options["transformer_options"]
    assert not wan.get_wrappers("outer_sample", comfy_patch.WRAPPER_KEY)
    assert m.get_wrappers("outer_sample", comfy_patch.WRAPPER_KEY)


def test_clones_share_the_report_holder(wan):
    m, _ = attach(wan, None)
    assert report_holder(m.clone()) is report_holder(m)


def test_run_state_is_fresh_per_run_and_dropped_after(wan, baseline, blocks):
    m, method = with_probe(wan)
    assert torch.equal(sample(m), baseline)
    assert torch.equal(sample(m), baseline)
    assert method.runs_started == 2
    first, second = method.states
    assert first is not second
    assert len(first.block_calls) == len(second.block_calls) == 4 * blocks  # steps x blocks
    assert RUN_KEY not in m.model_options["transformer_options"]


def test_failed_run_leaves_no_state_behind(wan, baseline, blocks):
    m, method = with_probe(wan, ProbeMethod(fail_at_step=2))
    with pytest.raises(RuntimeError, match="probe failure"):
        sample(m)
    assert report_holder(m).latest.status == "stopped: RuntimeError"
    assert RUN_KEY not in m.model_options["transformer_options"]
    assert torch.equal(sample(m), baseline)
    assert len(method.states[-1].block_calls) == 4 * blocks


def test_block_patch_knows_its_own_index(wan, blocks):
    m, method = with_probe(wan)
    sample(m, steps=2)
    order = [flat for _, flat, _ in method.states[-1].block_calls]
    assert blocks > 1 and order == list(range(blocks)) * 2


def test_same_method_twice_replaces_itself(wan, blocks):
    m, method = with_probe(wan)
    m2, _ = with_probe(m, method)
    assert list(m2.model_options["transformer_options"][METHODS_KEY].methods) == [method.key]
    sample(m2, steps=1)
    assert len(method.states[-1].block_calls) == blocks  # once per block, not twice


def test_per_stream_state_for_batched_and_split_cfg(wan):
    def fn(args, call_block, site, ctx):
        if site.flat_index == 0:
            for u in args["transformer_options"]["uuids"]:
                counter = ctx.per_stream("test.streams", u, lambda: [0])
                counter[0] += 1
        return call_block(args)

    for neg_tokens in (7, 5):  # same length: one batched call; different: separate calls
        m, adapter = attach(wan, ProbeMethod())
        set_block_patches(m, adapter, "test.streams", fn)
        captured = []

        def grab(args, call_block, site, ctx, captured=captured):
            if site.flat_index == 0:
                captured.append(ctx)
            return call_block(args)

        set_block_patches(m, adapter, "test.grab", grab)
        sample(m, steps=3, negative=conditioning(2, tokens=neg_tokens))
        ctx = captured[0]
        counts = {key[1]: v[0] for key, v in ctx._streams.items()}
        assert len(counts) == 2 and set(counts.values()) == {3}
        calls = ctx.record.calls
        assert len(calls) == (3 if neg_tokens == 7 else 6)


def test_attention_override_chains_to_the_previous_one(wan, baseline, blocks):
    calls = {"previous": 0, "ours": 0}

    def previous(func, *args, **kwargs):
        calls["previous"] += 1
        return func(*args, **kwargs)

    base = wan.clone()
    base.model_options["transformer_options"]["optimized_attention_override"] = previous
    m, _ = attach(base, ProbeMethod())

    def ours(call_next, ctx, q, k, v, heads, **kwargs):
        calls["ours"] += 1
        assert ctx is not None
        return call_next(q, k, v, heads, **kwargs)

    set_attention_override(m, "test.attn", ours)
    set_attention_override(m, "test.attn", ours)  # again: replaces, does not stack
    assert torch.equal(sample(m), baseline)
    # blocks x (self + cross) x 4 steps, each call through both overrides exactly once
    assert calls["ours"] == calls["previous"] == blocks * 2 * 4


def test_an_override_replaced_by_a_later_node_fails_the_prompt_instead_of_going_quiet(wan, baseline):
    """Newer ComfyUI's ModelAttentionBackend sets the override without chaining to the one there."""

    def ours(call_next, ctx, q, k, v, heads, **kwargs):
        return call_next(q, k, v, heads, **kwargs)

    m, _ = attach(wan, ProbeMethod())
    set_attention_override(m, "test.attn", ours)
    replaced = m.clone()
    replaced.model_options["transformer_options"]["optimized_attention_override"] = (
        lambda func, *args, **kwargs: func(*args, **kwargs))
    with pytest.raises(comfy_patch.AttentionOverrideLost, match=r"attention work of test\.attn did not run"):
        sample(replaced)
    assert report_holder(replaced).latest.status.startswith("stopped")
    # an override that calls the one it found keeps ours running: no error, the same image
    chained = m.clone()
    found = chained.model_options["transformer_options"]["optimized_attention_override"]
    chained.model_options["transformer_options"]["optimized_attention_override"] = (
        lambda func, *args, **kwargs: found(func, *args, **kwargs))
    assert torch.equal(sample(chained), baseline)
    assert torch.equal(sample(m), baseline)  # the failed prompt left nothing behind


def test_heun_counts_sampler_steps_not_model_calls(wan):
    m, _ = attach(wan, None)
    sample(m, steps=4, sampler="heun")
    record = report_holder(m).latest
    assert [s.step for s in record.steps()] == [0, 1, 2, 3]
    assert len(record.calls) == 7  # heun: two evaluations per step, one on the last


def test_unsupported_model_gets_a_clear_error():
    with pytest.raises(UnsupportedModelError, match=r"Linear.*not supported.*Supported families: Wan"):
        adapter_for(torch.nn.Linear(2, 2), method="DiTAccelTest")


def test_batch_two_records_flops_for_both_samples(wan):
    m, _ = attach(wan, None)
    sample(m, steps=1, batch=2)
    call = report_holder(m).latest.calls[0]
    assert call.batch == 4  # 2 samples x (cond + uncond)
    one = report_holder(m).latest
    m1, _ = attach(wan, None)
    sample(m1, steps=1, batch=1)
    assert call.flops_full == pytest.approx(2 * report_holder(m1).latest.calls[0].flops_full)
    assert one.flops_share == 1.0

"""Calibration profiles: the curves computed from probes, the file format, matching a run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from comfyui_ditaccel.accel_core.calibration import profile as P

SIGMAS = [1.0 - i / 10 for i in range(11)]  # 10 steps


def poly_features(degree: int, steps: int = 10) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    coeffs = [torch.randn(64, generator=g) for _ in range(degree + 1)]
    return [sum(c * SIGMAS[i] ** k for k, c in enumerate(coeffs)) for i in range(steps)]


@pytest.mark.parametrize("degree", [0, 1, 2])
def test_a_forecast_of_order_k_is_exact_on_features_of_degree_k_in_sigma(degree):
    errors = P.forecast_errors(SIGMAS[:10], poly_features(degree), max_gap=3)
    for order in range(degree, 3):
        values = [e for gap in errors[order] for e in gap if not math.isnan(e)]
        assert values and max(values) < 1e-4, (order, max(values))
    if degree >= 1:  # a lower order misses the curve
        assert max(e for e in errors[degree - 1][0] if not math.isnan(e)) > 1e-3


def test_forecast_errors_need_enough_steps_before():
    errors = P.forecast_errors(SIGMAS[:10], poly_features(1), max_gap=3)
    # order 2 at gap 3 needs steps 9, 6, 3 before step 9 ... step 9 itself: nodes 0, 3, 6
    assert math.isnan(errors[2][2][8]) and not math.isnan(errors[2][2][9])
    assert math.isnan(errors[0][0][0]) and not math.isnan(errors[0][0][1])


def test_changes_are_relative_to_the_step_before():
    a, b = torch.ones(8), torch.ones(8) * 1.5
    assert P.changes([a, b, b])[1:] == [pytest.approx(0.5), 0.0]  # |b - a| / |a|


def make_profile(steps: int = 10) -> P.Profile:
    feats = {"output": poly_features(2, steps), "stack": poly_features(1, steps),
             "first_residual": poly_features(1, steps), "first_output": poly_features(1, steps)}
    return P.build("abc123", "wan", "wan2.1-embedded", "euler", "simple", 1024, SIGMAS[: steps + 1],
                   {"cond": feats, "uncond": feats}, {"cond": torch.ones(64), "uncond": torch.ones(64)}, max_gap=4)


def test_a_profile_survives_its_file(tmp_path):
    p = make_profile()
    path = tmp_path / p.name
    path.write_text(p.to_json())
    back = P.load(path)
    assert back.name == p.name == "wan-abc123-10steps-euler-simple-1024pos.json"
    assert back.entries["cond"].output_weight == pytest.approx(p.entries["cond"].output_weight)
    assert len(back.entries["uncond"].forecast_error[2][3]) == 10


@pytest.mark.parametrize("text, why", [
    ("{not json", "Expecting property name"),
    (json.dumps({"hello": 1}), "no 'format'"),
    (json.dumps({"format": "ditaccel-profile", "version": 99}), "format version 99"),
    (json.dumps({"format": "ditaccel-profile", "version": 2, "entries": {}}), "missing"),
])
def test_a_corrupted_or_foreign_file_is_refused_naming_it(tmp_path, text, why):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(P.ProfileError) as err:
        P.load(path)
    assert str(err.value).startswith(f"{path}: not a DiTAccel profile") and why in str(err.value)


def test_curves_of_the_wrong_length_are_refused(tmp_path):
    data = json.loads(make_profile().to_json())
    data["entries"]["cond"]["output_change"].pop()
    path = tmp_path / "short.json"
    path.write_text(json.dumps(data))
    with pytest.raises(P.ProfileError, match="entry cond: curves of"):
        P.load(path)


def test_a_profile_says_why_it_does_not_fit_a_run():
    p = make_profile()
    assert p.mismatch("abc123", 10, 1100) is None  # 1100 positions round to the same bucket
    assert "another model" in p.mismatch("zzz", 10, 1024)
    assert "measured at 10 steps, this run has 28" in p.mismatch("abc123", 28, 1024)
    assert "about 1024 latent positions, this run has 4096 (about 4096)" in p.mismatch("abc123", 10, 4096)


def test_build_refuses_samplers_with_several_calls_per_step():
    feats = {k: poly_features(1, 9) for k in ("output", "stack", "first_residual", "first_output")}
    with pytest.raises(ValueError, match="one per step"):
        P.build("f", "wan", "v", "heun", "simple", 1024, SIGMAS, {"cond": feats}, {"cond": torch.ones(64)})


def test_the_fingerprint_follows_the_weights_and_the_patches():
    w = {f"blocks.{i}.weight": torch.randn(32, 32, generator=torch.Generator().manual_seed(i)) for i in range(40)}
    base = P.fingerprint(w.items())
    assert P.fingerprint(list(w.items())[::-1]) == base  # order does not matter
    assert P.fingerprint(w.items(), patches="lora_a.safetensors:1.0") != base
    changed = dict(w, **{"blocks.0.weight": w["blocks.0.weight"] + 1})
    assert P.fingerprint(changed.items()) != base


def test_probes_stay_small_and_keep_relative_changes():
    big = torch.randn(3 * P.PROBE_ELEMENTS + 5, generator=torch.Generator().manual_seed(0))
    other = big + 0.1 * torch.randn(big.shape, generator=torch.Generator().manual_seed(1))
    a, b = P.probe(big), P.probe(other)
    assert a.numel() <= P.PROBE_ELEMENTS + 2
    assert P.changes([a, b])[1] == pytest.approx(P.changes([big, other])[1], rel=0.01)


def test_a_loaded_lora_does_not_change_the_fingerprint_of_the_same_model_and_lora():
    """ComfyUI writes a LoRA into the weights while the model is loaded (keeping the originals in its
    backup): the fingerprint reads the originals, so it is the same loaded or not, and differs without it."""
    from comfyui_ditaccel.accel_core.comfy_patch import weights_and_patches

    from tools.runtime.sampling import WAN_FILE, load_model

    base = load_model(WAN_FILE)
    named, _ = weights_and_patches(base)
    key, weight = min(named, key=lambda kv: kv[0])  # the first name: always one of the sampled tensors
    g = torch.Generator().manual_seed(0)
    lora = base.clone()
    lora.add_patches({key: (0.05 * torch.randn(weight.shape, generator=g),)}, 1.0)  # a "diff" patch
    before = P.fingerprint(*weights_and_patches(lora))
    assert before != P.fingerprint(*weights_and_patches(base))
    lora.patch_model()  # what loading does: the patch written into the weight, the original backed up
    try:
        assert key in lora.backup
        assert P.fingerprint(*weights_and_patches(lora)) == before
    finally:
        lora.unpatch_model()


def test_with_cfg_the_guided_output_is_what_the_plan_reads():
    """A forecast is linear in its values: the guided entry's errors are those of uncond + cfg (cond - uncond),
    which an error in cond reaches cfg times over."""
    from comfyui_ditaccel.accel_core.calibration import plan

    cond = {k: poly_features(2) for k in ("output", "stack", "first_residual", "first_output")}
    uncond = {k: [0.9 * t for t in poly_features(2)] for k in cond}
    final = {"cond": torch.ones(64), "uncond": torch.ones(64)}
    p = P.build("f", "wan", "v", "euler", "simple", 1024, SIGMAS, {"cond": cond, "uncond": uncond}, final,
                max_gap=3, cfg=5.0)
    guided = [u + 5.0 * (c - u) for c, u in zip(cond["output"], uncond["output"], strict=True)]
    np.testing.assert_allclose(p.entries[P.GUIDED].forecast_error, P.forecast_errors(SIGMAS[:10], guided, max_gap=3))
    assert plan.output_entries(p) == [p.entries[P.GUIDED]]
    assert plan.gate_entries(p) == [p.entries["cond"], p.entries["uncond"]]
    assert p.entries[P.GUIDED].output_weight[3] == pytest.approx(1.4 * p.entries["cond"].output_weight[3], rel=1e-4)
    no_cfg = P.build("f", "wan", "v", "euler", "simple", 1024, SIGMAS, {"cond": cond, "uncond": uncond}, final,
                     max_gap=3)
    assert P.GUIDED not in no_cfg.entries


@pytest.mark.parametrize("order", [0, 1, 2])
def test_the_batched_forecast_errors_are_the_forecasters_own(order):
    """profile.forecast_errors evaluates, batched, the polynomial caching/forecast.py's forecaster builds."""
    from comfyui_ditaccel.accel_core.caching.forecast import TaylorForecaster

    g = torch.Generator().manual_seed(order)
    probes = [torch.randn(50, generator=g) for _ in range(10)]
    sigmas = [1.0 - (i / 10) ** 1.3 for i in range(10)]  # uneven, as a shifted schedule
    errors = P.forecast_errors(sigmas, probes, max_gap=3)
    for gap in (1, 2, 3):
        for step in range((order + 1) * gap, 10):
            f = TaylorForecaster(order)
            for k in range(order + 1, 0, -1):
                f.update(sigmas[step - gap * k], probes[step - gap * k])
            want = float((f.predict(sigmas[step]) - probes[step]).norm() / probes[step].norm())
            assert errors[order][gap - 1][step] == pytest.approx(want, rel=1e-4)

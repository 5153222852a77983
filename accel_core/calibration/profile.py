"""A calibration profile: how one model's features move over one sampling setup, measured once.

`DiTAccelCalibrate` samples at full compute and keeps, per step and per conditioning entry, a
strided probe of four features: the model's output (what granularity `output` forecasts), the
block stack's output (what `blocks` forecasts), and the first block's residual and output (what First
Block Cache and CG-Taylor compare). From the probes it computes the curves a profile stores:

- `output_change`, `stack_change`, `first_residual_change`: the relative L2 change of each feature
  from the step before (NaN at step 0);
- `forecast_error[order][gap - 1][step]`: the relative L2 error of a Taylor forecast of the output
  at that step, of order 0, 1 or 2, from the steps gap, 2 gap, … before it, in sigma (as the pack's
  forecaster extrapolates); NaN where the run has too few steps before it;
- `output_weight[step]`: |sigma_{step+1} - sigma_step| x rms(output) / rms(final latent), so an output
  error of relative size e at that step moves the final latent by about e x output_weight (flow
  models: x_next = x + (sigma_next - sigma) v). Their sum over the skipped steps is the predicted error;
- the gates' own measures, so a threshold can be chosen on them: `first_residual_gap[gap - 1][step]`,
  the relative L1 change of the first block's residual from `gap` steps before (what First Block Cache
  compares), and `first_forecast_error[order][gap - 1][step]`, the relative L1 error of a Taylor forecast
  of the first block's output (what CG-Taylor compares);
- what the block-level methods put in place of the stack's output: `stack_forecast_error[order][gap -
  1][step]`, the relative L2 error of a Taylor forecast of the stack's output (TaylorSeer `blocks`,
  CG-Taylor), and `rest_residual_gap[gap - 1][step]`, the change of the rest of the stack's residual
  (stack output - first block output) from `gap` steps before, relative to the stack's output (what
  First Block Cache's reuse of that residual misses). NaN where the two outputs differ in shape.

With CFG, the sampler steps along the guided output uncond + cfg (cond - uncond), not along either
entry: an error in cond moves the final latent cfg times as far. So a run with both entries also gets a
`guided` entry, its output probes combined from the two (a Taylor forecast is linear in the values, so a
forecast of both entries combined is the forecast of the guided output): its forecast errors and
weights are what the final latent sees. It has no gate measures (NaN): the gates compare each entry.

Profiles are JSON (never pickle), keyed by the model's fingerprint, family, steps, sampler and
scheduler and a size bucket (the latent's positions, frames x height x width, to a power of two),
so a later run finds the one that fits it or says why none does.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

FORMAT = "ditaccel-profile"
VERSION = 2
GUIDED = "guided"  # the entry CFG's combination of cond and uncond makes
ORDERS = (0, 1, 2)
MAX_GAP = 16  # forecasts over up to this many steps (the presets' longest intervals reach 14 at 28 steps, 19 at 50)
PROBE_ELEMENTS = 1 << 16  # a feature's probe keeps about this many elements (every k-th), whatever its size


class ProfileError(ValueError):
    """A profile file that is not one (corrupted, foreign, another format version): names the file."""


def probe(t: torch.Tensor) -> torch.Tensor:
    """Every k-th element of `t` as float32 on the host: a relative L2 change measured on it is that of `t`
    within a fraction of a percent for the feature maps of a DiT, at a fixed, small memory cost."""
    flat = t.detach().flatten()
    stride = max(1, flat.numel() // PROBE_ELEMENTS)
    return flat[::stride].float().cpu().clone()


def size_bucket(positions: int) -> str:
    """The latent's positions (frames x height x width) rounded to a power of two: one profile serves sizes
    within a factor of ~1.4 of its own."""
    return f"{2 ** round(math.log2(max(positions, 1)))}pos"


def fingerprint(tensors: Iterable[tuple[str, torch.Tensor]], patches: str = "", samples: int = 32) -> str:
    """A short hash of the model's weights, fast: `samples` tensors spread over the sorted names, 256 strided
    elements of each, plus a digest of the patches ComfyUI applies on top (LoRAs and their strengths)."""
    named = sorted(tensors, key=lambda kv: kv[0])
    if not named:
        return hashlib.sha256(patches.encode()).hexdigest()[:16]
    h = hashlib.sha256()
    step = max(1, len(named) // samples)
    for name, t in named[::step]:
        flat = t.detach().flatten()
        picked = flat[:: max(1, flat.numel() // 256)][:256].float().cpu()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(picked.numpy().tobytes())
    h.update(patches.encode())
    return h.hexdigest()[:16]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """|a - b| / |b|."""
    den = float(b.norm())
    return float((a - b).norm()) / den if den > 0 else float("nan")


def _rms(t: torch.Tensor) -> float:
    """Root mean square: probes of tensors of different sizes compare (a norm would grow with the probe)."""
    return float(t.norm()) / math.sqrt(max(t.numel(), 1))


def changes(probes: Sequence[torch.Tensor]) -> list[float]:
    return [float("nan")] + [_rel(probes[i], probes[i - 1]) for i in range(1, len(probes))]


L1, L2 = "l1", "l2"


def _rel_rows(pred: torch.Tensor, true: torch.Tensor, metric: str) -> list[float]:
    """Per row of [rows, values]: |pred - true| / |true| in L2, or mean |pred - true| / mean |true| in L1."""
    diff = pred - true
    if metric == L1:
        num, den = diff.abs().mean(dim=1), true.abs().mean(dim=1)
    else:
        num, den = diff.norm(dim=1), true.norm(dim=1)
    return [float(a) / float(b) if float(b) > 0 else float("nan") for a, b in zip(num, den, strict=True)]


def _stacked(probes: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.stack([t.flatten().float() for t in probes])


def gap_mean_abs(probes: Sequence[torch.Tensor], max_gap: int = MAX_GAP) -> list[list[float]]:
    """[gap - 1][step]: mean |a(step) - a(step - gap)| (NaN where there is none)."""
    n, table = len(probes), _stacked(probes)
    return [[float("nan")] * min(gap, n) + [float(v) for v in (table[gap:] - table[:-gap]).abs().mean(dim=1)]
            if gap < n else [float("nan")] * n for gap in range(1, max_gap + 1)]


def adaptive_curves(inputs: Sequence[torch.Tensor], features: Sequence[torch.Tensor],
                    max_gap: int = MAX_GAP) -> dict[str, list]:
    return {"input_gap": gap_mean_abs(inputs, max_gap), "feature_gap": gap_mean_abs(features, max_gap),
            "feature_abs": [float(t.float().abs().mean()) for t in features]}


def gap_changes(probes: Sequence[torch.Tensor], max_gap: int = MAX_GAP) -> list[list[float]]:
    """[gap - 1][step]: relative L1 change of a feature from `gap` steps before (NaN where there is none)."""
    n, table = len(probes), _stacked(probes)
    out = []
    for gap in range(1, max_gap + 1):
        rows = _rel_rows(table[: max(n - gap, 0)], table[gap:], L1) if gap < n else []
        out.append([float("nan")] * min(gap, n) + rows)
    return out


def rest_gaps(stack: Sequence[torch.Tensor], first: Sequence[torch.Tensor],
              max_gap: int = MAX_GAP) -> list[list[float]]:
    """[gap - 1][step]: |rest(step) - rest(step - gap)| / |stack(step)|, rest = stack - first (NaN: shapes differ)."""
    n = len(stack)
    if any(a.shape != b.shape for a, b in zip(stack, first, strict=True)):
        return [[float("nan")] * n for _ in range(max_gap)]
    full = _stacked(stack)
    rest = full - _stacked(first)
    out = []
    for gap in range(1, max_gap + 1):
        if gap >= n:
            out.append([float("nan")] * n)
            continue
        num, den = (rest[gap:] - rest[:-gap]).norm(dim=1), full[gap:].norm(dim=1)
        out.append([float("nan")] * gap + [float(a) / float(b) if float(b) > 0 else float("nan")
                                           for a, b in zip(num, den, strict=True)])
    return out


def forecast_errors(sigmas: Sequence[float], probes: Sequence[torch.Tensor], max_gap: int = MAX_GAP,
                    metric: str = L2) -> list[list[list[float]]]:
    """[order][gap - 1][step]: the forecast of step `step` from steps step - gap, step - 2 gap, ... .

    The forecast through nodes x_1 … x_{k+1} is the interpolating polynomial of degree k in sigma, the
    one the pack's Newton-form forecaster builds (caching/forecast.py), evaluated here in Lagrange form:
    a weighted sum of the node values, batched over the steps."""
    n, table = len(probes), _stacked(probes)
    out = [[[float("nan")] * n for _ in range(max_gap)] for _ in ORDERS]
    for oi, order in enumerate(ORDERS):
        for gap in range(1, max_gap + 1):
            steps = list(range((order + 1) * gap, n))
            if not steps:
                continue
            weights = torch.zeros(len(steps), n, dtype=torch.float64)
            for row, step in enumerate(steps):
                x = sigmas[step]
                for j in range(1, order + 2):
                    xj, w = sigmas[step - gap * j], 1.0
                    for m in range(1, order + 2):
                        if m != j:
                            xm = sigmas[step - gap * m]
                            w *= (x - xm) / (xj - xm)
                    weights[row, step - gap * j] += w
            pred = weights.to(table.dtype) @ table  # one matrix product for every step of this order and gap
            for step, e in zip(steps, _rel_rows(pred, table[steps], metric), strict=True):
                out[oi][gap - 1][step] = e
    return out


@dataclass
class EntryCurves:
    """The curves of one conditioning entry (cond or uncond), one value per step."""

    output_change: list[float]
    stack_change: list[float]
    first_residual_change: list[float]
    output_weight: list[float]
    forecast_error: list[list[list[float]]]  # [order][gap - 1][step]
    first_residual_gap: list[list[float]]  # [gap - 1][step], relative L1 (First Block Cache's gate)
    first_forecast_error: list[list[list[float]]]  # [order][gap - 1][step], relative L1 (CG-Taylor's gate)
    stack_forecast_error: list[list[list[float]]]  # [order][gap - 1][step], relative L2
    rest_residual_gap: list[list[float]]  # [gap - 1][step], relative L2 to the stack's output
    # TaylorSeer's adaptive rule, replayed on these: mean |a(step) - a(step - gap)| of the call's input and
    # feature ([gap - 1][step]) and the feature's mean |.| per step; `output`: the latent in and the model's
    # output out, `stack`: the first block's input in and the stack's output out
    adaptive: dict[str, dict[str, list]] = field(default_factory=dict)


@dataclass
class Profile:
    fingerprint: str
    family: str
    variant: str
    steps: int
    sampler: str
    scheduler: str
    size_bucket: str
    sigmas: list[float]  # the run's sample sigmas (steps + 1)
    entries: dict[str, EntryCurves] = field(default_factory=dict)  # "cond", "uncond", "guided"
    cfg: float = 1.0  # the guidance scale the guided entry combines cond and uncond with
    format: str = FORMAT
    version: int = VERSION

    @property
    def max_gap(self) -> int:
        """The longest gap the forecast errors were measured over."""
        return min((len(c.forecast_error[0]) for c in self.entries.values()), default=0)

    @property
    def name(self) -> str:
        """The file name it is saved under: what a run looks it up by."""
        return (f"{self.family}-{self.fingerprint}-{self.steps}steps-{self.sampler}-{self.scheduler}-"
                f"{self.size_bucket}.json")

    def to_json(self) -> str:
        return json.dumps(asdict(self), allow_nan=True, separators=(",", ":"))

    def mismatch(self, fingerprint: str, steps: int, positions: int) -> str | None:
        """Why this profile does not describe a run (None: it does)."""
        if fingerprint != self.fingerprint:
            return f"the profile was measured on another model (fingerprint {self.fingerprint}, this one {fingerprint})"
        if steps != self.steps:
            return f"the profile was measured at {self.steps} steps, this run has {steps}"
        if size_bucket(positions) != self.size_bucket:
            return (f"the profile was measured at about {self.size_bucket[:-3]} latent positions, this run has "
                    f"{positions} (about {size_bucket(positions)[:-3]})")
        return None


def build(fingerprint: str, family: str, variant: str, sampler: str, scheduler: str, positions: int,
          sigmas: Sequence[float], features: dict[str, dict[str, list[torch.Tensor]]],
          final: dict[str, torch.Tensor], max_gap: int = MAX_GAP, cfg: float = 1.0) -> Profile:
    """The profile of one calibration run. `features[entry]` holds the per-step probes "output", "stack",
    "first_residual", "first_output" and "input" (the latent the model was called on); `final[entry]` the
    probe of the final latent (the sampler's result)."""
    steps = len(sigmas) - 1
    profile = Profile(fingerprint, family, variant, steps, sampler, scheduler, size_bucket(positions),
                      [float(s) for s in sigmas], cfg=float(cfg))
    for entry, feats in features.items():
        outputs = feats["output"]
        if len(outputs) != steps:
            raise ValueError(f"calibration recorded {len(outputs)} model calls for entry {entry}, expected one per "
                             f"step ({steps}); samplers that call the model more than once per step are not "
                             "supported by calibration (use euler, dpmpp_2m, uni_pc ...)")
        final_rms = _rms(final[entry]) or float("nan")
        weight = [abs(sigmas[i + 1] - sigmas[i]) * _rms(outputs[i]) / final_rms for i in range(steps)]
        profile.entries[entry] = EntryCurves(changes(outputs), changes(feats["stack"]),
                                             changes(feats["first_residual"]), weight,
                                             forecast_errors(sigmas[:steps], outputs, max_gap),
                                             gap_changes(feats["first_residual"], max_gap),
                                             forecast_errors(sigmas[:steps], feats["first_output"], max_gap,
                                                             L1),
                                             forecast_errors(sigmas[:steps], feats["stack"], max_gap),
                                             rest_gaps(feats["stack"], feats["first_output"], max_gap))
        first_in = [o - r for o, r in zip(feats["first_output"], feats["first_residual"], strict=True)]
        profile.entries[entry].adaptive = {
            "stack": adaptive_curves(first_in, feats["stack"], max_gap),
            **({"output": adaptive_curves(feats["input"], outputs, max_gap)} if "input" in feats else {})}
    if {"cond", "uncond"} <= set(features) and cfg != 1.0:
        cond, uncond = features["cond"]["output"], features["uncond"]["output"]
        guided = [u + cfg * (c - u) for c, u in zip(cond, uncond, strict=True)]
        final_rms = _rms(final["cond"]) or float("nan")
        nan = [float("nan")] * steps
        profile.entries[GUIDED] = EntryCurves(
            changes(guided), nan, nan,
            [abs(sigmas[i + 1] - sigmas[i]) * _rms(guided[i]) / final_rms for i in range(steps)],
            forecast_errors(sigmas[:steps], guided, max_gap), [nan] * max_gap, [[nan] * max_gap for _ in ORDERS],
            [[nan] * max_gap for _ in ORDERS], [nan] * max_gap)
    return profile


def _check(cond: bool, path: Path | str, what: str) -> None:
    if not cond:
        raise ProfileError(f"{path}: not a DiTAccel profile ({what})")


def load(path: Path | str) -> Profile:
    """Read a profile file; a corrupted or foreign file is refused naming it."""
    try:
        data: Any = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProfileError(f"{path}: not a DiTAccel profile ({e})") from None
    _check(isinstance(data, dict) and data.get("format") == FORMAT, path, "no 'format': 'ditaccel-profile'")
    _check(data.get("version") == VERSION, path, f"format version {data.get('version')!r}, this pack reads {VERSION}")
    try:
        entries = {k: EntryCurves(**v) for k, v in data.pop("entries").items()}
        profile = Profile(**data, entries=entries)
    except (TypeError, AttributeError, KeyError) as e:
        raise ProfileError(f"{path}: not a DiTAccel profile ({e})") from None
    steps = profile.steps
    _check(isinstance(steps, int) and steps >= 1 and len(profile.sigmas) == steps + 1, path,
           "sigmas and steps disagree")
    for entry, curves in profile.entries.items():
        lengths = {len(curves.output_change), len(curves.stack_change), len(curves.first_residual_change),
                   len(curves.output_weight)}
        _check(lengths == {steps}, path, f"entry {entry}: curves of {sorted(lengths)} values for {steps} steps")
        for name in ("forecast_error", "first_forecast_error", "stack_forecast_error"):
            table = getattr(curves, name)
            _check(len(table) == len(ORDERS) and all(len(row) == steps for order in table for row in order),
                   path, f"entry {entry}: {name} of the wrong shape")
        for name in ("first_residual_gap", "rest_residual_gap"):
            _check(all(len(row) == steps for row in getattr(curves, name)), path,
                   f"entry {entry}: {name} of the wrong shape")
    return profile

"""What ran at each sampling step: the record behind DiTAccelReport, its text summary and plot.

The record lives in a `ReportHolder` that every clone of a patched model shares (its
`__deepcopy__` returns itself, because ComfyUI 0.3.75's `clone()` deep-copies model_options).
A sampling run appends a `RunRecord`; model calls add `CallRecord`s; methods mark what they
skipped on the current call. Nothing in here changes what the model computes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

KEEP_RUNS = 8

# Labels for CallRecord.ran, shared by the methods and the plot colours.
RAN_FULL = "full"
RAN_GATED = "gated"  # a gate ran the first block and skipped the rest
RAN_FORECAST = "forecast"
RAN_REUSED = "reused"
RAN_SPARSE = "sparse"  # attention ran block-sparse in at least one block
RAN_SUBSET = "subset"  # the blocks ran on part of the image tokens (RAS, JiT)


@dataclass
class CallRecord:
    step: int
    sigma: float
    streams: tuple[str, ...]  # "cond" / "uncond" per batch chunk
    batch: int
    image_tokens: int
    text_tokens: int
    flops_full: float
    flops_run: float
    ran: str = RAN_FULL
    skipped: str = ""
    seconds: float = 0.0
    gate_error: float = float("nan")  # the skip gate's measured error on this call (gated methods)
    grid: tuple[int, int, int] = (1, 0, 0)  # image tokens as (frames, rows, columns)
    # what each attention call of this model call did, e.g. {"sparse": 10, "dense (dense step)": 2}
    attention: dict[str, int] = field(default_factory=dict)
    tokens_run: int = -1  # image tokens the blocks computed (-1: all of them)
    forward_ran: bool = False  # the diffusion model's forward ran (set from inside ComfyUI's DIFFUSION_MODEL wrappers)
    override_ran: bool = False  # the pack's attention override was called during this model call

    def note_attention(self, what: str, flops_saved: float = 0.0) -> None:
        self.attention[what] = self.attention.get(what, 0) + 1
        if flops_saved > 0:
            self.flops_run = max(0.0, self.flops_run - flops_saved)
            if self.ran == RAN_FULL:
                self.ran = RAN_SPARSE

    def mark_skipped(self, flops: float, what: str, ran: str) -> None:
        """A method skipped `flops` of this call's transformer work; `what` says which part."""
        self.flops_run = max(0.0, self.flops_run - flops)
        self.ran = ran
        self.skipped = f"{self.skipped}; {what}" if self.skipped else what


@dataclass
class StepSummary:
    step: int
    sigma: float
    calls: int
    ran: str
    skipped: str
    flops_full: float
    flops_run: float
    seconds: float
    gate_error: float = float("nan")
    attention: str = "-"  # what the attention calls did, e.g. "sparse x10, dense (dense step) x2"
    tokens: str = "-"  # image tokens computed per call, e.g. "128/256" ("-": all)


@dataclass
class RunRecord:
    methods: tuple[str, ...]
    total_steps: int
    sigmas: list[float]
    calls: list[CallRecord] = field(default_factory=list)
    seconds: float = 0.0
    status: str = "running"
    state_bytes: int = 0  # tensors the methods' per-run state held at the end of the run
    variant: str = ""  # the model variant the run's settings were chosen for, and why
    settings: tuple[str, ...] = ()  # per node: preset, resolved settings and their source
    memory: tuple[str, ...] = ()  # per node: the memory form the run's plan chose, and what it holds
    memory_held: int = 0  # what the plan's formulas say the methods keep across steps (device and host)
    state_peak_bytes: int = 0  # the most the methods' per-run state held at the end of any step

    def steps(self) -> list[StepSummary]:
        by_step: dict[int, list[CallRecord]] = {}
        for call in self.calls:
            by_step.setdefault(call.step, []).append(call)
        out = []
        for step in sorted(by_step):
            calls = by_step[step]
            ran = Counter(c.ran for c in calls)
            skipped = sorted({c.skipped for c in calls if c.skipped})
            errors = [c.gate_error for c in calls if c.gate_error == c.gate_error]
            attention: Counter[str] = Counter()
            for c in calls:
                attention.update(c.attention)
            out.append(StepSummary(
                step=step,
                sigma=calls[0].sigma,
                calls=len(calls),
                ran=", ".join(k if n == 1 else f"{k} x{n}" for k, n in ran.items()),
                skipped="; ".join(skipped) or "-",
                flops_full=sum(c.flops_full for c in calls),
                flops_run=sum(c.flops_run for c in calls),
                seconds=sum(c.seconds for c in calls),
                gate_error=max(errors) if errors else float("nan"),
                attention=", ".join(f"{k} x{n}" for k, n in attention.items()) or "-",
                tokens=_tokens_text(calls),
            ))
        return out

    @property
    def flops_share(self) -> float:
        full = sum(c.flops_full for c in self.calls)
        return sum(c.flops_run for c in self.calls) / full if full else 1.0

    def summary(self) -> str:
        steps = self.steps()
        transformer_s = sum(c.seconds for c in self.calls)
        full = sum(c.flops_full for c in self.calls)
        run = sum(c.flops_run for c in self.calls)
        lines = [
            f"DiTAccel report ({self.status}): {len(steps)}/{self.total_steps} steps, {len(self.calls)} model calls, "
            f"sampling {self.seconds:.2f} s, transformer {transformer_s:.2f} s",
            *([f"model: {self.variant}"] if self.variant else []),
            *(f"settings: {line}" for line in self.settings),
            f"methods: {', '.join(self.methods) if self.methods else 'none (recording only)'}",
            f"transformer FLOPs run: {100.0 * self.flops_share:.1f} % of full "
            f"({run / 1e9:.3f} / {full / 1e9:.3f} GFLOP)",
            f"method state held: {self.state_bytes / 2**20:.2f} MiB",
            *(f"memory: {line}" for line in self.memory),
            "",
            f"{'step':>4}  {'sigma':>8}  {'ran':<18} {'skipped':<28} {'gate err':>8}  {'GFLOP run/full':>16}  "
            f"{'ms':>8}",
        ]
        with_tokens = any(s.tokens != "-" for s in steps)
        if with_tokens:
            lines[-1] += f"  {'tokens':>9}"
        with_attention = any(s.attention != "-" for s in steps)
        if with_attention:
            lines[-1] += "  attention"
        for s in steps:
            gate = f"{s.gate_error:.4f}" if s.gate_error == s.gate_error else "-"
            lines.append(
                f"{s.step:>4}  {s.sigma:>8.4f}  {s.ran:<18} {s.skipped:<28} {gate:>8}  "
                f"{s.flops_run / 1e9:>7.3f}/{s.flops_full / 1e9:<8.3f}  {1000.0 * s.seconds:>8.1f}"
                + (f"  {s.tokens:>9}" if with_tokens else "")
                + (f"  {s.attention}" if with_attention else "")
            )
        return "\n".join(lines)


def _tokens_text(calls: list[CallRecord]) -> str:
    """Image tokens computed per call of a step, when some call ran a subset ("128/256")."""
    if all(c.tokens_run < 0 for c in calls):
        return "-"
    counts = sorted({(c.tokens_run if c.tokens_run >= 0 else c.image_tokens, c.image_tokens) for c in calls})
    return ", ".join(f"{run}/{full}" for run, full in counts)


class ReportHolder:
    """Shared by every clone of a patched model; holds the last few runs' records."""

    def __init__(self) -> None:
        self.runs: list[RunRecord] = []

    def __deepcopy__(self, memo: dict) -> ReportHolder:
        return self

    def start_run(self, methods: tuple[str, ...], sigmas: list[float]) -> RunRecord:
        record = RunRecord(methods=methods, total_steps=max(len(sigmas) - 1, 0), sigmas=sigmas)
        self.runs.append(record)
        del self.runs[:-KEEP_RUNS]
        return record

    @property
    def latest(self) -> RunRecord | None:
        return self.runs[-1] if self.runs else None


_COLOURS = {RAN_FULL: (70, 110, 200), RAN_GATED: (240, 170, 40), RAN_FORECAST: (60, 170, 90),
            RAN_REUSED: (150, 150, 150), RAN_SUBSET: (150, 90, 190)}


def render_plot(record: RunRecord | None, width: int = 768, height: int = 384) -> np.ndarray:
    """Bars: share of transformer FLOPs run per step, coloured by what ran; line: wall time per step.

    Returns an HxWx3 float32 array in [0, 1] (ComfyUI's IMAGE layout without the batch axis).
    """
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    left, right, top, bottom = 48, width - 16, 28, height - 36
    draw.rectangle([left, top, right, bottom], outline=(0, 0, 0))
    if record is None or not record.calls:
        draw.text((left + 10, top + 10), "nothing recorded: no DiTAccel node on this model's last run", fill=(0, 0, 0))
        return np.asarray(img, dtype=np.float32) / 255.0
    steps = record.steps()
    n = max(record.total_steps, len(steps), 1)
    slot = (right - left) / n
    max_s = max(s.seconds for s in steps) or 1.0
    points = []
    for s in steps:
        share = s.flops_run / s.flops_full if s.flops_full else 1.0
        x0 = left + s.step * slot + 1
        x1 = left + (s.step + 1) * slot - 1
        y0 = bottom - share * (bottom - top)
        kind = s.ran.split(",")[0].split(" x")[0]
        draw.rectangle([x0, y0, max(x0, x1), bottom], fill=_COLOURS.get(kind, (200, 80, 80)))
        points.append(((x0 + x1) / 2, bottom - (s.seconds / max_s) * (bottom - top)))
    if len(points) > 1:
        draw.line(points, fill=(200, 30, 30), width=2)
    draw.text((left, 8), f"FLOPs run per step (bars, {100 * record.flops_share:.0f} % overall) and wall time "
              f"(red line, max {1000 * max_s:.0f} ms)", fill=(0, 0, 0))
    draw.text((left, bottom + 8), "step 0", fill=(0, 0, 0))
    draw.text((right - 60, bottom + 8), f"step {n - 1}", fill=(0, 0, 0))
    legend_x = left + 140
    for label, colour in _COLOURS.items():
        draw.rectangle([legend_x, bottom + 10, legend_x + 10, bottom + 20], fill=colour)
        draw.text((legend_x + 14, bottom + 8), label, fill=(0, 0, 0))
        legend_x += 90
    return np.asarray(img, dtype=np.float32) / 255.0

"""The calibration node's picture: the measured curves of the first conditioning entry, per step."""

from __future__ import annotations

import math

import numpy as np
import torch

from .profile import ORDERS, Profile

COLOURS = [(40, 110, 200), (220, 120, 30), (60, 160, 80), (150, 60, 170), (200, 50, 60)]


def _panel(d, box: tuple[int, int, int, int], title: str, lines: list[tuple[str, list[float]]]) -> None:
    left, top, right, bottom = box
    d.rectangle(box, outline="black")
    d.text((left, top - 18), title, fill="black")
    values = [v for _, ys in lines for v in ys if v > 0 and math.isfinite(v)]
    if not values:
        d.text((left + 8, top + 8), "no values", fill="black")
        return
    lo, hi = math.log10(min(values)), math.log10(max(values))
    hi = hi if hi > lo else lo + 1.0
    n = max(len(ys) for _, ys in lines)

    def xy(i: int, v: float) -> tuple[float, float]:
        return (left + i / max(n - 1, 1) * (right - left),
                bottom - (math.log10(v) - lo) / (hi - lo) * (bottom - top))

    for k, (label, ys) in enumerate(lines):
        pts = [xy(i, v) for i, v in enumerate(ys) if v > 0 and math.isfinite(v)]
        colour = COLOURS[k % len(COLOURS)]
        if len(pts) > 1:
            d.line(pts, fill=colour, width=2)
        d.text((left + 6, top + 4 + 12 * k), label, fill=colour)
    d.text((left - 44, top), f"{10 ** hi:.2g}", fill="black")
    d.text((left - 44, bottom - 10), f"{10 ** lo:.2g}", fill="black")
    d.text((left, bottom + 4), "step 0", fill="black")
    d.text((right - 50, bottom + 4), f"step {n - 1}", fill="black")


def render(profile: Profile, gap: int = 2, width: int = 768, height: int = 320) -> torch.Tensor:
    """IMAGE (1, H, W, 3): the relative changes (left) and the forecast errors at `gap` (right), log scale."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    entry = "cond" if "cond" in profile.entries else next(iter(profile.entries))
    c = profile.entries[entry]
    half = width // 2
    _panel(d, (50, 40, half - 20, height - 30), f"relative change per step ({entry})",
           [("output", c.output_change), ("block stack output", c.stack_change),
            ("first block residual", c.first_residual_change)])
    gap = min(gap, len(c.forecast_error[0]))
    _panel(d, (half + 50, 40, width - 20, height - 30), f"output forecast error, gap {gap} ({entry})",
           [(f"order {o}", c.forecast_error[i][gap - 1]) for i, o in enumerate(ORDERS)])
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).unsqueeze(0)

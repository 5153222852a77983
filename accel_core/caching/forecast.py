"""Forecasters: fill a skipped step's feature from the features of the steps that were computed.

`TaylorForecaster` keeps the divided differences of the last (order + 1) computed steps, built
recursively as TaylorSeer does, but divides by the true node distances and extrapolates with
the Newton form. On equally spaced full steps this is TaylorSeer's finite-difference Taylor
series with its step-size factors made exact: a forecast of order k reproduces any polynomial
of degree <= k in the step index, whatever the spacing (warm-up steps are spaced 1, the rest
`interval`).

State table for order 2, full steps at 0, 2, 4 (D_j = f[x_n, ..., x_{n-j}]):
    update(0, a):  nodes [0]        D = [a]
    update(2, b):  nodes [2, 0]     D = [b, (b - a) / 2]
    update(4, c):  nodes [4, 2, 0]  D = [c, (c - b) / 2, ((c - b) / 2 - (b - a) / 2) / 4]
    predict(5) = D0 + D1 (5 - 4) + D2 (5 - 4)(5 - 2)

A value at the newest node's coordinate again (Heun and DPM++ 2S end one step where the next
begins) replaces that node: the table is first taken back to the nodes before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..memory import ON_DEVICE, Storage


@dataclass
class TaylorForecaster:
    order: int
    nodes: list[float] = field(default_factory=list)  # newest first
    diffs: list[torch.Tensor] = field(default_factory=list)
    storage: Storage = ON_DEVICE  # host memory form: the table is kept there, used on the device
    device: torch.device | None = None  # where the values come from (and forecasts go)

    def __post_init__(self) -> None:
        if self.order < 0:
            raise ValueError(f"order must be >= 0, got {self.order}")

    @property
    def ready(self) -> bool:
        return bool(self.diffs)

    def update(self, step: float, value: torch.Tensor) -> None:
        if self.nodes and abs(float(step) - self.nodes[0]) <= 1e-9 * max(1.0, abs(self.nodes[0])):
            self._drop_newest()
        nodes = [float(step), *self.nodes][: self.order + 1]
        self.device = value.device
        # a copy: the computed output goes on to the model, where a patch may add to it in place
        newest = value.detach().clone()
        new = [self.storage.keep(newest)]
        for j in range(1, len(nodes)):
            newest = (newest - self.storage.use(self.diffs[j - 1], value.device)) / (nodes[0] - nodes[j])
            new.append(self.storage.keep(newest))
        self.nodes, self.diffs = nodes, new

    def _drop_newest(self) -> None:
        """D_j = (D_{j-1} - E_{j-1}) / (x_n - x_{n-j}) solved for the older table E."""
        x, d = self.nodes, self.diffs
        self.diffs = [d[j] - d[j + 1] * (x[0] - x[j + 1]) for j in range(len(d) - 1)]
        self.nodes = x[1:]

    def predict(self, step: float) -> torch.Tensor:
        if not self.diffs:
            raise RuntimeError("predict() before any update()")
        device = self.device or self.diffs[0].device
        first = self.storage.use(self.diffs[0], device)
        # the caller may change it in place; the table must not change
        out = first.clone() if first is self.diffs[0] else first
        weight = 1.0
        for j in range(1, len(self.diffs)):
            weight *= float(step) - self.nodes[j - 1]
            out = out + self.storage.use(self.diffs[j], device) * weight
        return out

    def nbytes(self) -> int:
        return sum(d.numel() * d.element_size() for d in self.diffs)

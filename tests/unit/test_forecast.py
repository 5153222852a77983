"""Forecasters on plain torch."""

from __future__ import annotations

import pytest
import torch
from comfyui_ditaccel.accel_core.caching.forecast import TaylorForecaster


@pytest.mark.parametrize("order", [0, 1, 2, 3])
@pytest.mark.parametrize("nodes", [[0, 1, 2, 3, 4, 5], [0, 1, 2, 5, 8, 11], [0, 4, 8, 12]])
def test_order_k_is_exact_on_degree_k_polynomials(order, nodes):
    g = torch.Generator().manual_seed(order)
    coeffs = torch.randn(order + 1, 3, 4, generator=g, dtype=torch.float64)

    def poly(t: float) -> torch.Tensor:
        return sum(c * t**i for i, c in enumerate(coeffs))

    f = TaylorForecaster(order)
    for t in nodes:
        f.update(t, poly(t))
    for t in (nodes[-1] + 1, nodes[-1] + 2.5, nodes[-1] + 7):
        torch.testing.assert_close(f.predict(t), poly(t), rtol=1e-9, atol=1e-9)


def test_order_k_is_not_exact_on_degree_k_plus_one():
    f = TaylorForecaster(1)
    for t in (0, 1, 2):
        f.update(t, torch.tensor([float(t**2)]))
    assert f.predict(3).item() == pytest.approx(7.0)  # linear extrapolation of 1, 4 -> 7, true 9


def test_memory_is_order_plus_one_tensors():
    f = TaylorForecaster(2)
    for t in range(6):
        f.update(t, torch.zeros(2, 8))
    assert len(f.diffs) == 3 and f.nbytes() == 3 * 2 * 8 * 4


def test_predict_at_the_last_node_returns_its_value_and_order_is_checked():
    f = TaylorForecaster(2)
    v = torch.randn(5)
    f.update(0, torch.zeros(5))
    f.update(3, v)
    assert torch.equal(f.predict(3), v)
    with pytest.raises(ValueError, match="order must be >= 0"):
        TaylorForecaster(-1)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_a_repeated_node_replaces_the_newest_value(order):
    g = torch.Generator().manual_seed(10 + order)
    coeffs = torch.randn(order + 1, 4, generator=g, dtype=torch.float64)

    def poly(t: float) -> torch.Tensor:
        return sum(c * t**i for i, c in enumerate(coeffs))

    f = TaylorForecaster(order)
    for t in (0.0, 0.5, 1.0, 1.5, 2.0):
        f.update(t, poly(t) + 100.0 if t == 2.0 else poly(t))  # a wrong value at 2.0 first ...
    f.update(2.0, poly(2.0))  # ... then the right one at the same node (Heun's step boundary)
    assert f.nodes[0] == 2.0 and len(f.diffs) == order + 1
    torch.testing.assert_close(f.predict(3.0), poly(3.0), rtol=1e-9, atol=1e-9)
    assert torch.isfinite(f.predict(3.0)).all()


def test_the_table_keeps_its_own_copies_of_what_it_was_given_and_what_it_returns():
    f = TaylorForecaster(0)
    value = torch.ones(3)
    f.update(0.5, value)
    value.add_(1.0)  # e.g. a ControlNet adding to the block output in place after it was stored
    out = f.predict(0.4)
    assert torch.equal(out, torch.ones(3))
    out.add_(1.0)  # a caller changing the forecast in place
    assert torch.equal(f.predict(0.4), torch.ones(3))

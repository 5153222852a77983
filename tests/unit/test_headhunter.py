"""The head search and the image objectives, on plain torch."""

from __future__ import annotations

import pytest
import torch
from comfyui_ditaccel.accel_core.guidance import objectives
from comfyui_ditaccel.accel_core.guidance.headhunter import budget, search

POOL = [("double_block", b, h) for b in range(4) for h in range(2)]


def test_greedy_rounds_pick_the_best_heads_given_those_already_chosen():
    value = {head: i * 0.1 for i, head in enumerate(POOL)}  # the last heads are the best alone
    clash = (("double_block", 3, 1), ("double_block", 3, 0))  # but these two hurt each other

    def score(heads):
        s = sum(value[h] for h in heads)
        return s - (5.0 if all(h in heads for h in clash) else 0.0)

    calls = []
    result = search(POOL, lambda hs: calls.append(hs) or score(hs), rounds=2, top_k=1)
    assert result.baseline == 0.0
    assert result.chosen == [("double_block", 3, 1), ("double_block", 2, 1)]  # round 2 avoids the clash
    assert result.rounds[1].best == pytest.approx(0.7 + 0.5)
    assert len(calls) == result.evaluations == 1 + budget(len(POOL), 2, 1) == 1 + 8 + 7


def test_budget_and_arguments():
    assert budget(12, 3, 2) == 12 + 10 + 8
    assert budget(3, 5, 2) == 3 + 1
    with pytest.raises(ValueError, match="rounds and top_k"):
        search(POOL, lambda hs: 0.0, rounds=0, top_k=1)


def _images(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 32, 32, 3, generator=g)


def test_statistics_rank_images_the_way_their_names_say():
    flat = torch.full((1, 32, 32, 3), 0.5)
    noisy = _images()[:1]
    blurred = torch.nn.functional.avg_pool2d(noisy.movedim(-1, 1), 5, 1, 2).movedim(1, -1)
    assert objectives.sharpness(noisy) > objectives.sharpness(blurred) > objectives.sharpness(flat) == 0.0
    assert objectives.contrast(noisy) > objectives.contrast(flat) == 0.0
    grey = noisy.mean(-1, keepdim=True).expand_as(noisy)
    assert objectives.colourfulness(noisy) > objectives.colourfulness(grey) == pytest.approx(0.0, abs=1e-3)
    square = flat.clone()
    square[:, 8:24, 8:24] = 1.0
    assert objectives.structure(square) > objectives.structure(flat) == 0.0


def test_closeness_is_highest_for_the_reference_itself():
    ref = _images(1)[:1]
    score = objectives.closeness(ref)
    assert score(ref) == pytest.approx(1.0)
    assert score(ref) > score(_images(2)[:1])
    big = torch.nn.functional.interpolate(ref.movedim(-1, 1), size=(64, 64)).movedim(1, -1)
    assert objectives.closeness(big)(ref) > 0.5  # a reference of another size is resized

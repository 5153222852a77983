"""HeadHunter (Ahn et al., arXiv 2506.10978, Alg. 1): greedy rounds of head selection by an objective.

Each round scores every head left in the pool together with the heads already chosen (the
score is the mean objective over the search's prompt-seed pairs, computed by the caller),
moves the `top_k` best into the chosen set, and goes on for `rounds` rounds. The number of
scored sets is the budget: sum over rounds of the pool size then.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

Head = tuple[str, int, int]  # (block list replace name, block index, head index)


@dataclass(frozen=True)
class RoundRecord:
    scores: dict[Head, float]  # candidate -> score of chosen-so-far + candidate
    picked: tuple[Head, ...]
    best: float


@dataclass
class SearchResult:
    baseline: float  # the objective with no head perturbed (CFG only)
    chosen: list[Head] = field(default_factory=list)
    rounds: list[RoundRecord] = field(default_factory=list)

    @property
    def evaluations(self) -> int:
        return 1 + sum(len(r.scores) for r in self.rounds)


def budget(pool_size: int, rounds: int, top_k: int) -> int:
    """Scored head sets for a search (each costs one sampling run per prompt-seed pair)."""
    total, left = 0, pool_size
    for _ in range(rounds):
        if left <= 0:
            break
        total += left
        left -= top_k
    return total


def search(pool: Sequence[Head], score: Callable[[frozenset[Head]], float], rounds: int, top_k: int,
           on_round: Callable[[int, RoundRecord], None] | None = None) -> SearchResult:
    if rounds < 1 or top_k < 1:
        raise ValueError(f"rounds and top_k must be >= 1, got {rounds} and {top_k}")
    result = SearchResult(baseline=score(frozenset()))
    left = list(pool)
    for r in range(rounds):
        if not left:
            break
        chosen = frozenset(result.chosen)
        scores = {head: score(chosen | {head}) for head in left}
        picked = tuple(sorted(left, key=lambda h: (-scores[h], h))[:top_k])
        record = RoundRecord(scores, picked, scores[picked[0]])
        result.rounds.append(record)
        result.chosen.extend(picked)
        left = [h for h in left if h not in picked]
        if on_round is not None:
            on_round(r, record)
    return result

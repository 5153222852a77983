"""The `heads` text of DiTAccelSoftPAG: which attention heads of which blocks to perturb.

Grammar: entries separated by `;`, each `[kind:]block:heads`, where `kind` names the block list
for families with two (`double`, `single`: Flux) and is left out for single-list families
(Wan); `block` is a 0-based index into that list; `heads` is `all` or 0-based head indices
separated by `,`. Examples: `3:all; 5:0,1` (Wan), `double:3:all; single:10:2,5` (Flux).

`parse` checks the syntax alone (what the node can check before it sees the model);
`resolve` checks it against a model's block lists and head count.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..adapters import ModelAdapter
from ..quoting import is_index, quoted

KINDS = {"double": "double_block", "single": "single_block"}
ALL = "all"


class HeadSpecError(ValueError):
    pass


@dataclass(frozen=True)
class HeadEntry:
    kind: str | None  # "double" / "single" / None
    block: int
    heads: tuple[int, ...] | None  # None: all heads


def _int(token: str, what: str, entry: str) -> int:
    if not is_index(token):
        raise HeadSpecError(f"heads: {what} {quoted(token)} in {quoted(entry)} is not a 0-based index "
                            f"(ASCII digits 0-9)")
    return int(token)


def parse(spec: str) -> tuple[HeadEntry, ...]:
    entries = []
    for raw in spec.split(";"):
        entry = raw.strip()
        if not entry:
            continue
        parts = [p.strip() for p in entry.split(":")]
        if len(parts) == 3:
            kind, block, heads = parts
            if kind not in KINDS:
                raise HeadSpecError(f"heads: block kind {quoted(kind)} in {quoted(entry)} must be one of "
                                    f"{', '.join(KINDS)}")
        elif len(parts) == 2:
            kind, (block, heads) = None, parts
        else:
            raise HeadSpecError(f"heads: entry {quoted(entry)} must be [kind:]block:heads, e.g. '3:all' or '5:0,1'")
        index = _int(block, "block", entry)
        if heads == ALL:
            head_list = None
        else:
            tokens = [t.strip() for t in heads.split(",")]
            if not tokens or any(not t for t in tokens):
                raise HeadSpecError(f"heads: head list {quoted(heads)} in {quoted(entry)} must be 'all' or indices "
                                    f"like 0,1")
            head_list = tuple(sorted({_int(t, "head", entry) for t in tokens}))
        entries.append(HeadEntry(kind, index, head_list))
    if not entries:
        raise HeadSpecError("heads: empty; give at least one entry such as '3:all'")
    return tuple(entries)


@dataclass(frozen=True)
class HeadSelection:
    """(replace_name, block index) -> selected head indices, resolved against one model."""

    heads: dict[tuple[str, int], tuple[int, ...]]
    num_heads: int

    def for_block(self, replace_name: str, index: int) -> tuple[int, ...]:
        return self.heads.get((replace_name, index), ())

    def count(self) -> int:
        return sum(len(h) for h in self.heads.values())

    @classmethod
    def from_heads(cls, heads: Iterable[tuple[str, int, int]], num_heads: int) -> HeadSelection:
        """From (replace name, block, head) triples, e.g. the head search's chosen set."""
        grouped: dict[tuple[str, int], set[int]] = {}
        for name, block, head in heads:
            grouped.setdefault((name, block), set()).add(head)
        return cls({k: tuple(sorted(v)) for k, v in grouped.items()}, num_heads)

    def triples(self) -> list[tuple[str, int, int]]:
        """(replace name, block, head) per selected head, in block order: the inverse of `from_heads`."""
        return [(name, block, h) for (name, block), heads in sorted(self.heads.items()) for h in heads]

    @classmethod
    def every_head(cls, block_counts: dict[str, int], num_heads: int) -> HeadSelection:
        return cls({(name, i): tuple(range(num_heads)) for name, n in block_counts.items() for i in range(n)},
                   num_heads)

    def to_spec(self, adapter: ModelAdapter) -> str:
        two = len(adapter.block_lists) > 1
        names = {v: k for k, v in KINDS.items()}
        out = []
        for (replace_name, index), heads in sorted(self.heads.items()):
            text = ALL if len(heads) == self.num_heads else ",".join(map(str, heads))
            out.append(f"{names[replace_name]}:{index}:{text}" if two else f"{index}:{text}")
        return "; ".join(out)


def resolve(entries: tuple[HeadEntry, ...], adapter: ModelAdapter, block_counts: dict[str, int],
            num_heads: int) -> HeadSelection:
    """Check `entries` against the model: kinds the family has, block and head indices in range."""
    lists = {spec.replace_name: spec for spec in adapter.block_lists}
    two = len(adapter.block_lists) > 1
    heads: dict[tuple[str, int], set[int]] = {}
    for e in entries:
        where = f"{e.kind + ':' if e.kind else ''}{e.block}"
        if two and e.kind is None:
            raise HeadSpecError(f"heads: entry '{where}:...' needs a block kind on {adapter.display_name}: "
                                f"'double:{e.block}:...' or 'single:{e.block}:...'")
        if not two and e.kind is not None:
            raise HeadSpecError(f"heads: {adapter.display_name} has one block list; write '{e.block}:...' "
                                f"without '{e.kind}:'")
        replace_name = KINDS[e.kind] if e.kind else adapter.block_lists[0].replace_name
        if replace_name not in lists:
            raise HeadSpecError(f"heads: {adapter.display_name} has no {e.kind} blocks")
        n = block_counts[replace_name]
        if e.block >= n:
            raise HeadSpecError(f"heads: block {where} is out of range: the model has blocks 0-{n - 1}"
                                f"{' of that kind' if two else ''}")
        chosen = range(num_heads) if e.heads is None else e.heads
        bad = [h for h in chosen if h >= num_heads]
        if bad:
            raise HeadSpecError(f"heads: head {bad[0]} of block {where} is out of range: the model has heads "
                                f"0-{num_heads - 1}")
        heads.setdefault((replace_name, e.block), set()).update(chosen)
    return HeadSelection({k: tuple(sorted(v)) for k, v in heads.items()}, num_heads)

"""What changed in a system's export between two observations, row by row, and how to apply it.

A row is its four values (key, entity type, location, last seen); line numbers are not part of it, since a row
inserted near the top moves every line after it. The delta keeps the longest sequence of rows common to both
exports in the same order; everything else is a removed row (an index into the old rows) or an added row (an
index into the new rows). Applying the delta to the old rows (``splice``, column by column) gives the new rows
exactly, in file order, so a system rebuilt from its first observation and its deltas is the same as the export
read whole.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Hashable, Sequence
from itertools import compress, pairwise
from operator import ne, not_
from typing import TypeVar

import attrs
import numpy as np

from keysync.domain.observations import SourceSnapshot

Row = tuple[str, str, str, str]
H = TypeVar("H", bound=Hashable)  # a row, or a line of an export
T = TypeVar("T")


@attrs.frozen
class RowDelta:
    removed: list[int]  # indexes into the old rows, ascending
    added: list[int]  # indexes into the new rows, ascending

    def __bool__(self) -> bool:
        return bool(self.removed or self.added)

    def __len__(self) -> int:
        return len(self.removed) + len(self.added)


def rows_of(snapshot: SourceSnapshot) -> list[Row]:
    return list(zip(snapshot.keys, snapshot.entity_types, snapshot.location_refs, snapshot.last_seen_at, strict=True))


def snapshot_delta(old: SourceSnapshot, new: SourceSnapshot) -> RowDelta:
    """The delta between two exports of a system. First by line number, column by column without building rows:
    an export edited in place keeps its other rows on their lines, and rows on the same line in both, with the
    same values, are kept (in order, since lines only increase). When lines moved (rows inserted or deleted above
    others), by content: ``row_delta``. Either way, applying the delta gives the new rows exactly."""
    by_line = _line_delta(old, new)
    if len(by_line) <= len(new) // 10:
        return by_line
    by_content = row_delta(rows_of(old), rows_of(new))
    return by_content if len(by_content) < len(by_line) else by_line


def _line_delta(old: SourceSnapshot, new: SourceSnapshot) -> RowDelta:
    if old.lines == new.lines:
        old_at = new_at = np.arange(len(old))
    else:  # rows on the same line in both (lines ascend, one row per line)
        _, old_at, new_at = np.intersect1d(old.lines, new.lines, assume_unique=True, return_indices=True)
    same = np.ones(len(old_at), dtype=bool)
    olds, news = old_at.tolist(), new_at.tolist()
    for before, after in _columns(old, new):
        if old_at is new_at and before == after:
            continue
        # Compared in C: the values on each common line, column by column.
        pairs = map(ne, map(before.__getitem__, olds), map(after.__getitem__, news))
        same &= ~np.fromiter(pairs, dtype=bool, count=len(olds))
    return RowDelta(_not_in(len(old), old_at[same]), _not_in(len(new), new_at[same]))


def _not_in(n: int, kept: np.ndarray) -> list[int]:
    """The indexes below n that are not in ``kept``, ascending."""
    mask = np.ones(n, dtype=bool)
    mask[kept] = False
    return np.flatnonzero(mask).tolist()


def _columns(old: SourceSnapshot, new: SourceSnapshot) -> list[tuple[list[str], list[str]]]:
    return [
        (old.keys, new.keys),
        (old.entity_types, new.entity_types),
        (old.location_refs, new.location_refs),
        (old.last_seen_at, new.last_seen_at),
    ]


def row_delta(old: Sequence[H], new: Sequence[H]) -> RowDelta:
    """The rows removed from ``old`` and added in ``new``; every other row is kept, in the same order."""
    if len(old) == len(new) and old == new:
        return RowDelta([], [])
    quick = _in_order(old, new)
    if quick is not None:
        return quick
    unused: dict[H, list[int]] = {}
    for i in range(len(old) - 1, -1, -1):  # reversed, so that pop() hands out the earliest occurrence
        unused.setdefault(old[i], []).append(i)
    pairs: list[tuple[int, int]] = []  # (new index, old index) of rows found in both
    for j, row in enumerate(new):
        found = unused.get(row)
        if found:
            pairs.append((j, found.pop()))
    if not all(a[1] < b[1] for a, b in pairwise(pairs)):
        pairs = _longest_increasing(pairs)  # rows moved: keep the most that stay in order
    kept_old = {i for _, i in pairs}
    kept_new = {j for j, _ in pairs}
    return RowDelta(
        [i for i in range(len(old)) if i not in kept_old],
        [j for j in range(len(new)) if j not in kept_new],
    )


def _in_order(old: Sequence[H], new: Sequence[H]) -> RowDelta | None:
    """The usual case at set speed: the rows found in both exports come in the same order, as often as each
    other (a row may repeat). None when that is not so. (compress and map keep the loops in C.)"""
    in_new = list(map(set(new).__contains__, old))
    in_old = list(map(set(old).__contains__, new))
    if list(compress(old, in_new)) != list(compress(new, in_old)):
        return None
    return RowDelta(
        list(compress(range(len(old)), map(not_, in_new))),
        list(compress(range(len(new)), map(not_, in_old))),
    )


def _longest_increasing(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The longest subsequence of ``pairs`` whose old indexes increase (patience sorting, O(n log n))."""
    tails: list[int] = []  # tails[k]: the smallest old index ending an increasing run of length k + 1
    ends: list[int] = []  # ends[k]: the position in pairs of that run's last pair
    before = [-1] * len(pairs)
    for position, (_, old) in enumerate(pairs):
        k = bisect_left(tails, old)
        if k == len(tails):
            tails.append(old)
            ends.append(position)
        else:
            tails[k] = old
            ends[k] = position
        before[position] = ends[k - 1] if k else -1
    chosen = []
    position = ends[-1] if ends else -1
    while position >= 0:
        chosen.append(pairs[position])
        position = before[position]
    return chosen[::-1]


def splice(old: Sequence[T], removed: Sequence[int], added_at: Sequence[int], added: Sequence[T]) -> list[T]:
    """``old`` without the ``removed`` indexes (ascending), with ``added[k]`` at index ``added_at[k]`` (ascending)
    of the result. Copies whole runs between the changes, so that a few changes in a long column cost little."""
    if removed == added_at:  # rows replaced in place (an export edited line by line): overwrite them
        out = list(old)
        for i, value in zip(added_at, added, strict=True):
            out[i] = value
        return out
    kept: list[T] = []
    start = 0
    for i in removed:
        kept.extend(old[start:i])
        start = i + 1
    kept.extend(old[start:])
    if not added:
        return kept
    out: list[T] = []
    taken = 0
    for at, value in zip(added_at, added, strict=True):
        run = at - len(out)
        out.extend(kept[taken : taken + run])
        taken += run
        out.append(value)
    out.extend(kept[taken:])
    return out

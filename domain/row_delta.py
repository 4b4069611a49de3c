"""What changed in a system's export between two observations, row by row, and how to apply it.

A row is its four values (key, entity type, location, last seen); line numbers are not part of it, since a row
inserted near the top moves every line after it. The delta keeps the longest sequence of rows common to both
exports in the same order; everything else is a removed row (an index into the old rows) or an added row (an
index into the new rows). Applying the delta to the old rows gives the new rows exactly, in file order, so a
system rebuilt from its first observation and its deltas is the same as the export read whole.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from itertools import pairwise

import attrs

from keysync.domain.observations import SourceSnapshot

Row = tuple[str, str, str, str]


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


def row_delta(old: Sequence[Row], new: Sequence[Row]) -> RowDelta:
    """The rows removed from ``old`` and added in ``new``; every other row is kept, in the same order."""
    if len(old) == len(new) and old == new:
        return RowDelta([], [])
    quick = _without_repeats(old, new)
    if quick is not None:
        return quick
    unused: dict[Row, list[int]] = {}
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


def _without_repeats(old: Sequence[Row], new: Sequence[Row]) -> RowDelta | None:
    """The usual case at set speed: no row occurs twice in either export, and the rows in both are in the same
    order. None when that is not so."""
    old_rows, new_rows = set(old), set(new)
    if len(old_rows) != len(old) or len(new_rows) != len(new):
        return None
    if [r for r in old if r in new_rows] != [r for r in new if r in old_rows]:
        return None
    return RowDelta(
        [i for i, r in enumerate(old) if r not in new_rows],
        [j for j, r in enumerate(new) if r not in old_rows],
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


def apply_delta(old: Sequence[Row], removed: Sequence[int], added_at: Sequence[int], added: Sequence[Row]) -> list[Row]:
    """The new rows: ``old`` without the ``removed`` indexes, with ``added[k]`` placed at index ``added_at[k]``."""
    gone = set(removed)
    kept = iter([row for i, row in enumerate(old) if i not in gone])
    slots = dict(zip(added_at, added, strict=True))
    size = len(old) - len(gone) + len(added)
    return [slots[j] if j in slots else next(kept) for j in range(size)]

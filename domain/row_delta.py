"""An export's rows as a delta on the rows of the export before it: the rows removed, and the rows added with
where they stand. Rows compare by a 128-bit hash of their values (two uint64 columns), which the caller works
out; the k-th of equal rows in the base pairs with the k-th in the new rows, so duplicates pair off in order.

Rows keep their order in a delta: a row moved is said as removed and added. Duplicate rows pair off in order
unless that puts the rows out of order (a duplicate removed before its twin): then they are left unpaired, and
what is still out of order was moved. An export sorted another way is then mostly removed and added: the caller
records it whole.
"""

from __future__ import annotations

import attrs
import numpy as np


@attrs.frozen
class RowDelta:
    removed: np.ndarray  # positions in the base, ascending
    added_at: np.ndarray  # positions in the new rows, ascending

    @property
    def size(self) -> int:
        return len(self.removed) + len(self.added_at)


def row_delta(base: np.ndarray, new: np.ndarray) -> RowDelta:
    """The delta turning rows hashed ``base`` into rows hashed ``new`` (each an (n, 2) uint64 array)."""
    pairs = _pairs(base, new)  # for each new row, the base row it equals, or -1
    if not _in_order(pairs):
        # A duplicate removed before its twin pairs the twin with the wrong row: duplicated rows stay unpaired
        # (they are said again as removed and added). What is still out of order was moved.
        pairs[_repeated(base, new)] = -1
        if not _in_order(pairs):
            pairs[~_kept_in_order(pairs, len(base))] = -1
    removed = np.ones(len(base), dtype=bool)
    removed[pairs[pairs >= 0]] = False
    return RowDelta(np.flatnonzero(removed), np.flatnonzero(pairs < 0))


def _in_order(pairs: np.ndarray) -> bool:
    kept = pairs[pairs >= 0]
    return len(kept) < 2 or bool((np.diff(kept) > 0).all())


def _kept_in_order(pairs: np.ndarray, size: int) -> np.ndarray:
    """Pairs in the base's order: those above every pair before them, or those below every pair after them,
    whichever keeps more (a row moved to the end, or to the start, then costs itself alone)."""
    paired = pairs >= 0
    low = np.where(paired, pairs, -1)
    from_start = paired & (pairs > np.maximum.accumulate(np.concatenate(([-1], low[:-1]))))
    high = np.where(paired, pairs, size)
    from_end = paired & (pairs < np.minimum.accumulate(np.concatenate((high[1:], [size]))[::-1])[::-1])
    return from_start if from_start.sum() >= from_end.sum() else from_end


def _repeated(base: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Which new rows have a hash that more than one row holds, among the new rows or among the base's. The
    repeated hashes are few: each new row looks its hash up among them (looking every row up in a sorted array of
    all rows would cost a cache miss per step, a minute at ten million rows)."""
    found = new[:, 0]
    held = []
    for side in (base[:, 0], found):
        ordered = np.sort(side)
        held.append(ordered[1:][ordered[1:] == ordered[:-1]])
    repeated = np.unique(np.concatenate(held))
    if not len(repeated):
        return np.zeros(len(found), dtype=bool)
    at = np.minimum(np.searchsorted(repeated, found), len(repeated) - 1)
    return repeated[at] == found


# Rows from which pairing by a hash table pays for importing pandas, which has one.
_LOOKUP_ROWS = 100_000


def _pairs(base: np.ndarray, new: np.ndarray, lookup_rows: int = _LOOKUP_ROWS) -> np.ndarray:
    """Pair the k-th new row of each hash with the k-th base row of that hash (both in row order); a pair stands
    only if the second half of the hash agrees too. Where no hash repeats on either side (no duplicate rows: the
    common case), each new row looks its hash up in a hash table of the base's; else rows are sorted by hash."""
    pairs = np.full(len(new), -1, dtype=np.int64)
    if not len(base) or not len(new):
        return pairs
    if len(base) >= lookup_rows:
        import pandas as pd

        before = pd.Index(base[:, 0])
        if before.is_unique and pd.Index(new[:, 0]).is_unique:
            partners = before.get_indexer(new[:, 0])
            found = partners >= 0
            found[found] = base[partners[found], 1] == new[found, 1]
            return np.where(found, partners, -1)
    base_order, new_order = _by_hash(base[:, 0]), _by_hash(new[:, 0])
    sorted_base, sorted_new = base[base_order, 0], new[new_order, 0]
    # Each new row's rank among the new rows of its hash, and where that hash's rows stand among the base's.
    rank = np.arange(len(new)) - np.searchsorted(sorted_new, sorted_new, side="left")
    first = np.searchsorted(sorted_base, sorted_new, side="left")
    last = np.searchsorted(sorted_base, sorted_new, side="right")
    found = rank < last - first
    rows, partners = new_order[found], base_order[first[found] + rank[found]]
    same = base[partners, 1] == new[rows, 1]
    pairs[rows[same]] = partners[same]
    return pairs


def _by_hash(hashes: np.ndarray) -> np.ndarray:
    """The rows in hash order, rows of equal hashes in row order. An unstable sort is four times as fast as a
    stable one here, and rows of equal hashes (duplicate rows) are few: only they are put in order afterwards."""
    order = np.argsort(hashes)
    ordered = hashes[order]
    equal = ordered[1:] == ordered[:-1]
    if equal.any():
        tied = np.flatnonzero(np.concatenate(([False], equal)) | np.concatenate((equal, [False])))
        order[tied] = order[tied][np.lexsort((order[tied], ordered[tied]))]
    return order

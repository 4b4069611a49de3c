"""A changed export as the lines that changed: the rows of the new export without parsing the rest of it.

When an export holds one record per line (no quoted field runs over a line end), every line is a record, a
rejected row or a blank line on its own. The reader then compares the new export with the one it read before
line by line and parses only the lines removed and the lines added; ``apply_line_changes`` takes the earlier
export's rows, drops the removed lines' rows, renumbers the kept ones and puts the added ones in place. The
result is the snapshot a whole read gives, and the row delta comes with it, without comparing rows.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence

import attrs
import numpy as np

from keysync.domain.observations import Fingerprint, SourceSnapshot
from keysync.domain.row_delta import RowDelta, splice


@attrs.frozen
class LineChanges:
    """What changed between two reads of an export, line by line (the header, line 1, is the same in both).

    ``removed`` are the earlier export's removed lines parsed on their own, ``added`` the new export's added
    lines; both carry their real line numbers. Every other line is kept: the k-th kept line of the earlier export
    is the k-th kept line of the new one."""

    system: str
    file: str
    fingerprint: Fingerprint
    old_line_count: int  # physical lines, the header included
    new_line_count: int
    removed_lines: list[int]  # ascending
    added_lines: list[int]  # ascending
    removed: SourceSnapshot
    added: SourceSnapshot


def apply_line_changes(base: SourceSnapshot, changes: LineChanges) -> tuple[SourceSnapshot, RowDelta] | None:
    """The new export's snapshot and its row delta from ``base`` (the earlier export's snapshot). None when the
    removed lines do not hold what ``base`` has on them: the changes were not taken against this base."""
    kept_count = changes.old_line_count - len(changes.removed_lines)
    if kept_count != changes.new_line_count - len(changes.added_lines):
        return None
    gone = _rows_on(base.lines, changes.removed_lines)
    if not _same_rows(base, gone, changes.removed) or not _same_rejections(base, changes):
        return None
    renumber = _renumbering(changes)
    kept_lines = splice(base.lines, gone, [], [])
    if renumber is not None:
        kept_lines = renumber(np.asarray(kept_lines, dtype=np.int64)).tolist()
    added = changes.added
    added_at = [bisect_left(kept_lines, line) + k for k, line in enumerate(added.lines)]
    removed_lines = set(changes.removed_lines)
    kept_rejected = [r for r in base.rejected if r.line not in removed_lines]
    if renumber is not None and kept_rejected:
        new_lines = renumber(np.asarray([r.line for r in kept_rejected], dtype=np.int64)).tolist()
        kept_rejected = [attrs.evolve(r, line=n) for r, n in zip(kept_rejected, new_lines, strict=True)]
    snapshot = SourceSnapshot(
        system=base.system,
        file=changes.file,
        rows_read=base.rows_read - changes.removed.rows_read + added.rows_read,
        keys=splice(base.keys, gone, added_at, added.keys),
        entity_types=splice(base.entity_types, gone, added_at, added.entity_types),
        location_refs=splice(base.location_refs, gone, added_at, added.location_refs),
        last_seen_at=splice(base.last_seen_at, gone, added_at, added.last_seen_at),
        lines=splice(kept_lines, [], added_at, added.lines),
        rejected=sorted([*kept_rejected, *added.rejected], key=lambda r: r.line),
        fingerprint=changes.fingerprint,
    )
    return snapshot, RowDelta(gone, added_at)


def _rows_on(row_lines: Sequence[int], lines: Sequence[int]) -> list[int]:
    """The indexes of the rows on ``lines`` (row_lines ascending: one row per line at most)."""
    found = []
    for line in lines:
        i = bisect_left(row_lines, line)
        if i < len(row_lines) and row_lines[i] == line:
            found.append(i)
    return found


def _same_rows(base: SourceSnapshot, rows: list[int], removed: SourceSnapshot) -> bool:
    if [base.lines[i] for i in rows] != removed.lines:
        return False
    return all(
        [column[i] for i in rows] == other
        for column, other in (
            (base.keys, removed.keys),
            (base.entity_types, removed.entity_types),
            (base.location_refs, removed.location_refs),
            (base.last_seen_at, removed.last_seen_at),
        )
    )


def _same_rejections(base: SourceSnapshot, changes: LineChanges) -> bool:
    lines = set(changes.removed_lines)
    before = [(r.line, r.severity, r.reason, r.raw) for r in base.rejected if r.line in lines]
    return before == [(r.line, r.severity, r.reason, r.raw) for r in changes.removed.rejected]


def _renumbering(changes: LineChanges) -> Callable[[np.ndarray], np.ndarray] | None:
    """Old line numbers of kept lines -> their new numbers; None when every kept line keeps its number."""
    if changes.removed_lines == changes.added_lines:
        return None
    removed = np.asarray(changes.removed_lines, dtype=np.int64)
    kept = np.ones(changes.new_line_count + 1, dtype=bool)
    kept[changes.added_lines] = False
    kept_new = np.flatnonzero(kept[2:]) + 2  # the new export's kept data lines
    # A kept line's rank among the kept lines is the same in both exports.
    return lambda old: kept_new[old - 2 - np.searchsorted(removed, old)]

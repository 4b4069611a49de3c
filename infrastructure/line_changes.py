"""Which lines of a changed CSV export are new and which are gone, found before any line is parsed.

A reader asked to (``read_source(..., keep_lines=True)``) hashes every physical line of the export, the header
first, with two of DuckDB's 64-bit hashes (of the line's bytes with its line end, and of them with one more byte),
and notes which lines are blank. An incremental run hands the reader the rows of the export before, with those
hashes (``since``): the lines pair off with the earlier ones as rows do in keysync.domain.row_delta, and only the
lines added are parsed, behind the header, by the same parser and checks as a whole export. The rows of the lines
kept are the earlier rows, renumbered to where their lines stand now.

Read this way, an export gives what reading it whole gives: the same rows, rejected rows and counts (a property
test holds the two together). Where lines and records could differ it is read whole instead: when the header
changed, or when a line holds an odd number of quotes (a quoted field running over a line end).
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import numpy as np
import pyarrow as pa

from keysync.domain.observations import ExportLines, RejectedRow, SourceSnapshot
from keysync.domain.row_delta import RowDelta, row_delta
from keysync.domain.run import spliced
from keysync.infrastructure.sources import BLANKS, PhysicalLines, is_blank

_HASHES = "SELECT hash(line) AS a, hash(line || '\\x1F'::BLOB) AS b FROM export_lines"


def export_lines(lines: PhysicalLines) -> ExportLines:
    """Each physical line's two hashes, and which lines are blank."""
    import duckdb

    offsets = pa.py_buffer(np.r_[0, lines.ends].astype(np.int64))
    view = pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(lines), [None, offsets, pa.py_buffer(lines.view)])
    # One thread: exports are read side by side, each in a thread of its own.
    with duckdb.connect(config={"threads": 1}) as connection:
        connection.register("export_lines", pa.table({"line": view}))
        found = connection.sql(_HASHES).to_arrow_table()
    hashes = np.empty((len(lines), 2), dtype=np.uint64)
    for i, name in enumerate(("a", "b")):
        hashes[:, i] = found.column(name).to_numpy()
    blank = np.zeros(len(lines), dtype=bool)
    if len(lines):  # a blank line starts with a blank byte: only those few are looked at
        candidates = np.flatnonzero(np.isin(lines.first_bytes(), list(BLANKS)))
        blank[[i for i in candidates.tolist() if is_blank(lines[i])]] = True
    spanning = lines.find(b'"') >= 0 and bool((lines.count_per_line(b'"') % 2).any())
    return ExportLines(hashes, blank, spanning)


Parse = Callable[[bytes], SourceSnapshot]


def read_changes(lines: PhysicalLines, now: ExportLines, since: SourceSnapshot, parse: Parse) -> SourceSnapshot | None:
    """The export whose ``lines`` hash to ``now``, from the rows of the export ``since`` (read with its lines)
    and the lines added since, parsed by ``parse`` (which reads an export's bytes, header first); None when it must
    be read whole: the header changed, a record may run over a line end, or most lines changed."""
    before = since.export_lines
    if before is None or before.spanning or now.spanning or not len(before) or not len(now):
        return None
    if not (before.hashes[0] == now.hashes[0]).all():  # the header changed: the columns may mean other things
        return None
    found = row_delta(before.hashes, now.hashes)
    if 2 * found.size >= len(now) or (len(found.removed) and found.removed[0] == 0) or 0 in found.added_at[:1]:
        return None
    added = found.added_at
    part = parse(_with_header(lines, added))
    # The part's line k (the header is line 1) is the export's line added[k - 2] + 1.
    renumber = np.r_[0, 0, added + 1]
    old_lines = since.rows.column("line").to_numpy()
    removed_line = np.zeros(len(before), dtype=bool)
    removed_line[found.removed] = True
    gone = np.flatnonzero(removed_line[old_lines - 1])  # the earlier rows whose lines are gone
    now_at = np.full(len(before), -1, dtype=np.int64)  # each earlier line kept: where it stands now
    kept_now = np.ones(len(now), dtype=bool)
    kept_now[added] = False
    now_at[~removed_line] = np.flatnonzero(kept_now)
    kept_lines = now_at[np.delete(old_lines, gone) - 1] + 1
    added_lines = renumber[part.rows.column("line").to_numpy()]
    line_numbers = np.sort(np.concatenate([kept_lines, added_lines]))
    at = np.searchsorted(line_numbers, added_lines)
    rows = spliced(since.rows, [gone], [part.rows.append_column("at", pa.array(at, pa.int64()))], line_numbers)
    if rows is None:  # cannot happen: the delta is built to fit
        raise RuntimeError(f"{part.file}: the changed lines do not fit the rows before")
    rejected = [
        *(
            attrs.evolve(r, file=part.file, line=int(now_at[r.line - 1]) + 1)
            for r in since.rejected
            if not removed_line[r.line - 1]
        ),
        *(attrs.evolve(r, line=int(renumber[r.line])) for r in part.rejected),
    ]
    rejected.sort(key=_line_order)
    rows_read = since.rows_read - int((~before.blank[found.removed]).sum()) + part.rows_read
    return attrs.evolve(part, rows_read=rows_read, rows=rows, rejected=rejected, export_lines=now,
                        delta=RowDelta(gone, at))  # fmt: skip


def _with_header(lines: PhysicalLines, chosen: np.ndarray) -> bytes:
    """The header and the chosen lines (sorted, none the header), each ended by a line end."""
    body = bytes(lines.join(chosen))
    if body and body[-1:] not in (b"\n", b"\r"):  # the file's last line, without a line end
        body += b"\n"
    return lines[0] + body


def _line_order(row: RejectedRow) -> int:
    return row.line

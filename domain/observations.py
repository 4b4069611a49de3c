"""What reading one system's export yields: the accepted rows, column by column, and the rejected ones."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from keysync.domain.row_delta import RowDelta

SYSTEMS = ("A", "B", "C", "D", "E")
AUTHORITY = "A"
DOWNSTREAM = SYSTEMS[1:]


@attrs.frozen
class RejectedRow:
    """A row that could not be used (severity error) or was used with a caveat (severity warning)."""

    system: str
    file: str
    line: int  # 1-based physical line number in the file (the header is line 1)
    severity: str  # "error" | "warning"
    reason: str
    raw: str  # the line as read, control characters escaped, so it is safe to print


@attrs.frozen
class Fingerprint:
    """Identifies a source file's content, so an unchanged file can be recognised."""

    size: int
    mtime_ns: int
    sha256: str

    def same_content(self, other: Fingerprint) -> bool:
        """Whether both are of the same bytes: a file written again unchanged has a new mtime, the same content."""
        return (self.size, self.sha256) == (other.size, other.sha256)


@attrs.frozen(eq=False)
class ExportLines:
    """An export's physical lines, the header first: two 64-bit hashes of each (an (n, 2) uint64 array), whether
    each is blank, and whether a record may run over a line end (a line holds an odd number of quotes). The next
    incremental run pairs a changed export's lines with these, and parses only the lines that are new
    (keysync.infrastructure.line_changes)."""

    hashes: np.ndarray
    blank: np.ndarray
    spanning: bool = False

    def __len__(self) -> int:
        return len(self.hashes)


ROW_COLUMNS = ("key", "entity_type", "location_ref", "last_seen_at", "line")


def row_schema() -> pa.Schema:
    """The columns of an export's accepted rows: the four values of the contract, and the row's file line."""
    import pyarrow as pa

    return pa.schema([*((name, pa.string()) for name in ROW_COLUMNS[:-1]), ("line", pa.int64())])


def _single_chunks(rows: pa.Table) -> pa.Table:
    return rows if all(c.num_chunks <= 1 for c in rows.columns) else rows.combine_chunks()


@attrs.frozen
class SourceSnapshot:
    """Every accepted row of one system's export, as an Arrow table of ROW_COLUMNS (one chunk per column), and the
    rejected rows. ``last_seen_at`` holds ISO 8601 timestamps with a UTC offset, or "" when absent or unparseable.
    ``rows_read`` counts data records (not the header, not blank lines); rejected errors are among them.
    """

    system: str
    file: str
    rows_read: int
    rows: pa.Table = attrs.field(converter=_single_chunks)
    rejected: list[RejectedRow]
    fingerprint: Fingerprint | None = None
    export_lines: ExportLines | None = attrs.field(default=None, eq=False)  # when the reader hashed its lines
    # When the export was read as what changed on the rows of an earlier export (its ``export_lines`` given to
    # the reader): the rows of that export gone, and where the new ones stand among these rows.
    delta: RowDelta | None = attrs.field(default=None, eq=False)

    @classmethod
    def of(
        cls,
        system: str,
        file: str,
        rows_read: int,
        keys: Sequence[str],
        entity_types: Sequence[str],
        location_refs: Sequence[str],
        last_seen_at: Sequence[str],
        lines: Sequence[int],
        rejected: list[RejectedRow],
        fingerprint: Fingerprint | None = None,
    ) -> SourceSnapshot:
        """A snapshot from Python lists, one per column (the sandbox's rows, tests)."""
        import pyarrow as pa

        columns = [pa.array(list(c), pa.string()) for c in (keys, entity_types, location_refs, last_seen_at)]
        table = pa.table([*columns, pa.array(list(lines), pa.int64())], schema=row_schema())
        return cls(system, file, rows_read, table, rejected, fingerprint)

    def column(self, name: str) -> pa.Array:
        column = self.rows.column(name)
        return column.chunk(0) if column.num_chunks else column.combine_chunks()

    @property
    def keys(self) -> pa.Array:
        return self.column("key")

    @property
    def entity_types(self) -> pa.Array:
        return self.column("entity_type")

    @property
    def location_refs(self) -> pa.Array:
        return self.column("location_ref")

    @property
    def last_seen_at(self) -> pa.Array:
        return self.column("last_seen_at")

    @property
    def lines(self) -> pa.Array:
        return self.column("line")

    def __len__(self) -> int:
        return self.rows.num_rows


class SourceUnavailable(Exception):
    """A system's export could not be read at all (missing, unreadable, unusable); the message says why."""


class SourceRefused(SourceUnavailable):
    """An export that will not be read however often it is tried: missing, not a regular file, not in the expected
    format, without a source_key column, or larger than the configured limit. (Plain SourceUnavailable is an I/O
    error, which may pass.)"""

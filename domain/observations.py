"""What reading one system's export yields: the accepted rows, column by column, and the rejected ones."""

from __future__ import annotations

import attrs

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


@attrs.frozen
class SourceSnapshot:
    """Every accepted row of one system's export, stored column-wise (cheap to batch into events).

    All column lists have the same length; ``lines[i]`` is the file line of row i.
    ``last_seen_at`` holds ISO 8601 timestamps with a UTC offset, or "" when absent or unparseable.
    ``rows_read`` counts data records (not the header, not blank lines); rejected errors are among them.
    """

    system: str
    file: str
    rows_read: int
    keys: list[str]
    entity_types: list[str]
    location_refs: list[str]
    last_seen_at: list[str]
    lines: list[int]
    rejected: list[RejectedRow]
    fingerprint: Fingerprint | None = None

    def __len__(self) -> int:
        return len(self.keys)


class SourceUnavailable(Exception):
    """A system's export could not be read at all (missing, unreadable, unusable); the message says why."""


class SourceRefused(SourceUnavailable):
    """An export that will not be read however often it is tried: missing, not a regular file, not in the expected
    format, without a source_key column, or larger than the configured limit. (Plain SourceUnavailable is an I/O
    error, which may pass.)"""

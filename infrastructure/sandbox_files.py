"""The sandbox's five CSV files: written beside their targets, read back with the real reader, then renamed in.

The check reads each temporary file with ``read_source``, the reader ``keysync run`` uses, and compares every
column and every rejection with what the sandbox expects, so a file that would read differently (a header, a
field count, an encoding problem, a reader rule the sandbox got wrong) never replaces the current one.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs

from keysync.application.sandbox_ports import SandboxFilesError
from keysync.domain.observations import SourceSnapshot, SourceUnavailable
from keysync.domain.sandbox_rows import Row, file_key
from keysync.infrastructure.report_files import temporary_beside
from keysync.infrastructure.sources import FIELDS, read_source

_COMPARED = {  # SourceSnapshot column -> how a message names it
    "rows_read": "row count",
    "keys": "keys",
    "entity_types": "entity types",
    "location_refs": "location refs",
    "last_seen_at": "last_seen_at values",
    "lines": "line numbers",
}


@attrs.define
class StagedFiles:
    """Temporary files and the targets they replace."""

    moves: list[tuple[Path, Path]] = attrs.Factory(list)

    def commit(self) -> None:
        # Each rename is atomic; the five together are not. A crash between them leaves files behind the log,
        # which the next sandbox command rewrites from the log (every command writes all five).
        for temporary, target in self.moves:
            os.replace(temporary, target)
        self.moves = []

    def discard(self) -> None:
        for temporary, _target in self.moves:
            temporary.unlink(missing_ok=True)
        self.moves = []


def stage_sources(
    files: Mapping[str, Path],
    rows: Mapping[str, Sequence[Row]],
    expected: Mapping[str, SourceSnapshot],
    *,
    max_key_length: int,
) -> StagedFiles:
    """Write and check every system's file; on any failure remove what was written and raise SandboxFilesError."""
    staged = StagedFiles()
    try:
        for system, target in files.items():
            if target.exists() and not target.is_file():  # the rename after the save would fail: refuse before it
                raise SandboxFilesError(f"cannot write {target}: it exists and is not a file; nothing was changed")
            try:
                temporary = _temporary_beside(target)
                staged.moves.append((temporary, target))
                write_rows(temporary, system, rows[system])
            except OSError as error:
                raise SandboxFilesError(
                    f"cannot write {target}: {error.strerror or error}; nothing was changed"
                ) from error
            _check(system, temporary, target, expected[system], max_key_length)
    except BaseException:
        staged.discard()
        raise
    return staged


def _temporary_beside(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = temporary_beside(target)  # removes the ones a killed command left
    os.close(fd)
    return temporary


def write_rows(path: Path, system: str, rows: Sequence[Row]) -> None:
    """One system's export: UTF-8 (undecodable bytes written as the bytes they stand for), RFC 4180 quoting."""
    with path.open("w", encoding="utf-8", errors="surrogateescape", newline="") as handle:
        plain = csv.writer(handle, lineterminator="\n")
        # csv quotes a field holding \n but not one holding a lone \r, which would then split the row in two.
        quoted = csv.writer(handle, lineterminator="\n", quoting=csv.QUOTE_ALL)
        plain.writerow(FIELDS)
        if any("\r" in row[0] for row in rows):
            for row in rows:
                key = file_key(row)
                (quoted if "\r" in key else plain).writerow([system, key, *row[1:4]])
        else:
            plain.writerows([system, file_key(row), *row[1:4]] for row in rows)
        handle.flush()
        os.fsync(handle.fileno())


def _check(system: str, path: Path, target: Path, expected: SourceSnapshot, max_key_length: int) -> None:
    try:
        got = read_source(system, path, "csv", max_key_length=max_key_length)
    except SourceUnavailable as error:
        raise SandboxFilesError(f"{target}: the file written is unreadable ({error}); nothing was changed") from error
    for column, label in _COMPARED.items():
        if getattr(got, column) != getattr(expected, column):
            raise SandboxFilesError(f"{target}: the file written reads back with other {label}; nothing was changed")
    if [(r.line, r.severity, r.reason) for r in got.rejected] != [
        (r.line, r.severity, r.reason) for r in expected.rejected
    ]:
        raise SandboxFilesError(
            f"{target}: the file written reads back with other rejected rows "
            f"({len(got.rejected)} instead of {len(expected.rejected)}); nothing was changed"
        )

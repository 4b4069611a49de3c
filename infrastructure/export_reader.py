"""Reading exports again: a long-lived process (keysync schedule, replay-history) keeps the bytes of each export
it read last, so that when one changes, only the lines that changed are parsed.

Line by line is exact only while every line is a record of its own, so the reader falls back to a whole read
when a quoted field may run over a line end (a line with an odd number of quotes), when the header changed,
when the export is JSON, and when more than half of the lines changed (a whole read is then no slower).
"""

from __future__ import annotations

import threading
from itertools import compress
from operator import ne
from pathlib import Path

import attrs

from keysync.domain.line_changes import LineChanges
from keysync.domain.observations import Fingerprint, SourceSnapshot
from keysync.domain.row_delta import row_delta
from keysync.infrastructure.sources import KINDS, PhysicalLines, SourceFile, parse_export, read_file

# More changed lines than this share of the export: parse it whole.
MAX_CHANGED_SHARE = 0.5
# An export kept for the next comparison is kept split into lines up to this size (a line costs some 40 bytes
# more as an object of its own); a larger one is kept as bytes and split again when compared.
KEEP_LINES_UP_TO = 16 * 1024 * 1024


class ExportReader:
    """``read`` and ``read_changes`` for the application. With ``keep`` (a process that runs again), the bytes of
    the export ``read_changes`` read last for each system are kept (one copy per system) for the next call;
    ``read``, which full runs use, keeps nothing."""

    def __init__(self, max_file_mb: int = 2048, *, keep: bool = True) -> None:
        self.max_file_mb = max_file_mb
        self.keep = keep
        # system -> (path, sha256, bytes or lines) of its last export, if that had one record a line
        self._last: dict[str, tuple[str, str, bytes | list[bytes]]] = {}
        self._lock = threading.Lock()

    def read(self, system: str, path: Path, kind: str = "csv", *, max_key_length: int = 256) -> SourceSnapshot:
        """The whole export's snapshot (keysync.infrastructure.sources.read_source)."""
        source, data, fingerprint = self._load(system, path, kind)
        return parse_export(source, kind, data, fingerprint, max_key_length)

    def read_changes(
        self, system: str, path: Path, kind: str, since: Fingerprint | None, *, max_key_length: int = 256
    ) -> SourceSnapshot | LineChanges:
        """The lines changed since the export with fingerprint ``since`` was read, when this reader read that
        export last and the changes can be taken line by line; else (and when ``since`` is None) the whole
        export's snapshot."""
        source, data, fingerprint = self._load(system, path, kind)
        single = kind == "csv" and not _multi_line(data)
        kept: bytes | list[bytes] = data
        with self._lock:
            earlier = self._last.pop(system, ("", "", b""))
        if single and since is not None and earlier[:2] == (str(path), since.sha256):
            lines = _lines(data)
            changes = _line_changes(source, _lines(earlier[2]), lines, fingerprint, max_key_length)
            if len(data) <= KEEP_LINES_UP_TO:
                kept = lines  # the next comparison need not split it again
        else:
            changes = None
        if single and self.keep:
            with self._lock:
                self._last[system] = (str(path), fingerprint.sha256, kept)
        if changes is not None:
            return changes
        return parse_export(source, kind, data, fingerprint, max_key_length)

    def _load(self, system: str, path: Path, kind: str) -> tuple[SourceFile, bytes, Fingerprint]:
        if kind not in KINDS:
            raise ValueError(f"unknown source kind {kind!r}, expected one of {KINDS}")
        data, fingerprint = read_file(Path(path), self.max_file_mb)
        return SourceFile(system, str(path)), data, fingerprint


def _line_changes(
    source: SourceFile, old_lines: list[bytes], new_lines: list[bytes], fingerprint: Fingerprint, max_key_length: int
) -> LineChanges | None:
    if not old_lines or not new_lines or old_lines[0] != new_lines[0]:
        return None
    limit = MAX_CHANGED_SHARE * (len(old_lines) + len(new_lines))
    removed: list[int] = []
    if len(old_lines) == len(new_lines):  # edited in place? Compare line by line, at C speed
        removed = list(compress(range(2, len(old_lines) + 1), map(ne, old_lines[1:], new_lines[1:])))
        added = removed
    if len(old_lines) != len(new_lines) or 2 * len(removed) > limit:  # lines inserted or deleted (a rolling export)
        delta = row_delta(old_lines[1:], new_lines[1:])
        removed, added = [i + 2 for i in delta.removed], [j + 2 for j in delta.added]
    if len(removed) + len(added) > limit:
        return None
    header = old_lines[0]
    removed_text = [old_lines[line - 1] for line in removed]
    added_text = [new_lines[line - 1] for line in added]
    if any(_ends_with_lone_cr(line) for line in (header, *removed_text, *added_text)):
        return None  # joined to a line that starts with "\n", it would end as one "\r\n" line, not two
    return LineChanges(
        system=source.system,
        file=source.file,
        fingerprint=fingerprint,
        old_line_count=len(old_lines),
        new_line_count=len(new_lines),
        removed_lines=removed,
        added_lines=added,
        removed=_parse_lines(source, header, removed_text, removed, fingerprint, max_key_length),
        added=_parse_lines(source, header, added_text, added, fingerprint, max_key_length),
    )


def _lines(data: bytes | list[bytes]) -> list[bytes]:
    # bytes.splitlines ends lines at \r\n, \r and \n, as the CSV reader does.
    return data if isinstance(data, list) else data.splitlines(keepends=True)


def _ends_with_lone_cr(line: bytes) -> bool:
    return line.endswith(b"\r")  # a "\r\n" line ends with "\n"


def _multi_line(data: bytes) -> bool:
    """Whether some line has an odd number of quotes: a quoted field may run over its end."""
    return b'"' in data and bool((PhysicalLines(data).count_per_line(b'"') % 2).any())


def _parse_lines(
    source: SourceFile, header: bytes, text: list[bytes], lines: list[int], fingerprint: Fingerprint, limit: int
) -> SourceSnapshot:
    """``text`` (whole lines) parsed under ``header``, numbered as the ``lines`` they are in the export. Only the
    export's last line can lack its line end, and it stays last here too."""
    parsed = parse_export(source, "csv", header + b"".join(text), fingerprint, limit)
    real = [0, 0, *lines]  # line k of the parsed text is export line real[k]
    return attrs.evolve(
        parsed,
        lines=[real[k] for k in parsed.lines],
        rejected=[attrs.evolve(r, line=real[r.line]) for r in parsed.rejected],
    )

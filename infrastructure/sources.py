"""Reading one system's export (CSV or JSON) into a SourceSnapshot, validating it row by row.

A bad row is rejected and reported; every other row is still used. Only a file that cannot be used at all
(missing, unreadable, no usable header, a JSON array that does not parse) raises SourceUnavailable: as
SourceRefused, not worth another attempt, unless an I/O error was the cause.

Reading has two stages. The format modules (csv_source, json_source) turn bytes into ``ParsedRows``: string
columns of the structurally sound rows, plus the structural rejections. This module then applies the field
rules to all rows at once and builds the snapshot.

Speed matters (a full run reads five files of ~1M rows), so no per-row Python runs for clean rows: the
format modules hand clean lines to pyarrow's parsers and parse only suspicious lines one by one; the field
rules (control characters, empty or long keys, foreign source_system) run vectorized, on the UTF-8 bytes
with numpy or with pyarrow.compute, as a pre-filter whose hits ``_row_problem`` confirms with the plain Python
definition (the domain's ``key_problem``, then the system); last_seen_at values already in canonical UTC form
are recognised on their bytes, and only the others are parsed, once per value. Memory matters as much: the
file's bytes and the parsed table go as soon as the snapshot's columns are built from them.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from stat import S_ISBLK, S_ISCHR, S_ISDIR, S_ISFIFO, S_ISREG, S_ISSOCK
from typing import BinaryIO

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# SourceUnavailable is the domain's, where the application catches it; raised here, its message names the file.
from keysync.application.bulk import collector_paused
from keysync.domain.keys import CONTROL_CLASS, key_problem
from keysync.domain.observations import (
    Fingerprint,
    RejectedRow,
    SourceRefused,
    SourceSnapshot,
    SourceUnavailable,
    row_schema,
)

__all__ = ["SourceUnavailable", "read_source"]

FIELDS = ("source_system", "source_key", "entity_type", "location_ref", "last_seen_at")
KEY = "source_key"
KINDS = ("csv", "json")
BLANKS = b" \t\r\n"  # what a blank line may hold

_BOM = b"\xef\xbb\xbf"
_MB = 1 << 20
_RAW_LIMIT = 200  # characters of a rejected line kept in the report
RAW_KEEP = _RAW_LIMIT + 1  # characters of a row's text that show it as ``printable`` does: the rest is never copied
_CHUNK = 1 << 22  # bytes looked at in one go when counting per line

# Characters escaped in reports: control characters (tab too) and lone surrogates (undecodable bytes).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# Lone surrogates: bytes that were not UTF-8 (kept by surrogateescape), or a JSON \udXXX escape.
UNDECODABLE = re.compile("[\ud800-\udfff]")

# last_seen_at already canonical (UTC, seconds, calendar-valid; 29 February is left to the full parser); the
# definition, tested on the bytes by _canonical_stamps.
_CANONICAL_UTC = (
    r"^(?:[1-9]\d{3}|0[1-9]\d\d|00[1-9]\d|000[1-9])-"
    r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)|02-(?:0[1-9]|1\d|2[0-8]))"
    r"T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d\+00:00$"
)
_STAMP_WIDTH = 25  # 2026-01-31T10:00:00+00:00
_STAMP_DIGITS = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
_STAMP_SIGNS = [4, 7, 10, 13, 16, 19, 20, 21, 22, 23, 24]
_STAMP_SIGN_BYTES = np.frombuffer(b"--T::+00:00", np.uint8)
_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31, 0], np.int16)  # by month; 0: no month
_STAMP_ROWS = 1 << 16
# Common UTC spellings rewritten to the canonical form before the canonical test (Z, no offset, space).
_UTC_SPELLING = r"^(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(?:Z|\+00:00)?$"
_ISO_START = re.compile(r"\s*\d{4}")  # keeps pandas from accepting words such as "now" or "today"
_SUBMICRO_DIGITS = re.compile(r"(\.\d{6})\d+")
# The range of Python's datetime, so that every stored value can be read back by datetime.fromisoformat.
_FIRST_STAMP = np.datetime64("0001-01-01T00:00:00", "us")
_LAST_STAMP = np.datetime64("9999-12-31T23:59:59.999999", "us")


def read_source(
    system: str,
    path: Path,
    kind: str = "csv",
    *,
    max_key_length: int = 256,
    max_file_mb: int = 2048,
    keep_lines: bool = False,
    since: SourceSnapshot | None = None,
) -> SourceSnapshot:
    """Read one system's export: a CSV file, or JSON (an array of objects, or JSON Lines).

    Rows that break a rule are left out and listed in ``rejected`` (severity "error"); rows used with a caveat
    (unparseable last_seen_at) and skipped blank lines are listed with severity "warning".
    Raises SourceUnavailable when the file cannot be used at all, including an empty file (an export that
    lost its header is more likely a failed export than a system without keys) and a file larger than
    ``max_file_mb`` megabytes (MiB), which is not read at all.

    With ``keep_lines``, a CSV export's lines are hashed too (the snapshot's ``export_lines``). Given ``since``, the
    snapshot of an earlier export of the system read with its lines, only the lines added since are parsed, when
    that can be done (keysync.infrastructure.line_changes); the snapshot then says what changed (``delta``).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown source kind {kind!r}, expected one of {KINDS}")
    # The format modules build on the shared pieces below, so they are imported here, not at the top.
    from keysync.infrastructure.csv_source import parse_csv
    from keysync.infrastructure.json_source import parse_json

    source = SourceFile(system, str(path))
    data, fingerprint = read_file(Path(path), max_file_mb)

    def parse_part(part: bytes) -> SourceSnapshot:
        return _snapshot(parse_csv(part, source), source, max_key_length, fingerprint)

    try:
        with collector_paused():
            lines = None
            if kind == "csv" and data and (keep_lines or since is not None):
                from keysync.infrastructure.line_changes import export_lines, read_changes

                physical = PhysicalLines(data)
                lines = export_lines(physical)
                changed = read_changes(physical, lines, since, parse_part) if since is not None else None
                del physical
                if changed is not None:
                    return changed
            rows = parse_csv(data, source) if kind == "csv" else parse_json(data, source)
            del data  # five systems are read at once: each file's bytes go as soon as nothing needs them
            snapshot = _snapshot(rows, source, max_key_length, fingerprint)
            return snapshot if lines is None else attrs.evolve(snapshot, export_lines=lines)
    except MemoryError:
        raise source.unavailable("not enough memory to read it (lower processing.max_file_mb)") from None


# ------------------------------------------------------------------------------------------------------------
# Shared with the format modules


@dataclass(frozen=True)
class SourceFile:
    """The file being read, for whom it is read: makes the rejections and the errors that name it."""

    system: str
    file: str

    def reject(self, line: int, reason: str, raw: str, severity: str = "error") -> RejectedRow:
        return RejectedRow(self.system, self.file, line, severity, reason, printable(raw))

    def unavailable(self, why: str) -> SourceUnavailable:
        """A file that cannot be used as it is (not in the format, no source_key column): another attempt at the
        same bytes would fail the same way, so it is not retried."""
        return SourceRefused(f"{self.file}: {why}")


@dataclass
class ParsedRows:
    """Structurally sound rows, column-wise, before the field rules run.

    ``table`` holds a string column per field present in the source (named as in FIELDS) and an int64 "line".
    """

    table: pa.Table
    # The text of rows (by table index), for reports: at least the first RAW_KEEP characters of each.
    raw_lines: Callable[[Sequence[int]], list[str]]
    rows_read: int
    rejected: list[RejectedRow] = field(default_factory=list)

    def release(self) -> None:
        """Let go of the table and of what ``raw_lines`` holds, once they are no longer needed."""
        self.table = pa.table({})
        self.raw_lines = _no_lines


def _no_lines(indexes: Sequence[int]) -> list[str]:
    raise RuntimeError("the rows were released")


class PhysicalLines:
    """The physical lines of a buffer from ``offset`` on (ended by \\r\\n, \\r or \\n), located with numpy rather
    than split. Positions (``starts``, ``ends``) count from ``offset``; the buffer itself is never copied whole.

    Memory stays within a small multiple of the buffer whatever it holds (one line of 50 MB, or 50 MB of commas):
    per-byte work runs chunk by chunk, and only per-line arrays are kept.
    """

    def __init__(self, data: bytes, offset: int = 0) -> None:
        self.data = data
        self.offset = offset
        self.view = memoryview(data)[offset:]
        self.bytes = np.frombuffer(data, np.uint8, offset=offset) if offset < len(data) else np.empty(0, np.uint8)
        self.ends = self._ends()  # exclusive; each line's bytes include its line end
        self.starts = self.ends - np.diff(self.ends, prepend=0)

    def _ends(self) -> np.ndarray:
        buf = self.bytes
        ends = self._positions(ord("\n"))
        if self.find(b"\r") >= 0:
            cr = self._positions(ord("\r"))
            after = np.minimum(cr + 1, len(buf) - 1)
            lone_cr = cr[(cr + 1 == len(buf)) | (buf[after] != ord("\n"))]
            if len(lone_cr):
                ends = np.union1d(ends, lone_cr)
        ends = ends + 1
        if len(buf) and buf[-1] not in (ord("\n"), ord("\r")):
            ends = np.r_[ends, len(buf)]
        return ends

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, i: int) -> bytes:
        return bytes(self.view[self.starts[i] : self.ends[i]])

    def find(self, sub: bytes) -> int:
        """Where ``sub`` first occurs (counted from offset), or -1."""
        found = self.data.find(sub, self.offset)
        return found - self.offset if found >= 0 else -1

    def span(self, first: int, last: int) -> bytes:
        """Lines first..last (inclusive) as they are in the file."""
        return bytes(self.view[self.starts[first] : self.ends[last]])

    def text(self, first: int, last: int | None = None, *, limit: int | None = None) -> str:
        """Lines first..last (just first by default) decoded as ``decode_line`` does, without the last line end.

        With a limit, only the first ``limit`` characters or more (never the whole of a longer line) are decoded.
        """
        start, end = int(self.starts[first]), int(self.ends[first if last is None else last])
        if limit is not None and end - start > 4 * limit + 4:  # a character is at most 4 bytes
            return str(self.view[start : start + 4 * limit + 4], "utf-8", "surrogateescape")[:limit]
        return strip_eol(str(self.view[start:end], "utf-8", "surrogateescape"))

    def latin1(self, first: int, last: int | None = None) -> str:
        """Lines first..last (just first by default), one character per byte (Latin-1), without the last line
        end. The CSV structure without decoding: commas, quotes and line ends are ASCII, and UTF-8 never uses
        an ASCII byte inside a character; bytes that are not UTF-8 would decode to a string twice as large."""
        start, end = int(self.starts[first]), int(self.ends[first if last is None else last])
        return strip_eol(str(self.view[start:end], "latin-1"))

    def texts(self, chosen: Sequence[int], limit: int) -> list[str]:
        """Lines as ``text(i, limit=limit)`` gives them, many at once; they must be valid UTF-8."""
        chosen = np.asarray(chosen, dtype=np.int64)
        long = np.flatnonzero(self.ends[chosen] - self.starts[chosen] > 4 * limit + 4)
        if len(long):  # not through arrow, which would copy such lines whole
            out = self.texts(np.delete(chosen, long), limit)
            for at in long.tolist():
                out.insert(at, self.text(int(chosen[at]), limit=limit))
            return out
        utf8 = self.as_arrow(chosen).cast(pa.large_string())
        return pc.utf8_rtrim(utf8, characters="\r\n").to_pylist()

    def content_ends(self) -> np.ndarray:
        """Where each line's content ends (exclusive): before its line end."""
        last = self.bytes[self.ends - 1]  # a line is never empty: it holds at least a line end or one byte
        lf = last == ord("\n")
        crlf = lf & (self.ends - 2 >= self.starts) & (self.bytes[np.maximum(self.ends - 2, 0)] == ord("\r"))
        return self.ends - (lf | (last == ord("\r"))) - crlf

    def first_bytes(self) -> np.ndarray:
        return self.bytes[np.minimum(self.starts, len(self.bytes) - 1)]

    def count_per_line(self, byte: bytes) -> np.ndarray:
        code = ord(byte)
        return self._count_per_line(lambda chunk: chunk == code)

    def undecodable(self) -> np.ndarray:
        """Indexes of the lines that are not valid UTF-8 (only lines with non-ASCII bytes are decoded)."""
        if is_utf8(self.view):
            return np.empty(0, dtype=np.int64)
        non_ascii = np.flatnonzero(self._count_per_line(lambda chunk: chunk >= 0x80))
        return np.array([i for i in non_ascii.tolist() if not is_utf8(self.view[self.starts[i] : self.ends[i]])],
                        dtype=np.int64)  # fmt: skip

    def _positions(self, code: int) -> np.ndarray:
        """Where the byte ``code`` occurs, found chunk by chunk (a mask of the whole buffer would be as large)."""
        found = [np.flatnonzero(self.bytes[at : at + _CHUNK] == code) + at for at in range(0, len(self.bytes), _CHUNK)]
        return np.concatenate(found) if found else np.empty(0, dtype=np.int64)

    def _count_per_line(self, hits: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Per line, how many bytes ``hits`` marks. Chunk by chunk, so that the positions held stay few even when
        every byte is a hit; each line is counted in the chunk where it ends."""
        below_ends = np.empty(len(self.ends), dtype=np.int64)  # per line: hits before its end
        done, before = 0, 0
        for start in range(0, len(self.bytes), _CHUNK):
            stop = min(start + _CHUNK, len(self.bytes))
            positions = np.flatnonzero(hits(self.bytes[start:stop])) + start
            upto = int(np.searchsorted(self.ends, stop, side="right"))
            below_ends[done:upto] = before + np.searchsorted(positions, self.ends[done:upto])
            done, before = upto, before + len(positions)
        return np.diff(below_ends, prepend=0)

    def as_arrow(self, chosen: np.ndarray) -> pa.Array:
        """The chosen lines as an arrow binary array, for vectorized checks (a zero-copy view, a take)."""
        offsets = pa.py_buffer(np.r_[0, self.ends].astype(np.int64))
        view = pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(self), [None, offsets, pa.py_buffer(self.view)])
        return view.take(row_indexes(chosen))

    def join(self, chosen: np.ndarray) -> bytes | memoryview:
        """The chosen lines (sorted indexes) as one buffer, copied run by run rather than line by line (a view,
        not a copy, when they are one run)."""
        if not len(chosen):
            return b""
        breaks = np.flatnonzero(np.diff(chosen) != 1)
        firsts = self.starts[chosen[np.r_[0, breaks + 1]]].tolist()
        lasts = self.ends[chosen[np.r_[breaks, len(chosen) - 1]]].tolist()
        if len(firsts) == 1:
            return self.view[firsts[0] : lasts[0]]
        return b"".join(self.view[s:e] for s, e in zip(firsts, lasts, strict=True))


def printable(text: str, limit: int = _RAW_LIMIT) -> str:
    """Shorten text from a file, escaping control characters and undecodable bytes, so it is safe to print."""
    if len(text) <= limit and text.isprintable():  # the common case, at C speed: nothing to escape
        return text
    cut = text[:limit]
    shown = _UNPRINTABLE.sub(_escape_char, cut)
    return shown + "..." if len(text) > len(cut) else shown


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, kept by surrogateescape: show the byte
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def is_utf8(data: bytes | memoryview) -> bool:
    """Whether data is valid UTF-8. A large buffer is checked by arrow in place: decoding it would build a string
    up to four times as large."""
    if isinstance(data, bytes) and data.isascii():  # much cheaper than decoding
        return True
    if len(data) <= _CHUNK:
        try:
            str(data, "utf-8")
        except UnicodeDecodeError:
            return False
        return True
    offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int64))
    whole = pa.LargeBinaryArray.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(data)])
    try:
        whole.cast(pa.large_string())
    except pa.ArrowInvalid:
        return False
    return True


def is_blank(line: bytes) -> bool:
    return not line.strip(BLANKS)


def decode_line(line: bytes) -> str:
    """Decode keeping undecodable bytes as lone surrogates, so they can be found per field and shown."""
    return line.decode("utf-8", "surrogateescape")


def strip_eol(text: str) -> str:
    return text.rstrip("\r\n")  # a physical line ends with at most one of \r\n, \r, \n


def field_label(name: str) -> str:
    return "key" if name == KEY else name


def row_indexes(indexes: Sequence[int] | np.ndarray) -> pa.Array:
    return pa.array(indexes, pa.int64())  # typed, so that taking no rows works too


def take_sorted(column: pa.ChunkedArray | pa.Array, indexes: Sequence[int] | np.ndarray) -> pa.ChunkedArray | pa.Array:
    """The rows at ``indexes`` (ascending) of a column, chunk by chunk: a take on a chunked column would first
    copy the whole column into one chunk."""
    if isinstance(column, pa.Array):
        return column.take(row_indexes(indexes))
    indexes = np.asarray(indexes, dtype=np.int64)
    firsts = np.cumsum([0, *(len(chunk) for chunk in column.chunks)])
    splits = np.searchsorted(indexes, firsts)
    parts = [
        chunk.take(row_indexes(indexes[splits[k] : splits[k + 1]] - firsts[k]))
        for k, chunk in enumerate(column.chunks)
        if splits[k + 1] > splits[k]
    ]
    return pa.chunked_array(parts, column.type)


# ------------------------------------------------------------------------------------------------------------
# The file


def read_file(path: Path, max_file_mb: int) -> tuple[bytes, Fingerprint]:
    """The file's bytes after any UTF-8 byte order mark (skipped, not copied away), and its fingerprint."""
    limit = max_file_mb * _MB
    try:
        with path.open("rb") as f:
            stat = os.fstat(f.fileno())
            if not (S_ISREG(stat.st_mode) or S_ISFIFO(stat.st_mode)):  # a device has size 0 and may never end
                raise SourceRefused(f"{path}: not a regular file ({_file_kind(stat.st_mode)})")
            if stat.st_size > limit:
                raise _too_large(path, stat.st_size, max_file_mb)
            head = f.read(len(_BOM))
            if head != _BOM and f.seekable():
                f.seek(0)
                head = b""
            data = _read_rest(f, stat.st_size - len(head), limit - len(head))
            if head and head != _BOM:  # not seekable (a pipe): the rare case that costs a copy
                data, head = head + data, b""
    except FileNotFoundError:
        raise SourceRefused(f"{path}: file not found") from None
    except (IsADirectoryError, NotADirectoryError):
        raise SourceRefused(f"{path}: not a regular file (a directory, or under a file)") from None
    except MemoryError:
        raise SourceRefused(f"{path}: not enough memory to read it (lower processing.max_file_mb)") from None
    except OSError as exc:  # an I/O error, perhaps passing: the one failure worth another attempt
        raise SourceUnavailable(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    size = len(head) + len(data)
    if size > limit:  # it grew while being read
        raise _too_large(path, size, max_file_mb)
    digest = hashlib.sha256(head)
    digest.update(data)
    return data, Fingerprint(size=size, mtime_ns=stat.st_mtime_ns, sha256=digest.hexdigest())


def _read_rest(f: BinaryIO, expected: int, limit: int) -> bytes:
    """The rest of the file, or limit + 1 bytes of it when it is longer. Read in one piece of the size the file
    had when opened, which is all there is unless it grew meanwhile (or is a pipe or a device)."""
    data = f.read(max(0, min(expected, limit)) + 1)
    if len(data) <= expected:
        return data
    more = bytearray(data)
    while len(more) <= limit:
        chunk = f.read(min(_CHUNK, limit + 1 - len(more)))
        if not chunk:
            break
        more += chunk
    return bytes(more)


def _file_kind(mode: int) -> str:
    kinds = (
        (S_ISCHR, "a character device"),
        (S_ISBLK, "a block device"),
        (S_ISSOCK, "a socket"),
        (S_ISDIR, "a directory"),
    )
    return next((name for test, name in kinds if test(mode)), "not a file")


def _too_large(path: Path, size: int, max_file_mb: int) -> SourceRefused:
    return SourceRefused(
        f"{path}: file too large ({size / _MB:,.1f} MB, over processing.max_file_mb = {max_file_mb:,} MB)"
    )


# ------------------------------------------------------------------------------------------------------------
# Field rules and the snapshot


def _snapshot(rows: ParsedRows, source: SourceFile, max_key_length: int, fingerprint: Fingerprint) -> SourceSnapshot:
    table = rows.table
    n = table.num_rows
    problems = _field_problems(table, source.system, max_key_length)
    if "last_seen_at" in table.column_names:
        stamps, unparseable = _normalize_timestamps(table["last_seen_at"])
    else:
        stamps, unparseable = pa.repeat(pa.scalar("", pa.string()), n), {}
    warnings = {
        i: f"unparseable last_seen_at '{printable(value, 60)}'" for i, value in unparseable.items() if i not in problems
    }
    lines = table["line"].to_numpy()
    reported = sorted({*problems, *warnings})
    raws = dict(zip(reported, rows.raw_lines(reported), strict=True))
    rejected = [
        *rows.rejected,
        *(source.reject(int(lines[i]), reason, raws[i]) for i, reason in problems.items()),
        *(source.reject(int(lines[i]), reason, raws[i], "warning") for i, reason in warnings.items()),
    ]
    rejected.sort(key=lambda row: row.line)
    rows.release()  # the parsed table (and the file's bytes, if the careful parser kept them) stay only in ``table``

    values = [
        table[name] if name in table.column_names else pa.repeat(pa.scalar("", pa.string()), n)
        for name in (KEY, "entity_type", "location_ref")
    ]
    kept = pa.table([*values, stamps, table["line"]], schema=row_schema())
    del table, stamps, values
    if problems:
        kept = _without_rows(kept, sorted(problems))
    lines = kept["line"].to_numpy()
    if np.any(np.diff(lines) < 0):  # rows parsed one by one were appended after pyarrow's
        kept = kept.combine_chunks().take(row_indexes(np.argsort(lines, kind="stable")))
    # One chunk per column, copied column by column: each column's chunks go once copied, so that the table is
    # never there twice.
    columns = kept.columns
    del kept
    for i in range(len(columns)):
        if columns[i].num_chunks != 1:
            columns[i] = pa.chunked_array([columns[i].combine_chunks()], columns[i].type)
    return SourceSnapshot(
        system=source.system,
        file=source.file,
        rows_read=rows.rows_read,
        rows=pa.table(columns, schema=row_schema()),
        rejected=rejected,
        fingerprint=fingerprint,
    )


def _without_rows(table: pa.Table, dropped: list[int]) -> pa.Table:
    """The table without the rows at ``dropped`` (ascending, few): slices between them, not copied (a filter would
    copy every column, and the chunks are combined afterwards anyway)."""
    bounds = [-1, *dropped, table.num_rows]
    pieces = [table.slice(a + 1, b - a - 1) for a, b in itertools.pairwise(bounds) if b - a > 1]
    return pa.concat_tables(pieces) if pieces else table.slice(0, 0)


def _field_problems(table: pa.Table, system: str, max_key_length: int) -> dict[int, str]:
    """Rows breaking a field rule, with the reason: a vectorized pre-filter, each hit confirmed in Python."""
    key = table[KEY]
    lengths = pc.binary_length(key).to_numpy(zero_copy_only=False)
    flagged = (lengths == 0) | _bools(pc.utf8_is_space(key))  # arrow's whitespace is str.isspace()'s (see the tests)
    flagged[_rows_with_control(key)] = True
    longer = np.flatnonzero(lengths > max_key_length)  # a character takes one byte or more
    if len(longer):
        flagged[longer[_bools(pc.greater(pc.utf8_length(take_sorted(key, longer)), max_key_length))]] = True
    has_system = "source_system" in table.column_names
    if has_system:
        given = table["source_system"]
        flagged |= ~(_bools(pc.equal(given, system)) | (pc.binary_length(given).to_numpy(zero_copy_only=False) == 0))
    hits = np.flatnonzero(flagged)
    systems = take_sorted(table["source_system"], hits).to_pylist() if has_system else [""] * len(hits)
    # Keys fetched all at once, but a huge one alone: a take would copy it in arrow before Python copies it again.
    huge = lengths[hits] > _CHUNK
    fetched = iter(take_sorted(key, hits[~huge]).to_pylist())
    problems = {}
    for i, alone, s in zip(hits.tolist(), huge.tolist(), systems, strict=True):
        problem = _row_problem(key[i].as_py() if alone else next(fetched), s, system, max_key_length)
        if problem:
            problems[i] = problem
    return problems


def _bools(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return values.to_numpy(zero_copy_only=False)


def _chunks(values: pa.ChunkedArray | pa.Array) -> list[pa.Array]:
    return values.chunks if isinstance(values, pa.ChunkedArray) else [values]


def _utf8_bytes(chunk: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A string chunk's bytes and its len + 1 offsets into them, as numpy views of arrow's buffers (no copy)."""
    _, offsets, data = chunk.buffers()
    width = np.dtype(np.int64 if pa.types.is_large_string(chunk.type) else np.int32)
    ends = np.frombuffer(offsets, width, count=len(chunk) + 1, offset=chunk.offset * width.itemsize)
    return (np.frombuffer(data, np.uint8) if data is not None else np.empty(0, np.uint8)), ends


def _rows_with_control(keys: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The rows whose key holds a control character (CONTROL_CLASS), found in the UTF-8 bytes: a byte below 0x20
    but tab, DEL (0x7F), or a C1 character U+0080-U+009F (0xC2 followed by 0x80-0x9F)."""
    found, first = [], 0
    for chunk in _chunks(keys):
        if len(chunk) and chunk.null_count:  # not from the readers (their strings are never null): the plain way
            found.append(np.flatnonzero(_bools(pc.fill_null(pc.match_substring_regex(chunk, CONTROL_CLASS), False))))
        elif len(chunk):
            raw, ends = _utf8_bytes(chunk)
            at = _control_positions(raw[: ends[-1]], int(ends[0]))
            found.append(np.searchsorted(ends, at, side="right") - 1 + first)
        first += len(chunk)
    return np.concatenate(found) if found else np.empty(0, dtype=np.int64)


def _control_positions(raw: np.ndarray, start: int) -> np.ndarray:
    """Where control characters start in ``raw`` from ``start`` on (valid UTF-8), piece by piece so that the
    masks stay small."""
    found = []
    for at in range(start, len(raw), _CHUNK):
        piece = raw[at : at + _CHUNK]
        c0 = np.flatnonzero(((piece < 0x20) & (piece != ord("\t"))) | (piece == 0x7F))
        c1 = np.flatnonzero(piece == 0xC2)
        if len(c1):
            second = raw[np.minimum(c1 + at + 1, len(raw) - 1)]
            c1 = c1[(second >= 0x80) & (second <= 0x9F)]
        found.append(np.concatenate([c0, c1]) + at)
    return np.concatenate(found) if found else np.empty(0, dtype=np.int64)


def _row_problem(key: str, source_system: str, system: str, max_key_length: int) -> str:
    """Why a row's fields make it unusable ("" if not): the reference rule behind the vectorized filter."""
    problem = key_problem(key, max_key_length)
    if problem:
        return problem
    if source_system not in ("", system):
        return _foreign_system(source_system, system)
    return ""


@lru_cache(maxsize=1024)  # a file of another system repeats the same reason on every row
def _foreign_system(source_system: str, system: str) -> str:
    return f"source_system '{printable(source_system, 40)}' differs from the system being read ({system})"


def _normalize_timestamps(values: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, dict[int, str]]:
    """last_seen_at in canonical UTC ISO 8601 ("" stays ""), and the unparseable values by row index."""
    todo = np.flatnonzero(~_is_canonical_utc(values))
    if len(todo):  # rewrite the common UTC spellings at C speed, so that few values are left to parse
        written = take_sorted(values, todo)
        rewritten = pc.replace_substring_regex(written, _UTC_SPELLING, r"\1T\2+00:00")
        mask = np.zeros(len(values), dtype=bool)
        mask[todo] = True
        values = pc.replace_with_mask(values.combine_chunks(), pa.array(mask), rewritten.combine_chunks())
        left = ~_is_canonical_utc(rewritten)
        todo, originals = todo[left].tolist(), written.filter(pa.array(left)).to_pylist()
    stamps = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if not len(todo):
        return stamps, {}
    distinct = list(dict.fromkeys(originals))  # parse each distinct value once
    parsed = dict(zip(distinct, _parse_iso8601(distinct), strict=True))
    unparseable = {i: value for i, value in zip(todo, originals, strict=True) if parsed[value] is None}
    mask = np.zeros(len(stamps), dtype=bool)
    mask[todo] = True
    fixed = pa.array([parsed[value] or "" for value in originals], pa.string())
    return pc.replace_with_mask(stamps, pa.array(mask), fixed), unparseable


def _is_canonical_utc(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Which values are "" or canonical (``_CANONICAL_UTC``): read off the bytes of the 25-byte values."""
    found = []
    for chunk in _chunks(values):
        if len(chunk) and chunk.null_count:  # not from the readers (their strings are never null): the plain way
            found.append(_bools(pc.fill_null(pc.match_substring_regex(chunk, f"^$|{_CANONICAL_UTC}"), False)))
            continue
        raw, ends = _utf8_bytes(chunk) if len(chunk) else (np.empty(0, np.uint8), np.zeros(1, np.int64))
        lengths = np.diff(ends)
        canonical = lengths == 0
        fixed = np.flatnonzero(lengths == _STAMP_WIDTH)
        if len(fixed):  # every 25 bytes from each position, as a view; the rows are taken in slices
            windows = np.lib.stride_tricks.sliding_window_view(raw[: ends[-1]], _STAMP_WIDTH)
        for at in range(0, len(fixed), _STAMP_ROWS):
            rows = fixed[at : at + _STAMP_ROWS]
            canonical[rows] = _canonical_stamps(windows[ends[rows]])
        found.append(canonical)
    return np.concatenate(found) if found else np.empty(0, dtype=bool)


def _canonical_stamps(stamps: np.ndarray) -> np.ndarray:
    """Which rows of 25 bytes each match ``_CANONICAL_UTC``, tested field by field."""
    digits = stamps[:, _STAMP_DIGITS] - np.uint8(ord("0"))  # a byte that is not a digit wraps to 10 or more
    ok = (digits < 10).all(axis=1) & (stamps[:, _STAMP_SIGNS] == _STAMP_SIGN_BYTES).all(axis=1)
    d = digits.astype(np.int16)
    year = d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3]
    month, day = d[:, 4] * 10 + d[:, 5], d[:, 6] * 10 + d[:, 7]
    hour, minute, second = d[:, 8] * 10 + d[:, 9], d[:, 10] * 10 + d[:, 11], d[:, 12] * 10 + d[:, 13]
    month_days = _MONTH_DAYS[np.minimum(month, len(_MONTH_DAYS) - 1)]
    return ok & (year > 0) & (day >= 1) & (day <= month_days) & (hour < 24) & (minute < 60) & (second < 60)


def _parse_iso8601(texts: list[str]) -> list[str | None]:
    """ISO 8601 dates or datetimes (naive = UTC) as e.g. 2026-01-31T10:00:00+00:00; "" if blank, None if
    unparseable. The general case, with pandas' ISO 8601 parser (offsets, fractions, dates, basic format).
    """
    blank = [not text.strip() for text in texts]
    texts = [text.strip() if _ISO_START.match(text) else "" for text in texts]  # "" parses as NaT
    # Beyond microseconds pandas would switch the whole batch to nanoseconds, whose range ends in 2262.
    texts = [_SUBMICRO_DIGITS.sub(r"\1", text) for text in texts]
    import pandas as pd  # here: a third of a second to import, which commands that read no export are spared

    parsed = pd.to_datetime(pd.Series(texts, dtype=object), format="ISO8601", utc=True, errors="coerce")
    stamps = parsed.to_numpy(dtype="datetime64[us]")
    missing = np.isnat(stamps) | (stamps < _FIRST_STAMP) | (stamps > _LAST_STAMP)
    seconds = stamps.astype("datetime64[s]")
    shown = np.datetime_as_string(seconds, unit="s").tolist()
    with_fraction = np.flatnonzero(~missing & (stamps != seconds))
    fractions = np.datetime_as_string(stamps[with_fraction], unit="us").tolist()
    for i, text in zip(with_fraction.tolist(), fractions, strict=True):
        shown[i] = text
    return [
        "" if empty else None if gap else f"{text}+00:00"
        for text, gap, empty in zip(shown, missing.tolist(), blank, strict=True)
    ]

"""Reading one system's export (CSV or JSON) into a SourceSnapshot, validating it row by row.

A bad row is rejected and reported; every other row is still used. Only a file that cannot be used at all
(missing, unreadable, no usable header, a JSON array that does not parse) raises SourceUnavailable.

Speed matters (a full run reads five files of ~1M rows), so no per-row Python runs for clean rows:

* CSV structure: the whole file is checked at C speed first (UTF-8, quote and blank-line searches, field count).
  A clean file goes straight to pyarrow's CSV parser with quoting off. Otherwise the file is split into lines,
  each line's commas are counted, and only the suspicious lines (quotes, wrong field count, bad bytes, blank) are
  parsed one by one with Python's strict csv module; the clean rest still goes to pyarrow in one piece.
* Field rules (control characters, empty or long keys, foreign source_system) run vectorized with
  pyarrow.compute as a pre-filter; each hit is confirmed by ``_row_problem``, the plain Python definition.
* last_seen_at values already in canonical UTC form are recognised by one regex; only the rest are parsed, and
  only once per distinct value.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from keysync.domain.observations import Fingerprint, RejectedRow, SourceSnapshot


class SourceUnavailable(Exception):
    """The file is missing, unreadable or unusable (e.g. no usable header); message says why, naming the file."""


FIELDS = ("source_system", "source_key", "entity_type", "location_ref", "last_seen_at")
KEY = "source_key"
KINDS = ("csv", "json")

_BOM = b"\xef\xbb\xbf"
_RAW_LIMIT = 200  # characters of a rejected line kept in the report
_MAX_RECORD_LINES = 100  # a quoted field may run over this many line ends before we call the quote left open
_NOT_BLANK = b" \t\r\n"

# Control characters: any Unicode Cc (C0, DEL, C1) but tab. The same class serves Python re and RE2 (pyarrow).
_CONTROL_CLASS = r"[\x00-\x08\x0a-\x1f\x7f-\x9f]"
_CONTROL = re.compile(_CONTROL_CLASS)
# Exactly the characters str.isspace() accepts, so the vectorized "blank key" test agrees with str.strip().
_WHITESPACE_CLASS = (
    r"[\x09-\x0d\x1c-\x20\x85\xa0\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]"
)
_SUSPECT_KEY = rf"{_CONTROL_CLASS}|^{_WHITESPACE_CLASS}*$"  # RE2: a control character, or blank
# Characters escaped in reports: control characters (tab too) and lone surrogates (undecodable bytes).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_UNDECODABLE = re.compile(
    "[\ud800-\udfff]"
)  # surrogateescape'd bytes, or a lone surrogate from a JSON escape

# last_seen_at already canonical (UTC, seconds, calendar-valid; 29 February is left to the full parser).
_CANONICAL_UTC = (
    r"^(?:[1-9]\d{3}|0[1-9]\d\d|00[1-9]\d|000[1-9])-"
    r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)|02-(?:0[1-9]|1\d|2[0-8]))"
    r"T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d\+00:00$"
)
# Common UTC spellings rewritten to the canonical form before the canonical test (Z, no offset, space).
_UTC_SPELLING = r"^(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(?:Z|\+00:00)?$"
_ISO_START = re.compile(r"\s*\d{4}")  # keeps pandas from accepting words such as "now" or "today"


def read_source(system: str, path: Path, kind: str = "csv", *, max_key_length: int = 256) -> SourceSnapshot:
    """Read one system's export: a CSV file, or JSON (an array of objects, or JSON Lines).

    Rows that break a rule are left out and listed in ``rejected`` (severity "error"); rows used with a caveat
    (unparseable last_seen_at) and skipped blank lines are listed with severity "warning".
    Raises SourceUnavailable when the file cannot be used at all, including an empty file: an export that
    lost its header is more likely a failed export than a system without keys.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown source kind {kind!r}, expected one of {KINDS}")
    source = _Source(system, str(path))
    data, fingerprint = _read_file(Path(path))
    data = data.removeprefix(_BOM)
    rows = _parse_csv(data, source) if kind == "csv" else _parse_json(data, source)
    return _snapshot(rows, source, max_key_length, fingerprint)


# ---------------------------------------------------------------------------------------------------------------
# Shared pieces


@dataclass(frozen=True)
class _Source:
    system: str
    file: str

    def reject(self, line: int, reason: str, raw: str, severity: str = "error") -> RejectedRow:
        return RejectedRow(self.system, self.file, line, severity, reason, printable(raw))

    def unavailable(self, why: str) -> SourceUnavailable:
        return SourceUnavailable(f"{self.file}: {why}")


@dataclass
class _Rows:
    """Structurally sound rows, column-wise, before the field rules run.

    ``table`` holds a string column per field present in the source (named as in FIELDS) and an int64 "line".
    """

    table: pa.Table
    raw_lines: Callable[[Sequence[int]], list[str]]  # the text of rows (by table index), for reports
    rows_read: int
    rejected: list[RejectedRow] = field(default_factory=list)


def printable(text: str, limit: int = _RAW_LIMIT) -> str:
    """Shorten text from a file and escape control characters (and undecodable bytes) so it is safe to print."""
    cut = text[:limit]
    shown = _UNPRINTABLE.sub(_escape_char, cut)
    return shown + "..." if len(text) > len(cut) else shown


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, kept by surrogateescape: show the byte
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _read_file(path: Path) -> tuple[bytes, Fingerprint]:
    try:
        with path.open("rb") as f:
            mtime_ns = os.fstat(f.fileno()).st_mtime_ns
            data = f.read()
    except FileNotFoundError:
        raise SourceUnavailable(f"{path}: file not found") from None
    except OSError as exc:
        raise SourceUnavailable(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    return data, Fingerprint(size=len(data), mtime_ns=mtime_ns, sha256=hashlib.sha256(data).hexdigest())


def _is_utf8(data: bytes) -> bool:
    if data.isascii():  # much cheaper than decoding
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _is_blank(line: bytes) -> bool:
    return not line.strip(_NOT_BLANK)


def _decode(line: bytes) -> str:
    """Decode keeping undecodable bytes as lone surrogates, so they can be found per field and shown."""
    return line.decode("utf-8", "surrogateescape")


def _strip_eol(text: str) -> str:
    return text.rstrip("\r\n")  # a physical line ends with at most one of \r\n, \r, \n


def _string_table(columns: dict[str, list[str]], lines: Sequence[int]) -> pa.Table:
    arrays = {name: pa.array(values, pa.string()) for name, values in columns.items()}
    return pa.table({**arrays, "line": pa.array(lines, pa.int64())})


# ---------------------------------------------------------------------------------------------------------------
# CSV


def _parse_csv(data: bytes, source: _Source) -> _Rows:
    if not data.strip():
        raise source.unavailable("empty file, expected a header line")
    header, body = _split_header(data)
    names = _header_names(header, source)
    if len(names) > 1 and _looks_clean(body, len(names)):  # one column: a blank line looks like an empty key
        table = _arrow_csv(body, len(names))
        if table is not None and table.num_rows == _count_lines(body):
            return _csv_rows(names, table, np.arange(2, table.num_rows + 2), _SlowRecords(), table.num_rows)
    return _parse_csv_lines(body, names, source)


def _split_header(data: bytes) -> tuple[bytes, bytes]:
    """The first physical line (the header) and the rest."""
    ends = [i for i in (data.find(b"\n"), data.find(b"\r")) if i >= 0]
    if not ends:
        return data, b""
    end = min(ends)
    after = end + 2 if data[end : end + 2] == b"\r\n" else end + 1
    return data[:end], data[after:]


def _header_names(header: bytes, source: _Source) -> list[str]:
    """Column names by position. Unknown columns are allowed and ignored; known ones must not repeat."""
    try:
        names = [name.strip().lower() for name in _csv_fields(header.decode("utf-8"))]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise source.unavailable(f"line 1 is not a usable CSV header ({exc})") from exc
    if KEY not in names:
        found = printable(",".join(names), 100)
        raise source.unavailable(f"no usable header: line 1 has no {KEY} column (found: {found})")
    for name in FIELDS:
        if names.count(name) > 1:
            raise source.unavailable(f"no usable header: column {name} appears {names.count(name)} times")
    return names


def _csv_fields(text: str) -> list[str]:
    """One RFC 4180 record (it may span lines inside quotes); csv.Error if it is not exactly one record."""
    return next(csv.reader([text], strict=True))


def _looks_clean(body: bytes, n_cols: int) -> bool:
    """Whether pyarrow can take the body as is: no quotes, bad bytes or blank lines, and the comma total fits."""
    if b'"' in body or not _is_utf8(body):
        return False
    if body[:1] in (b"\r", b"\n") or b"\n\n" in body or b"\r\r" in body or b"\n\r" in body:
        return False  # a blank line (\r\n is one line end, so \n\r and \r\r mean an empty line)
    return body.count(b",") == (n_cols - 1) * _count_lines(body)


def _count_lines(body: bytes) -> int:
    if not body:
        return 0
    line_ends = body.count(b"\n") + body.count(b"\r") - body.count(b"\r\n")
    return line_ends + (body[-1:] not in (b"\n", b"\r"))


def _arrow_csv(data: bytes, n_cols: int) -> pa.Table | None:
    """Parse quote-free, valid UTF-8 CSV lines, all columns as strings; None if a line has the wrong width."""
    names = [f"c{i}" for i in range(n_cols)]
    if not data:
        return pa.table({name: pa.array([], pa.string()) for name in names})
    try:
        return pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(column_names=names),
            parse_options=pacsv.ParseOptions(quote_char=False, newlines_in_values=False),
            # UTF-8 was checked on the whole buffer already; strings are never null ("" stays "").
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()), check_utf8=False
            ),
        )
    except pa.ArrowInvalid:
        return None


def _parse_csv_lines(body: bytes, names: list[str], source: _Source) -> _Rows:
    """The careful path: triage the lines at C speed, parse the suspicious ones singly, the rest with pyarrow."""
    lines = body.splitlines(keepends=True)  # bytes split on \r\n, \r and \n only: physical lines
    ends = np.cumsum(np.fromiter(map(len, lines), np.int64, len(lines)))
    suspicious, quoted = _triage(body, lines, ends, len(names))
    slow = _parse_suspicious(lines, np.flatnonzero(suspicious), np.flatnonzero(quoted), names, source)
    clean = ~suspicious
    clean[slow.consumed] = False  # continuation lines of records with a quoted field running over a line end
    clean_lines = np.flatnonzero(clean)
    table = _arrow_csv(_join_lines(body, ends, clean_lines), len(names))
    if table is None or table.num_rows != len(clean_lines):
        raise RuntimeError(f"{source.file}: pyarrow disagrees with the line triage")  # a bug, not bad data
    return _csv_rows(names, table, clean_lines + 2, slow, len(clean_lines) + slow.rows_read)


def _triage(body: bytes, lines: list[bytes], ends: np.ndarray, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Per line: whether it needs the careful parser, and whether it holds a quote (may open a record)."""
    n = len(lines)
    commas = np.fromiter(map(bytes.count, lines, repeat(b",")), np.int64, n)
    suspicious = commas != n_cols - 1  # catches blank lines too, unless there is a single column
    quoted = np.zeros(n, dtype=bool)
    if b'"' in body:
        positions = np.flatnonzero(np.frombuffer(body, np.uint8) == ord('"'))
        quoted[np.searchsorted(ends, positions, side="right")] = True
        suspicious |= quoted
    if not _is_utf8(body):
        suspicious |= _undecodable_lines(lines)
    if n_cols == 1:
        suspicious |= np.fromiter(map(_is_blank, lines), bool, n)
    return suspicious, quoted


def _undecodable_lines(lines: list[bytes]) -> np.ndarray:
    bad = np.zeros(len(lines), dtype=bool)
    for i in np.flatnonzero(~np.fromiter(map(bytes.isascii, lines), bool, len(lines))).tolist():
        bad[i] = not _is_utf8(lines[i])
    return bad


def _join_lines(body: bytes, ends: np.ndarray, chosen: np.ndarray) -> bytes:
    """The chosen lines (sorted indexes) as one buffer, copied run by run rather than line by line."""
    if not len(chosen):
        return b""
    breaks = np.flatnonzero(np.diff(chosen) != 1)
    first = chosen[np.r_[0, breaks + 1]]
    last = chosen[np.r_[breaks, len(chosen) - 1]]
    starts = np.r_[0, ends[:-1]]
    view = memoryview(body)
    return b"".join(view[s:e] for s, e in zip(starts[first].tolist(), ends[last].tolist(), strict=True))


@dataclass
class _SlowRecords:
    """What the careful parser made of the suspicious lines."""

    lines: list[int] = field(default_factory=list)  # file line of each usable record
    fields: list[list[str]] = field(default_factory=list)
    raws: list[str] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)
    consumed: list[int] = field(default_factory=list)  # continuation lines (indexes) of multi-line records
    rows_read: int = 0


def _parse_suspicious(
    lines: list[bytes], suspicious: np.ndarray, quoted: np.ndarray, names: list[str], source: _Source
) -> _SlowRecords:
    out = _SlowRecords()
    used = sorted((i for i, name in enumerate(names) if name in FIELDS), key=lambda i: names[i] != KEY)
    next_free = 0
    for i in suspicious.tolist():
        if i < next_free:
            continue  # already part of a multi-line record
        line_no = i + 2  # the header is line 1
        if _is_blank(lines[i]):
            out.rejected.append(
                source.reject(line_no, "blank line", _strip_eol(_decode(lines[i])), "warning")
            )
            continue
        out.rows_read += 1
        last, fields, problem = _parse_record(lines, i, quoted, len(names))
        out.consumed.extend(range(i + 1, last + 1))
        next_free = last + 1
        raw = _strip_eol("".join(map(_decode, lines[i : last + 1])))
        problem = problem or _undecodable_field(fields, names, used)
        if problem:
            out.rejected.append(source.reject(line_no, problem, raw))
        else:
            out.lines.append(line_no)
            out.fields.append(fields)
            out.raws.append(raw)
    return out


def _parse_record(lines: list[bytes], i: int, quoted: np.ndarray, n_cols: int) -> tuple[int, list[str], str]:
    """Parse the record starting at line i: (its last line, its fields, the problem or "")."""
    text = _strip_eol(_decode(lines[i]))
    if '"' not in text:
        fields = text.split(",")
    else:
        try:
            fields = _csv_fields(text)
        except csv.Error as exc:
            if "unexpected end of data" not in str(exc):
                return i, [], _quoting_problem(exc)
            return _multiline_record(lines, i, quoted, n_cols) or (i, [], "quote left open")
    if len(fields) != n_cols:
        return i, fields, f"wrong number of fields: {len(fields)}, expected {n_cols}"
    return i, fields, ""


def _multiline_record(
    lines: list[bytes], i: int, quoted: np.ndarray, n_cols: int
) -> tuple[int, list[str], str] | None:
    """Line i opens a quote: if the next line with a quote closes it into one good record, that record."""
    k = int(np.searchsorted(quoted, i, side="right"))
    if k == len(quoted) or quoted[k] - i > _MAX_RECORD_LINES:
        return None
    last = int(quoted[k])
    try:
        fields = _csv_fields(_strip_eol("".join(map(_decode, lines[i : last + 1]))))
    except csv.Error:
        return None
    return (last, fields, "") if len(fields) == n_cols else None


def _quoting_problem(exc: csv.Error) -> str:
    message = str(exc)
    if "expected after" in message:
        return "unexpected text after a closing quote"
    return f"malformed quoting ({message})"


def _undecodable_field(fields: list[str], names: list[str], used: list[int]) -> str:
    for pos in used:
        if _UNDECODABLE.search(fields[pos]):
            return f"{_field_label(names[pos])} is not valid UTF-8"
    return ""


def _field_label(name: str) -> str:
    return "key" if name == KEY else name


def _csv_rows(
    names: list[str], table: pa.Table, lines: np.ndarray, slow: _SlowRecords, rows_read: int
) -> _Rows:
    """Join pyarrow's rows (columns c0, c1, ...) and the careful parser's rows into one table of known fields."""
    n_fast = table.num_rows
    columns = {}
    for name in FIELDS:
        if name in names:
            pos = names.index(name)
            extra = pa.array([fields[pos] for fields in slow.fields], pa.string())
            columns[name] = pa.chunked_array([*table.column(pos).chunks, extra], pa.string())
    columns["line"] = pa.chunked_array([pa.array(lines, pa.int64()), pa.array(slow.lines, pa.int64())])

    def raw_lines(indexes: Sequence[int]) -> list[str]:
        fast_columns = table.take([i for i in indexes if i < n_fast]).to_pydict().values()
        fast_raws = (",".join(values) for values in zip(*fast_columns, strict=True))  # quote-free: exact
        return [next(fast_raws) if i < n_fast else slow.raws[i - n_fast] for i in indexes]

    return _Rows(pa.table(columns), raw_lines, rows_read, slow.rejected)


# ---------------------------------------------------------------------------------------------------------------
# JSON


def _parse_json(data: bytes, source: _Source) -> _Rows:
    start = data.lstrip()[:1]
    if not start:
        raise source.unavailable("empty file, expected JSON")
    if start == b"[":
        return _parse_json_array(data, source)
    return _parse_json_lines(data, source)


def _parse_json_array(data: bytes, source: _Source) -> _Rows:
    try:
        elements = json.loads(_decode(data))
    except json.JSONDecodeError as exc:
        raise source.unavailable(
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except RecursionError as exc:
        raise source.unavailable("not usable JSON: nested too deeply") from exc
    # "line" is the element's 1-based index in the array; its raw text says so.
    records = [(n, element, "") for n, element in enumerate(elements, start=1)]
    return _json_rows(records, len(records), [], _may_hold_surrogates(data), source)


def _parse_json_lines(data: bytes, source: _Source) -> _Rows:
    records: list[tuple[int, object, str]] = []
    rejected: list[RejectedRow] = []
    rows_read = 0
    for n, line in enumerate(data.splitlines(), start=1):
        text = _decode(line)
        if _is_blank(line):
            rejected.append(source.reject(n, "blank line", text, "warning"))
            continue
        rows_read += 1
        try:
            records.append((n, json.loads(text), text))
        except json.JSONDecodeError as exc:
            rejected.append(source.reject(n, f"invalid JSON: {exc.msg} (column {exc.colno})", text))
        except RecursionError:
            rejected.append(source.reject(n, "invalid JSON: nested too deeply", text))
    return _json_rows(records, rows_read, rejected, _may_hold_surrogates(data), source)


def _may_hold_surrogates(data: bytes) -> bool:
    """Whether decoded strings may hold lone surrogates: from bytes that are not UTF-8, or from \\udXXX escapes."""
    return not _is_utf8(data) or b"\\ud" in data or b"\\uD" in data


def _json_rows(
    records: list[tuple[int, object, str]],
    rows_read: int,
    rejected: list[RejectedRow],
    check_utf8: bool,
    source: _Source,
) -> _Rows:
    columns: dict[str, list[str]] = {name: [] for name in FIELDS}
    accepted = []
    for record in records:
        line, obj, raw = record
        problem, values = _json_values(obj, check_utf8)
        if problem:
            rejected.append(source.reject(line, problem, raw or _element_raw(line, obj)))
            continue
        for name, value in zip(FIELDS, values, strict=True):
            columns[name].append(value)
        accepted.append(record)

    def raw_lines(indexes: Sequence[int]) -> list[str]:
        return [accepted[i][2] or _element_raw(accepted[i][0], accepted[i][1]) for i in indexes]

    table = _string_table(columns, [line for line, _, _ in accepted])
    return _Rows(table, raw_lines, rows_read, rejected)


def _json_values(obj: object, check_utf8: bool) -> tuple[str, list[str]]:
    """The fields of one JSON record in FIELDS order (null or absent -> ""), or the reason it is unusable."""
    if not isinstance(obj, dict):
        return f"not a JSON object ({_json_type(obj)})", []
    if obj.get(KEY) is None:
        return f"missing {KEY}", []
    values = []
    for name in FIELDS:
        value = obj.get(name)
        if value is None:
            value = ""
        elif not isinstance(value, str):
            return f"{name} is not a string ({_json_type(value)})", []
        elif check_utf8 and _UNDECODABLE.search(value):
            return f"{_field_label(name)} is not valid UTF-8", []
        values.append(value)
    return "", values


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _element_raw(index: int, element: object) -> str:
    return f"[element {index}] {json.dumps(element, ensure_ascii=False)}"


# ---------------------------------------------------------------------------------------------------------------
# Field rules and the snapshot


def _snapshot(rows: _Rows, source: _Source, max_key_length: int, fingerprint: Fingerprint) -> SourceSnapshot:
    table = rows.table
    n = table.num_rows
    problems = _field_problems(table, source.system, max_key_length)
    if "last_seen_at" in table.column_names:
        stamps, unparseable = _normalize_timestamps(table["last_seen_at"])
    else:
        stamps, unparseable = [""] * n, {}
    warnings = {
        i: f"unparseable last_seen_at '{printable(value, 60)}'"
        for i, value in unparseable.items()
        if i not in problems
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

    keep = np.ones(n, dtype=bool)
    keep[list(problems)] = False
    order = np.flatnonzero(keep)
    in_file_order = bool(np.all(np.diff(lines[order]) > 0))
    if not in_file_order:  # rows from the careful parser were appended after pyarrow's
        order = order[np.argsort(lines[order], kind="stable")]
    if problems or not in_file_order:
        table = table.take(order)
        stamps = np.asarray(stamps, dtype=object)[order].tolist()

    def column(name: str) -> list[str]:
        return table[name].to_pylist() if name in table.column_names else [""] * table.num_rows

    return SourceSnapshot(
        system=source.system,
        file=source.file,
        rows_read=rows.rows_read,
        keys=column(KEY),
        entity_types=column("entity_type"),
        location_refs=column("location_ref"),
        last_seen_at=stamps,
        lines=table["line"].to_pylist(),
        rejected=rejected,
        fingerprint=fingerprint,
    )


def _field_problems(table: pa.Table, system: str, max_key_length: int) -> dict[int, str]:
    """Rows breaking a field rule, with the reason: a vectorized pre-filter, each hit confirmed in Python."""
    key = table[KEY]
    flagged = pc.or_(
        pc.match_substring_regex(key, _SUSPECT_KEY), pc.greater(pc.utf8_length(key), max_key_length)
    )
    has_system = "source_system" in table.column_names
    if has_system:
        foreign = pc.invert(pc.is_in(table["source_system"], value_set=pa.array(["", system])))
        flagged = pc.or_(flagged, foreign)
    hits = np.flatnonzero(flagged.to_numpy(zero_copy_only=False)).tolist()
    keys = key.take(hits).to_pylist()
    systems = table["source_system"].take(hits).to_pylist() if has_system else [""] * len(hits)
    problems = {}
    for i, k, s in zip(hits, keys, systems, strict=True):
        problem = _row_problem(k, s, system, max_key_length)
        if problem:
            problems[i] = problem
    return problems


def _row_problem(key: str, source_system: str, system: str, max_key_length: int) -> str:
    """Why a row's fields make it unusable ("" if they do not): the reference for the vectorized pre-filter."""
    control = _CONTROL.search(key)
    if control:
        return f"control character {_escape_char(control)} in key"
    if not key.strip():
        return "empty key"
    if len(key) > max_key_length:
        return f"key longer than {max_key_length} characters ({len(key)})"
    if source_system not in ("", system):
        return f"source_system '{printable(source_system, 40)}' differs from the system being read ({system})"
    return ""


def _normalize_timestamps(values: pa.ChunkedArray) -> tuple[list[str], dict[int, str]]:
    """last_seen_at in canonical UTC ISO 8601 ("" stays ""), and the unparseable values by row index."""
    stamps = values.to_pylist()
    canonical = pc.match_substring_regex(values, f"^$|{_CANONICAL_UTC}").to_numpy(zero_copy_only=False)
    todo = np.flatnonzero(~canonical).tolist()
    if not todo:
        return stamps, {}
    distinct = list(dict.fromkeys(stamps[i] for i in todo))  # parse each distinct value once
    parsed = dict(zip(distinct, _to_canonical_utc(distinct), strict=True))
    unparseable = {}
    for i in todo:
        value = stamps[i]
        stamps[i] = parsed[value] or ""
        if not parsed[value]:
            unparseable[i] = value
    return stamps, unparseable


def _to_canonical_utc(texts: list[str]) -> list[str | None]:
    """ISO 8601 dates or datetimes (naive ones are UTC) as e.g. 2026-01-31T10:00:00+00:00; None if unparseable."""
    rewritten = pc.replace_substring_regex(pa.array(texts, pa.string()), _UTC_SPELLING, r"\1T\2+00:00")
    ok = pc.match_substring_regex(rewritten, _CANONICAL_UTC).to_numpy(zero_copy_only=False)
    result = [value if good else None for value, good in zip(rewritten.to_pylist(), ok.tolist(), strict=True)]
    rest = [i for i, value in enumerate(result) if value is None and _ISO_START.match(texts[i])]
    for i, value in zip(rest, _parse_iso8601([texts[i] for i in rest]), strict=True):
        result[i] = value
    return result


def _parse_iso8601(texts: list[str]) -> list[str | None]:
    """The general case, with pandas' ISO 8601 parser (offsets, fractions, dates, basic format)."""
    if not texts:
        return []
    parsed = pd.to_datetime(pd.Series(texts, dtype=object), format="ISO8601", utc=True, errors="coerce")
    stamps = parsed.to_numpy(dtype="datetime64[us]")
    missing = np.isnat(stamps)
    seconds = stamps.astype("datetime64[s]")
    shown = np.datetime_as_string(seconds, unit="s").tolist()
    with_fraction = np.flatnonzero(~missing & (stamps != seconds))
    for i, text in zip(
        with_fraction.tolist(), np.datetime_as_string(stamps[with_fraction], unit="us").tolist()
    ):
        shown[i] = text
    return [None if gap else f"{text}+00:00" for text, gap in zip(shown, missing.tolist(), strict=True)]

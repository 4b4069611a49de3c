"""The structure of a CSV export: header, records and fields (RFC 4180), turned into string columns.

Two paths, both ending in pyarrow's CSV parser with quoting off:

* one pass: a body without quotes, valid UTF-8 (two checks at C speed), goes to pyarrow whole; lines of the
  wrong width (blank ones among them) come back from pyarrow with their line numbers, and are the only lines
  Python looks at;
* careful: numpy locates the line ends and counts each line's commas and quotes; only the suspicious lines
  (quotes that are not simple, a wrong field count, bytes that are not UTF-8, blank) are parsed one by one
  with Python's strict csv module, and the clean rest still goes to pyarrow in one piece.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from keysync.domain.observations import RejectedRow
from keysync.infrastructure.sources import (
    BLANKS,
    FIELDS,
    KEY,
    RAW_KEEP,
    ParsedRows,
    PhysicalLines,
    SourceFile,
    field_label,
    is_blank,
    is_utf8,
    printable,
    take_sorted,
)

_BOM = b"\xef\xbb\xbf"
_MAX_HEADER_BYTES = 1 << 16  # a header is a few column names: a longer line 1 is not one
_MAX_RECORD_LINES = 100  # a quoted field may run over this many line ends before we call the quote left open
# pyarrow parses in blocks of this many bytes (its default) and refuses a line longer than a block.
_BLOCK_SIZE = 1 << 20
# A line whose fields are each wholly quoted or free of quotes, with no comma, quote or line end inside the
# quotes (e.g. a QUOTE_ALL export): dropping its quotes leaves exactly its fields, so pyarrow can take it.
_SIMPLY_QUOTED = r'^(?:"[^",\r\n]*"|[^",\r\n]*)(?:,(?:"[^",\r\n]*"|[^",\r\n]*))*(?:\r\n|\r|\n)?$'


def parse_csv(data: bytes, source: SourceFile) -> ParsedRows:
    """The rows of a CSV export (header on line 1); SourceUnavailable if it has no usable header."""
    if not data or data.isspace():
        raise source.unavailable("empty file, expected a header line")
    header, start = _split_header(data)
    names = _header_names(header, source)
    return _read_whole_body(data, start, names, source) or _parse_line_by_line(data, start, names, source)


def _split_header(data: bytes) -> tuple[bytes, int]:
    """The first physical line (the header), and where the next line starts."""
    ends = [i for i in (data.find(b"\n"), data.find(b"\r")) if i >= 0]
    if not ends:
        return data, len(data)
    end = min(ends)
    return data[:end], end + 2 if data[end : end + 2] == b"\r\n" else end + 1


def _header_names(header: bytes, source: SourceFile) -> list[str]:
    """Column names by position. Unknown columns are allowed and ignored; known ones must not repeat."""
    if len(header) > _MAX_HEADER_BYTES:
        raise source.unavailable(f"line 1 is not a usable CSV header (longer than {_MAX_HEADER_BYTES} bytes)")
    try:
        written = _csv_fields(header.decode("utf-8"))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise source.unavailable(f"line 1 is not a usable CSV header ({exc})") from exc
    names = [name.strip().lower() for name in written]
    if KEY not in names:
        found = printable(",".join(written), 100)  # as the file has it
        raise source.unavailable(f"no usable header: line 1 has no {KEY} column (found: {found})")
    for name in FIELDS:
        if names.count(name) > 1:
            raise source.unavailable(f"no usable header: column {name} appears {names.count(name)} times")
    return names


def _csv_fields(text: str) -> list[str]:
    """One RFC 4180 record (it may span lines inside quotes); csv.Error if it is not exactly one record."""
    return next(csv.reader([text], strict=True))


# ------------------------------------------------------------------------------------------------------------
# The one-pass path


def _read_whole_body(data: bytes, start: int, names: list[str], source: SourceFile) -> ParsedRows | None:
    """pyarrow reads all lines from ``start`` in one pass, if no line needs the careful parser; else None.

    That is when the body holds no quote and is valid UTF-8: then every line is either a row or, with the wrong
    number of commas, an invalid row that pyarrow hands over with its line number (a blank line among them). An
    empty line comes out as a row of empty fields, as ",,,," does: a rare sight, left to the careful path. With a
    single column a blank line would look like an empty key, so that case takes the careful path too.
    """
    n_cols = len(names)
    if n_cols == 1 or data.find(b'"', start) >= 0 or not is_utf8(data):
        return None
    invalid: list[tuple[int, str]] = []
    table = _arrow_csv(memoryview(data)[start:], n_cols, invalid=invalid)
    if table is None or _has_empty_rows(table):
        return None
    slow = _SlowRecords()
    for number, text in invalid:
        if is_blank(text.encode()):
            slow.rejected.append(source.reject(number + 1, "blank line", text[:RAW_KEEP], "warning"))
        else:
            slow.rows_read += 1
            reason = f"wrong number of fields: {text.count(',') + 1}, expected {n_cols}"
            slow.rejected.append(source.reject(number + 1, reason, text[:RAW_KEEP]))
    lines = np.arange(2, table.num_rows + len(invalid) + 2)  # the header is line 1
    if invalid:
        lines = np.delete(lines, [number - 1 for number, _ in invalid])
    return _csv_rows(names, table, lines, slow, table.num_rows + slow.rows_read)


def _has_empty_rows(table: pa.Table) -> bool:
    """Whether a row has every field empty (an empty line, or only commas)."""
    empty = np.flatnonzero(pc.equal(pc.binary_length(table.column(0)), 0).to_numpy(zero_copy_only=False))
    for column in table.columns[1:]:
        if not len(empty):
            break
        empty = empty[pc.equal(pc.binary_length(take_sorted(column, empty)), 0).to_numpy(zero_copy_only=False)]
    return len(empty) > 0


def _arrow_csv(
    data: bytes | memoryview,
    n_cols: int,
    block_size: int = _BLOCK_SIZE,
    invalid: list[tuple[int, str]] | None = None,
) -> pa.Table | None:
    """Parse quote-free, valid UTF-8 CSV lines, all columns as strings; None if a line is longer than
    ``block_size`` bytes, or has the wrong width and ``invalid`` is None. Else such lines are left out and listed
    in ``invalid`` as (line number from 1, text without its line end)."""
    names = [f"c{i}" for i in range(n_cols)]
    if not len(data):
        return pa.table({name: pa.array([], pa.string()) for name in names})
    # pyarrow drops a byte order mark at the start of what it parses; here that is a row's first field, where a
    # BOM is data (the file's own BOM is gone already). A row in front keeps it, and is dropped after parsing.
    lead = bytes(data[: len(_BOM)]) == _BOM
    if lead:
        data = b",".join([b"x"] * n_cols) + b"\n" + bytes(data)
    handler = None
    if invalid is not None:

        def handler(row: pacsv.InvalidRow) -> str:
            if row.number is None:  # unknown only when parsing in threads, which this does not
                raise RuntimeError("pyarrow gave no line number")
            invalid.append((row.number - lead, row.text))
            return "skip"

    try:
        table = pacsv.read_csv(
            pa.py_buffer(data),
            # One thread: the line numbers of invalid rows are known only then (systems are read in parallel).
            read_options=pacsv.ReadOptions(column_names=names, block_size=block_size, use_threads=invalid is None),
            parse_options=pacsv.ParseOptions(
                quote_char=False,
                newlines_in_values=False,
                ignore_empty_lines=invalid is None,
                invalid_row_handler=handler,
            ),
            # UTF-8 was checked already; strings are never null ("" stays "").
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()), check_utf8=False),
        )
    except pa.ArrowInvalid:
        return None
    return table.slice(1) if lead else table


# ------------------------------------------------------------------------------------------------------------
# The careful path


def _parse_line_by_line(data: bytes, start: int, names: list[str], source: SourceFile) -> ParsedRows:
    """Triage the lines from ``start`` at C speed, parse the suspicious ones one by one and the rest with pyarrow."""
    lines = PhysicalLines(data, start)
    suspicious, odd_quotes = _triage(lines, len(names))
    slow = _parse_suspicious(lines, np.flatnonzero(suspicious), odd_quotes, names, source)
    clean = ~suspicious
    clean[slow.consumed] = False  # continuation lines of records with a quoted field running over a line end
    clean_lines = np.flatnonzero(clean)
    buffer = lines.join(clean_lines)
    if lines.find(b'"') >= 0:  # only simply quoted lines hold quotes now: dropping them leaves the fields
        buffer = bytes(buffer).translate(None, b'"')
    longest = int((lines.ends[clean_lines] - lines.starts[clean_lines]).max(initial=0))
    table = _arrow_csv(buffer, len(names), block_size=max(_BLOCK_SIZE, longest + 1))
    if table is None or table.num_rows != len(clean_lines):
        raise RuntimeError(f"{source.file}: pyarrow disagrees with the line triage")  # a bug, not bad data
    return _csv_rows(names, table, clean_lines + 2, slow, len(clean_lines) + slow.rows_read, lines)


def _triage(lines: PhysicalLines, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Which lines need the careful parser, and which lines hold an odd number of quotes.

    In RFC 4180 every quote flips "inside a quoted field" (an escaped quote flips twice), so a record that
    opens a quote on one line closes it on the next line with an odd number of quotes.
    """
    suspicious = lines.count_per_line(b",") != n_cols - 1  # catches blank lines, unless there is one column
    odd_quotes = np.empty(0, dtype=np.int64)
    if lines.find(b'"') >= 0:
        counts = lines.count_per_line(b'"')
        quoted = np.flatnonzero(counts)
        odd_quotes = np.flatnonzero(counts % 2)
        simple = pc.match_substring_regex(lines.as_arrow(quoted), _SIMPLY_QUOTED)
        suspicious[quoted[~simple.to_numpy(zero_copy_only=False)]] = True
    suspicious[lines.undecodable()] = True
    if n_cols == 1:  # a blank line starts with a blank (or is empty): check those few candidates
        candidates = np.flatnonzero(np.isin(lines.first_bytes(), list(BLANKS)))
        suspicious[[i for i in candidates.tolist() if is_blank(lines[i])]] = True
        # '""' alone: without its quotes an empty line, which pyarrow would skip rather than read as a row.
        suspicious[(lines.content_ends() - lines.starts == 2) & (lines.first_bytes() == ord('"'))] = True
    return suspicious, odd_quotes


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
    lines: PhysicalLines, suspicious: np.ndarray, odd_quotes: np.ndarray, names: list[str], source: SourceFile
) -> _SlowRecords:
    out = _SlowRecords()
    used = sorted((i for i, name in enumerate(names) if name in FIELDS), key=lambda i: names[i] != KEY)
    next_free = 0
    for i in suspicious.tolist():
        if i < next_free:
            continue  # already part of a multi-line record
        line_no = i + 2  # the header is line 1
        if is_blank(lines[i]):
            out.rejected.append(source.reject(line_no, "blank line", lines.text(i, limit=RAW_KEEP), "warning"))
            continue
        out.rows_read += 1
        last, fields, problem = _parse_record(lines, i, odd_quotes, len(names))
        out.consumed.extend(range(i + 1, last + 1))
        next_free = last + 1
        raw = lines.text(i, last, limit=RAW_KEEP)
        problem = problem or _undecodable_field(fields, names, used)
        if problem:
            out.rejected.append(source.reject(line_no, problem, raw))
        else:
            out.lines.append(line_no)
            out.fields.append(_decoded(fields, used))
            out.raws.append(raw)
    return out


def _parse_record(lines: PhysicalLines, i: int, odd_quotes: np.ndarray, n_cols: int) -> tuple[int, list[str], str]:
    """Parse the record starting at line i: (its last line, its fields as Latin-1 text, the problem or "")."""
    text = lines.latin1(i)
    if '"' not in text:
        if text.count(",") != n_cols - 1:  # not split: a line of a million commas would be a million fields
            return i, [], f"wrong number of fields: {text.count(',') + 1}, expected {n_cols}"
        fields = text.split(",")
    else:
        try:
            fields = _csv_fields(text)
        except csv.Error as exc:
            if "unexpected end of data" not in str(exc):
                return i, [], _quoting_problem(exc)
            return _multiline_record(lines, i, odd_quotes, n_cols) or (i, [], "quote left open")
    if len(fields) != n_cols:
        return i, fields, f"wrong number of fields: {len(fields)}, expected {n_cols}"
    return i, fields, ""


def _multiline_record(
    lines: PhysicalLines, i: int, odd_quotes: np.ndarray, n_cols: int
) -> tuple[int, list[str], str] | None:
    """Line i leaves a quote open: if the next line that can close it does so into one good record, that."""
    k = int(np.searchsorted(odd_quotes, i, side="right"))
    if k == len(odd_quotes) or odd_quotes[k] - i > _MAX_RECORD_LINES:
        return None
    last = int(odd_quotes[k])
    try:
        fields = _csv_fields(lines.latin1(i, last))
    except csv.Error:
        return None
    return (last, fields, "") if len(fields) == n_cols else None


def _quoting_problem(exc: csv.Error) -> str:
    message = str(exc)
    if "expected after" in message:
        return "unexpected text after a closing quote"
    if "field larger than field limit" in message:
        return f"a quoted field longer than {csv.field_size_limit()} bytes"
    return f"malformed quoting ({message})"


def _undecodable_field(fields: list[str], names: list[str], used: list[int]) -> str:
    """Which used field (Latin-1 text, see ``PhysicalLines.latin1``) is not UTF-8, if any: "" if none."""
    for pos in used:
        if not fields[pos].isascii() and not is_utf8(fields[pos].encode("latin-1")):
            return f"{field_label(names[pos])} is not valid UTF-8"
    return ""


def _decoded(fields: list[str], used: list[int]) -> list[str]:
    """The used fields decoded from Latin-1 text to what they are, UTF-8 ("" for the fields not used)."""
    decoded = [""] * len(fields)
    for pos in used:
        text = fields[pos]
        decoded[pos] = text if text.isascii() else text.encode("latin-1").decode("utf-8")
    return decoded


def _csv_rows(
    names: list[str],
    table: pa.Table,
    lines: np.ndarray,
    slow: _SlowRecords,
    rows_read: int,
    physical: PhysicalLines | None = None,
) -> ParsedRows:
    """Join pyarrow's rows (columns c0, c1, ...) and the careful parser's into one table of known fields.

    The raw text of pyarrow's rows comes from the ``physical`` lines if given, else from the fields joined
    back (exact when the file holds no quotes).
    """
    n_fast = table.num_rows
    columns = {}
    for name in FIELDS:
        if name in names:
            pos = names.index(name)
            extra = pa.array([fields[pos] for fields in slow.fields], pa.string())
            columns[name] = pa.chunked_array([*table.column(pos).chunks, extra], pa.string())
    columns["line"] = pa.chunked_array([pa.array(lines, pa.int64()), pa.array(slow.lines, pa.int64())])

    def raw_lines(indexes: Sequence[int]) -> list[str]:
        fast = [i for i in indexes if i < n_fast]
        if physical is None:  # each field cut to RAW_KEEP characters: the line's first RAW_KEEP stay the same
            fast_columns = [
                pc.utf8_slice_codeunits(take_sorted(column, fast), 0, RAW_KEEP).to_pylist() for column in table.columns
            ]
            fast_raws = iter([",".join(values) for values in zip(*fast_columns, strict=True)])
        else:  # they went to pyarrow: UTF-8
            fast_raws = iter(physical.texts([int(lines[i]) - 2 for i in fast], limit=RAW_KEEP))
        return [next(fast_raws) if i < n_fast else slow.raws[i - n_fast] for i in indexes]

    return ParsedRows(pa.table(columns), raw_lines, rows_read, slow.rejected)

"""The structure of a JSON export, an array of objects or JSON Lines, turned into string columns.

A record is an object whose known fields are strings, numbers or null (null or absent means ""); it needs a
source_key. A number is read as the text it is written as, as a CSV cell would be: 12345 is "12345", 1.50 is "1.50"
and 1e3 is "1e3" (not 1000). true and false are not text, and make the record rejected. Unknown fields are ignored.
For an array, a row's "line" is its element's 1-based index.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from keysync.domain.observations import RejectedRow
from keysync.infrastructure.sources import (
    FIELDS,
    KEY,
    RAW_KEEP,
    UNDECODABLE,
    ParsedRows,
    PhysicalLines,
    SourceFile,
    decode_line,
    field_label,
)

_JSON_SPACE = " \t\r\n"
_NOT_SPACE = re.compile(rb"[^ \t\r\n]")
_NOT_SPACE_TEXT = re.compile(r"[^ \t\r\n]")
_RECORD = pa.struct([(name, pa.string()) for name in FIELDS])
_SCHEMA = pa.schema(list(_RECORD))
_ARROW_OPTIONS = pajson.ParseOptions(explicit_schema=_SCHEMA, unexpected_field_behavior="ignore")


class _Number(str):
    """A JSON number, as the text it is written as."""


# Numbers stay text: json hands parse_int and parse_float the number's own characters.
_DECODER = json.JSONDecoder(parse_int=_Number, parse_float=_Number)
# The C scanner behind json.loads, without json.loads' per-call overhead (it matters over 1M lines).
_scan_json = _DECODER.scan_once
_BLOCK_SIZE = 1 << 20  # pyarrow's default: bytes parsed in one go


def parse_json(data: bytes, source: SourceFile) -> ParsedRows:
    """The rows of a JSON export; an array that does not parse is SourceUnavailable."""
    first = _NOT_SPACE.search(data)
    if first is None:
        raise source.unavailable("empty file, expected JSON")
    if first.group() == b"[":
        return _parse_array(data, source)
    parsed = _parse_lines(data, source)
    if parsed.table.num_rows == 0 and first.group() == b"{" and _one_object(data):
        raise source.unavailable(
            "one JSON object over several lines: expected an array of records ([{...}, {...}]) "
            "or JSON Lines (one record per line)"
        )
    return parsed


def _one_object(data: bytes) -> bool:
    """Whether the whole file is a single JSON object over several lines (pretty-printed)."""
    text = data.strip()
    if b"\n" not in text and b"\r" not in text:
        return False  # one line: JSON Lines of one record, which the line's own reasons describe
    try:
        return isinstance(json.loads(decode_line(data)), dict)
    except (ValueError, RecursionError):
        return False


def _parse_array(data: bytes, source: SourceFile) -> ParsedRows:
    try:
        elements = _DECODER.decode(decode_line(data))
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise source.unavailable(f"not valid JSON: {exc.msg} at {where}") from exc
    except RecursionError as exc:
        raise source.unavailable("not usable JSON: nested too deeply") from exc

    def raw_of(i: int) -> str:
        try:
            shown = json.dumps(_shortened(elements[i]), ensure_ascii=False)
        except RecursionError:
            shown = "(nested too deeply to show)"
        return f"[element {i + 1}] {shown}"

    rejected: list[RejectedRow] = []
    records = _records(list(range(1, len(elements) + 1)), elements, raw_of, rejected, source)
    return _rows(records, len(elements), rejected, source)


def _parse_lines(data: bytes, source: SourceFile) -> ParsedRows:
    """JSON Lines: each line that is not blank must hold exactly one JSON value.

    Lines framed as one object ("{" first, "}" last, valid UTF-8) go to pyarrow together: as "}" is never
    followed by "{" inside a JSON value, no object can span such lines, so one row per line proves one
    object per line. The other lines, or all of them if pyarrow refuses any, are parsed one by one.
    """
    lines = PhysicalLines(data)
    careful = ~_framed_objects(lines)
    framed = np.flatnonzero(~careful)
    longest = int((lines.ends[framed] - lines.starts[framed]).max(initial=0))
    table = _arrow_json(lines.join(framed), len(framed), max(_BLOCK_SIZE, longest + 1))
    if table is None:  # some framed line is not a plain record: find which, one by one
        careful[:] = True
        framed = framed[:0]
        table = _SCHEMA.empty_table()
    rejected: list[RejectedRow] = []
    numbers: list[int] = []
    values: list[object] = []
    texts: list[str] = []
    for i in np.flatnonzero(careful).tolist():
        text = lines.text(i)
        value, problem = _json_value(text)
        if problem:
            rejected.append(source.reject(i + 1, problem, text, "warning" if problem == "blank line" else "error"))
        else:
            numbers.append(i + 1)
            values.append(value)
            texts.append(text[:RAW_KEEP])
    rows_read = len(framed) + len(numbers) + sum(row.severity == "error" for row in rejected)

    def framed_raw(i: int) -> str:
        return lines.text(int(framed[i]), limit=RAW_KEEP)

    from_arrow = _Records(table, framed + 1, framed_raw)
    from_python = _records(numbers, values, texts.__getitem__, rejected, source)
    return _rows(from_arrow.concat(from_python), rows_read, rejected, source)


def _framed_objects(lines: PhysicalLines) -> np.ndarray:
    """Per line: whether it is framed as one JSON object, "{" to "}" with no padding, in valid UTF-8."""
    ends = lines.content_ends()
    last = lines.bytes[np.maximum(ends - 1, 0)]
    framed = (ends > lines.starts) & (lines.first_bytes() == ord("{")) & (last == ord("}"))
    framed[lines.undecodable()] = False  # pyarrow would let bytes that are not UTF-8 through
    return framed


def _arrow_json(data: bytes | memoryview, n_lines: int, block_size: int) -> pa.Table | None:
    """Parse framed JSON Lines at C speed; None unless each line is one object with string/null fields.

    Given valid UTF-8, pyarrow is as strict as json.loads (stricter on huge numbers). ``block_size`` must be
    more than the longest line: pyarrow refuses a line longer than a block.
    """
    if not n_lines:
        return _SCHEMA.empty_table()
    try:
        options = pajson.ReadOptions(block_size=block_size)
        table = pajson.read_json(pa.py_buffer(data), read_options=options, parse_options=_ARROW_OPTIONS)
    except (pa.ArrowException, ValueError):
        return None
    return table if table.num_rows == n_lines else None


def _shortened(value: object) -> object:
    """A JSON value cut down to what shows its first RAW_KEEP characters (strings and containers cut to RAW_KEEP):
    dumped, it starts as the whole value's dump does, and a huge value is never dumped whole."""
    if isinstance(value, _Number):  # shown as the number it is, not as a string
        return int(value) if value.lstrip("-").isdigit() else float(value)
    if isinstance(value, str):
        return value[:RAW_KEEP]
    if isinstance(value, list):
        return [_shortened(item) for item in value[:RAW_KEEP]]
    if isinstance(value, dict):
        items = list(itertools.islice(value.items(), RAW_KEEP))
        return {_shortened(key): _shortened(item) for key, item in items}
    return value


def _json_value(line: str) -> tuple[object, str]:
    """The one JSON value a line holds (with JSON whitespace around it), or why it does not hold exactly one.

    The line is not stripped first: stripping a huge line would copy it."""
    first = _NOT_SPACE_TEXT.search(line)
    if first is None:
        return None, "blank line"
    start, stop = first.start(), len(line.rstrip(_JSON_SPACE))
    try:
        value, end = _scan_json(line, start)
    except (StopIteration, ValueError, RecursionError):
        end = -1
    return (value, "") if end == stop else (None, _json_error(line[start:stop]))


def _json_error(text: str) -> str:
    """Why a line is not one JSON value, in json's words (parsed again only to get the message)."""
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return f"invalid JSON: {exc.msg} (column {exc.colno})"
    except RecursionError:
        return "invalid JSON: nested too deeply"
    return "invalid JSON"  # pragma: no cover - the scanner and json.loads agree


@dataclass
class _Records:
    """JSON records as a table of string-or-null FIELDS, with their lines and a way to their raw text."""

    table: pa.Table
    lines: np.ndarray
    raw_of: Callable[[int], str]  # by table index

    def concat(self, other: _Records) -> _Records:
        n = self.table.num_rows

        def raw_of(i: int) -> str:
            return self.raw_of(i) if i < n else other.raw_of(i - n)

        table = pa.concat_tables([self.table, other.table])
        return _Records(table, np.concatenate([self.lines, other.lines]), raw_of)


def _records(
    lines: list[int],
    values: list[object],
    raw_of: Callable[[int], str],
    rejected: list[RejectedRow],
    source: SourceFile,
) -> _Records:
    """The JSON values that are objects with string (or null) fields, as records; the others are rejected."""
    structs = _as_structs(values)
    usable = np.arange(len(values))
    if structs is None:  # some value is not a plain record: find which, one by one
        problems = {i: problem for i, value in enumerate(values) if (problem := _json_problem(value))}
        rejected += [source.reject(lines[i], problem, raw_of(i)) for i, problem in problems.items()]
        usable = np.array([i for i in range(len(values)) if i not in problems], dtype=np.int64)
        structs = pa.array([values[i] for i in usable.tolist()], type=_RECORD)
    table = pa.Table.from_struct_array(structs) if len(structs) else _SCHEMA.empty_table()

    def usable_raw(i: int) -> str:
        return raw_of(int(usable[i]))

    return _Records(table, np.asarray(lines, dtype=np.int64)[usable], usable_raw)


def _as_structs(values: list[object]) -> pa.StructArray | None:
    """All values as arrow records at C speed, or None if any is not an object with string/null fields (a number
    is a string here, a _Number)."""
    if set(map(type, values)) - {dict}:  # arrow would also take a list of pairs as an object
        return None
    try:
        return pa.array(values, type=_RECORD)
    except (pa.ArrowException, TypeError, ValueError):  # a non-string field, or a lone surrogate
        return None


def _json_problem(value: object) -> str:
    """Why a JSON value is not a usable record ("" if it is); a missing key is found later, vectorized."""
    if not isinstance(value, dict):
        return f"not a JSON object ({_json_type(value)})"
    for name in FIELDS:
        field_value = value.get(name)
        if field_value is None:
            continue
        if not isinstance(field_value, str):  # numbers are _Number, a str
            return f"{name} is not a string or a number ({_json_type(field_value)})"
        if UNDECODABLE.search(field_value):
            return f"{field_label(name)} is not valid UTF-8"
    return ""


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", _Number: "number", float: "NaN or Infinity"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _rows(records: _Records, rows_read: int, rejected: list[RejectedRow], source: SourceFile) -> ParsedRows:
    """Rows from records: one without a key is rejected, other nulls become ""."""
    missing_key = records.table[KEY].is_null().to_numpy(zero_copy_only=False)
    for i in np.flatnonzero(missing_key).tolist():
        rejected.append(source.reject(int(records.lines[i]), f"missing {KEY}", records.raw_of(i)))
    kept = np.flatnonzero(~missing_key)
    table = records.table.filter(pa.array(~missing_key)) if len(kept) < len(missing_key) else records.table
    columns = {name: pc.fill_null(table[name], "") for name in FIELDS}
    table = pa.table({**columns, "line": pa.array(records.lines[kept], pa.int64())})

    def raw_lines(indexes: Sequence[int]) -> list[str]:
        return [records.raw_of(int(kept[i])) for i in indexes]

    return ParsedRows(table, raw_lines, rows_read, rejected)

"""Report columns written as CSV in Arrow: a million rows are escaped, quoted and joined in C, with no Python
string per cell. The formula rule (keysync.infrastructure.cell_safety) and RFC 4180 quoting (``report_files``)
are applied to whole arrays here; their one-value versions are the reference these agree with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from keysync.domain.columns import Runs
from keysync.infrastructure.cell_safety import FORMULA_TRIGGERS, QUOTE, neutralised, neutralised_values
from keysync.infrastructure.report_files import quoted_cell

_TRIGGER_BYTE = np.zeros(256, dtype=bool)
_TRIGGER_BYTE[[ord(c) for c in FORMULA_TRIGGERS]] = True
_TRIGGER_AT_START = "^[=+\\-@\t\r]"  # the same test as a regular expression, for arrays numpy cannot read
_STRING_BYTES = 2**31 - 1  # the most text a ``string`` array holds (32-bit offsets)
_QUOTED_BYTE = np.zeros(256, dtype=bool)
_QUOTED_BYTE[[ord(c) for c in '",\r\n']] = True  # ASCII: in UTF-8 such a byte is always that character
_BELOW = max(map(ord, '",\r\n')) + 1  # every one of them is a byte below this

# Rows joined into lines at a time: enough to keep the per-call cost small, few enough to stay in the CPU's cache.
_ROWS_PER_BLOCK = 8192
_STRING_LIMIT = 2**31 - 1  # the bytes a ``string`` array can hold (32-bit offsets)
_OFFSET = {pa.string(): np.dtype(np.int32), pa.large_string(): np.dtype(np.int64)}
_EMPTY = pc.JoinOptions(null_handling="replace", null_replacement="")  # a null cell is written as nothing


def write_columns(handle: BinaryIO, columns: Mapping[str, Sequence[Any]], escape_formulas: bool) -> None:
    """The CSV file, built in Arrow: each column is escaped and quoted where needed. Runs of rows in which no cell
    is quoted (nearly all of them) are written by pyarrow's CSV writer, as they are; a block of rows holding a quoted
    cell has its cells joined into lines in C and the lines' bytes written as they are. (pyarrow's own writer can
    only quote every string or none, and refuses unquoted values that need quotes.)"""
    handle.write((",".join(quoted_cell(str(name)) for name in columns) + "\n").encode("utf-8"))
    arrays = [_column(values, escape_formulas) for values in columns.values()]
    rows = {len(array) for array in arrays}
    if len(rows) > 1:
        raise ValueError(f"report columns differ in length: {dict(zip(columns, map(len, arrays), strict=True))}")
    total = rows.pop() if rows else 0
    quoted = _blocks_quoted(arrays, total)
    out = pa.PythonFile(handle, mode="w")
    block = 0
    while block < len(quoted):
        start = block * _ROWS_PER_BLOCK
        if quoted[block]:
            lines = _lines([_contiguous(array.slice(start, _ROWS_PER_BLOCK)) for array in arrays])
            start_byte, end_byte = _text_span(lines)
            handle.write(lines.buffers()[2].slice(start_byte, end_byte - start_byte))
            block += 1
            continue
        end = block + 1
        while end < len(quoted) and not quoted[end]:
            end += 1
        length = (end - block) * _ROWS_PER_BLOCK
        plain = pa.table([array.slice(start, length) for array in arrays], names=[str(i) for i in range(len(arrays))])
        pa_csv.write_csv(plain, out, _PLAIN)  # batch by batch: millions of rows are never one buffer
        block = end


# No header, no quotes (every cell that needs them is in a block joined here), a null as nothing, lines end in "\n".
_PLAIN = pa_csv.WriteOptions(include_header=False, quoting_style="none")


def _blocks_quoted(arrays: list[pa.Array | pa.ChunkedArray], total: int) -> np.ndarray:
    """For each block of rows, whether a cell in it is quoted."""
    quoted = np.zeros(-(-total // _ROWS_PER_BLOCK), dtype=bool)
    for array in arrays:
        quoted[_quoted_rows(array) // _ROWS_PER_BLOCK] = True
    return quoted


def _quoted_rows(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The rows whose cell is quoted: a quoted cell, and only a quoted one, holds a ``"``, which memchr finds at
    several GB/s (most columns hold none)."""
    found: list[np.ndarray] = []
    base = 0
    for chunk in array.chunks if isinstance(array, pa.ChunkedArray) else [array]:
        buffers = text_bytes(chunk)
        if buffers is not None:  # integers are never quoted
            offsets, data = buffers
            text = data[offsets[0] : offsets[-1]]
            if text.tobytes().find(b'"') >= 0:
                at = np.flatnonzero(text == ord('"')) + offsets[0]
                found.append(np.unique(np.searchsorted(offsets, at, side="right") - 1) + base)
        base += len(chunk)
    return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)


def _column(values: Sequence[Any], escape_formulas: bool) -> pa.Array | pa.ChunkedArray:
    """One column as an Arrow array of integers, or of text escaped and quoted as it will be written."""
    if isinstance(values, Runs):  # one Arrow chunk per run: a repeated value is never a list entry per row
        parts = values.parts
        return _chunked(
            [_repeated(*p, escape_formulas) if isinstance(p, tuple) else _array(p, escape_formulas) for p in parts]
        )
    if _same_text(values):  # a run id, a time, a change kind on every row: one value, repeated in C
        return _repeated(values[0], len(values), escape_formulas)
    return _array(values, escape_formulas)


def _repeated(value: Any, count: int, escape_formulas: bool) -> pa.Array:
    if not isinstance(value, str):
        return _array([value] * count, escape_formulas)
    return pa.repeat(pa.scalar(quoted_cell(neutralised(value) if escape_formulas else value), pa.string()), count)


def _array(values: Sequence[Any] | pa.Array | pa.ChunkedArray, escape_formulas: bool) -> pa.Array | pa.ChunkedArray:
    if isinstance(values, pa.Array | pa.ChunkedArray):
        array = values
    else:
        try:
            array = pa.array(values, from_pandas=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):  # mixed types, e.g. counts and ""
            # Only the text among them is escaped: a count stays a number, even once it is a string here.
            texts = neutralised_values(values) if escape_formulas else values
            return _text(pa.array(["" if v is None else str(v) for v in texts], pa.string()), escape_formulas=False)
    if pa.types.is_dictionary(array.type):
        array = array.cast(array.type.value_type)
    if pa.types.is_integer(array.type):
        return array
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        return _text(array, escape_formulas)
    # Nulls, and anything else (a number with a fraction, a date): as Arrow writes it, never taken for a formula.
    return _text(array.cast(pa.string()), escape_formulas=False)


def _text(array: pa.Array | pa.ChunkedArray, escape_formulas: bool) -> pa.Array | pa.ChunkedArray:
    """A text column as written: a null is empty, a formula is neutralised (``escape_formulas``), and a value
    holding ``"``, ``,``, ``\\r`` or ``\\n`` is quoted (RFC 4180). Quoting is inserting a ``"`` before the value,
    before each ``"`` in it, and after it; the four characters are all below "-", which few bytes of a key are, so
    one comparison per byte finds the candidates and a table lookup keeps the right ones. Several times faster
    than a regular expression per value."""
    if isinstance(array, pa.ChunkedArray):
        return _chunked([_text(chunk, escape_formulas) for chunk in array.chunks])
    if array.null_count:
        array = pc.fill_null(array, "")  # also lets numpy read the text
    if escape_formulas:
        array = neutralised_array(array)
    buffers = text_bytes(array)
    assert buffers is not None, array.type  # string or large_string, without nulls
    offsets, data = buffers
    base = int(offsets[0])
    text = data[base : offsets[-1]]
    low = np.flatnonzero(text < _BELOW)
    found = low[_QUOTED_BYTE[text[low]]]
    if not len(found):
        return array
    owners = np.searchsorted(offsets, found + base, side="right") - 1  # the last value starting at or before
    rows = owners[np.concatenate(([True], owners[1:] != owners[:-1]))]  # each once: found is in order
    quotes = text[found] == ord('"')
    at = np.concatenate((offsets[rows], found[quotes] + base, offsets[rows + 1]))
    return with_inserted(array, '"', at, np.concatenate((rows, owners[quotes], rows)))


def _chunked(chunks: list[pa.Array | pa.ChunkedArray]) -> pa.ChunkedArray:
    """Chunks of text or integers as one text column: ``large_string`` if quoting made a chunk one."""
    flat = [c for chunk in chunks for c in (chunk.chunks if isinstance(chunk, pa.ChunkedArray) else [chunk])]
    texts = [c.cast(pa.string()) if pa.types.is_integer(c.type) else c for c in flat]
    kind = pa.large_string() if any(pa.types.is_large_string(t.type) for t in texts) else pa.string()
    return pa.chunked_array([t.cast(kind) for t in texts], kind)


def _same_text(values: Sequence[Any]) -> bool:
    """Whether every value is one and the same string (the ends and the middle first: most columns differ there)."""
    if not values or not isinstance(values, list) or not isinstance(values[0], str):
        return False
    first = values[0]
    return values[-1] == first and values[len(values) // 2] == first and values.count(first) == len(values)


def _contiguous(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _lines(columns: list[pa.Array]) -> pa.Array:
    """The rows of a block as CSV lines, each ending in "\\n", in one string array. An integer is written in digits,
    a null as nothing. Large text is joined with 64-bit offsets, so a block of any size fits."""
    texts = [c.cast(pa.string()) if pa.types.is_integer(c.type) else c for c in columns]
    cells = sum(end - start for start, end in map(_text_span, texts))
    size = cells + len(texts) * len(texts[0])  # and a "," or "\n" after each cell
    kind = pa.string() if size < _STRING_LIMIT else pa.large_string()
    texts = [t.cast(kind) for t in texts]
    texts[-1] = pc.binary_join_element_wise(texts[-1], pa.scalar("", kind), pa.scalar("\n", kind), options=_EMPTY)
    return pc.binary_join_element_wise(*texts, pa.scalar(",", kind), options=_EMPTY)


def _text_span(array: pa.Array) -> tuple[int, int]:
    """Where a string array's values start and end in its data buffer, read from its offsets."""
    width = _OFFSET[array.type]
    offsets = np.frombuffer(array.buffers()[1], width, count=len(array) + 1, offset=array.offset * width.itemsize)
    return int(offsets[0]), int(offsets[-1])


def neutralised_array(array: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """A string array with every formula-like cell quoted. Finding them reads each value's first byte straight
    from Arrow's buffers (a few milliseconds for a million values); the array is only copied when one is found."""
    if isinstance(array, pa.ChunkedArray):
        return pa.chunked_array([neutralised_array(chunk) for chunk in array.chunks], array.type)
    buffers = text_bytes(array)
    if buffers is None:  # nulls, or not text numpy can read: a regular expression per value
        hits = pc.fill_null(pc.match_substring_regex(array, _TRIGGER_AT_START), False)
        if not pc.any(hits).as_py():
            return array
        quoted = pc.binary_join_element_wise(pa.scalar(QUOTE, array.type), array, pa.scalar("", array.type))
        return pc.if_else(hits, quoted, array)
    offsets, data = buffers
    starts = offsets[:-1]
    nonempty = np.flatnonzero(offsets[1:] > starts)
    rows = nonempty[_TRIGGER_BYTE[data[starts[nonempty]]]]
    return with_inserted(array, QUOTE, starts[rows], rows) if len(rows) else array


def text_bytes(array: pa.Array) -> tuple[np.ndarray, np.ndarray] | None:
    """A string array's offsets (one more than its length) and its UTF-8 bytes, as numpy views without copying;
    None for an array that is not ``string`` or ``large_string``, or holds nulls (their bytes are not defined)."""
    if not isinstance(array, pa.Array) or array.null_count:
        return None
    if pa.types.is_string(array.type):
        width: type[np.integer] = np.int32
    elif pa.types.is_large_string(array.type):
        width = np.int64
    else:
        return None
    _validity, offsets_buffer, data_buffer = array.buffers()
    size = np.dtype(width).itemsize
    offsets = np.frombuffer(offsets_buffer, dtype=width, count=len(array) + 1, offset=array.offset * size)
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, dtype=np.uint8)
    return offsets, data


def with_inserted(array: pa.Array, char: str, at: np.ndarray, owners: np.ndarray) -> pa.Array:
    """``array`` (text that ``text_bytes`` reads) with the ASCII character ``char`` inserted before each of the
    byte positions ``at`` of its data (a value's end offset: at that value's end), each insertion part of the
    value at the same place in ``owners``. No value is handled on its own: the text is cut at those positions and
    joined again with ``char`` between the pieces, one copy in C however many values change."""
    buffers = text_bytes(array)
    if buffers is None:
        raise TypeError(f"not text whose bytes numpy can read: {array.type}")
    offsets, data = buffers
    cuts = np.concatenate((offsets[:1], np.sort(at), offsets[-1:])).astype(np.int64)
    pieces = pa.Array.from_buffers(pa.large_binary(), len(cuts) - 1, [None, pa.py_buffer(cuts), pa.py_buffer(data)])
    whole = pa.LargeListArray.from_arrays(pa.array([0, len(pieces)], pa.int64()), pieces)
    joined = pc.binary_join(whole, pa.scalar(char.encode("ascii"), pa.large_binary()))
    start, end = np.frombuffer(joined.buffers()[1], dtype=np.int64, count=2)
    added = np.zeros(len(array) + 1, dtype=np.int64)
    np.cumsum(np.bincount(owners, minlength=len(array)), out=added[1:])
    # A string array holds 2 GiB of text: beyond, it becomes a large_string (64-bit offsets).
    large = pa.types.is_large_string(array.type) or end - start > _STRING_BYTES
    kind, width = (pa.large_string(), np.int64) if large else (pa.string(), np.int32)
    grown = (offsets - offsets[0] + added).astype(width)
    text = joined.buffers()[2].slice(int(start), int(end - start))
    return pa.Array.from_buffers(kind, len(array), [None, pa.py_buffer(grown), text])

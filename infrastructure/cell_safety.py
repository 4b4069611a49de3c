"""Spreadsheet safety for report cells: CSV (formula) injection, neutralised by the OWASP rule.

A spreadsheet that opens a CSV file treats a cell beginning with ``=``, ``+``, ``-`` or ``@`` as a formula, and a
tab or carriage return in front of one hides it from a quick look. Keys come from other systems, so a key such as
``=HYPERLINK("http://x","y")`` must not become a live formula in someone's spreadsheet. The OWASP rule: prefix
such a cell with a single quote, so that it is read as text.

Only text is escaped: a negative number in an integer column is a number, not a formula, and stays as it is. Text
that merely looks like a number (a key ``-1``) is escaped all the same: the rule cannot tell a key from a formula
by its look.

The escaping happens when a report is written; the event store keeps every value as it was read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# The characters that start a formula (or hide one), from OWASP's "CSV Injection" page. All are ASCII, so in
# UTF-8 a text starts with one of them exactly when its first byte is that character's byte.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"
_TRIGGER_BYTE = np.zeros(256, dtype=bool)
_TRIGGER_BYTE[[ord(c) for c in FORMULA_TRIGGERS]] = True
_TRIGGER_AT_START = "^[=+\\-@\t\r]"  # the same test as a regular expression, for arrays numpy cannot read
_STRING_BYTES = 2**31 - 1  # the most text a ``string`` array holds (32-bit offsets)


def neutralised(value: str) -> str:
    """One text cell, quoted if a spreadsheet would read it as a formula."""
    return QUOTE + value if value.startswith(FORMULA_TRIGGERS) else value


def neutralised_values(values: Sequence[Any]) -> list[Any]:
    """A column of Python values: text is neutralised, anything else (numbers, None) is kept as it is."""
    return [QUOTE + v if isinstance(v, str) and v.startswith(FORMULA_TRIGGERS) else v for v in values]


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

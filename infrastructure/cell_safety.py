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


def neutralised(value: str) -> str:
    """One text cell, quoted if a spreadsheet would read it as a formula."""
    return QUOTE + value if value.startswith(FORMULA_TRIGGERS) else value


def neutralised_values(values: Sequence[Any]) -> list[Any]:
    """A column of Python values: text is neutralised, anything else (numbers, None) is kept as it is."""
    return [QUOTE + v if isinstance(v, str) and v.startswith(FORMULA_TRIGGERS) else v for v in values]


def neutralised_array(array: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """A string array with every formula-like cell quoted. Finding them reads each value's first byte straight
    from Arrow's buffers (a few milliseconds for a million values); the array is only copied when one is found,
    which is rare."""
    hits = _formula_cells(array)
    if hits is None:
        return array
    return pc.if_else(hits, pc.binary_join_element_wise(QUOTE, array, ""), array)


def text_bytes(array: pa.Array) -> tuple[np.ndarray, np.ndarray] | None:
    """A string array's offsets (one more than its length) and its UTF-8 bytes, as numpy views without copying;
    None for an array that is not plain ``string`` or holds nulls (their bytes are not defined)."""
    if not isinstance(array, pa.Array) or not pa.types.is_string(array.type) or array.null_count:
        return None
    _validity, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32, count=len(array) + 1, offset=array.offset * 4)
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, dtype=np.uint8)
    return offsets, data


def _formula_cells(array: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray | None:
    """A boolean mask of the cells to quote, or None when there is none."""
    if isinstance(array, pa.ChunkedArray):
        masks = [_formula_cells(chunk) for chunk in array.chunks]
        if all(mask is None for mask in masks):
            return None
        return pa.chunked_array(
            [
                pa.array(np.zeros(len(c), dtype=bool)) if m is None else m
                for c, m in zip(array.chunks, masks, strict=True)
            ],
            pa.bool_(),
        )
    buffers = text_bytes(array)
    if buffers is None:
        hits = pc.fill_null(pc.match_substring_regex(array, _TRIGGER_AT_START), False)
        return hits if pc.any(hits).as_py() else None
    offsets, data = buffers
    starts, ends = offsets[:-1], offsets[1:]
    nonempty = ends > starts
    mask = np.zeros(len(array), dtype=bool)
    mask[nonempty] = _TRIGGER_BYTE[data[starts[nonempty]]]
    return pa.array(mask) if mask.any() else None

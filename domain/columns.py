"""Compact column encodings for the observation batches stored in events.

A batch of 100,000 keys stored as a JSON list costs a Python object and a JSON token per value, to encode and to
decode. Joined into one string, the same column encodes several times faster and reads back with one split.
Keys never contain a line break (control characters are rejected), so "\\n" separates them; any column that does
contain one is kept as a list. Line numbers are mostly consecutive, so they are stored as [first, count] runs.
Both readers also accept plain lists, the encoding of the first stores.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import repeat
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Column = str | list[str]


def pack_text(values: Sequence[str]) -> Column:
    if not values:
        return []
    joined = "\n".join(values)
    # As many separators as gaps means no value holds a line break of its own (counted at C speed).
    return joined if joined.count("\n") == len(values) - 1 else list(values)


def unpack_text(column: Column) -> list[str]:
    return column.split("\n") if isinstance(column, str) else list(column)


def text_array(column: Column) -> pa.Array:
    """A text column as an Arrow string array, split at C speed with no Python string per value. Raises
    UnicodeEncodeError if a value holds a lone surrogate (not text Arrow holds)."""
    if isinstance(column, str):
        return pc.split_pattern(pa.array([column], pa.large_string()), "\n").flatten()
    return pa.array(column, pa.string())


def text_length(column: Column) -> int:
    return column.count("\n") + 1 if isinstance(column, str) else len(column)


def pack_lines(lines: Sequence[int]) -> list[list[int]]:
    """[first, count] runs of consecutive line numbers."""
    if not len(lines):
        return []
    numbers = np.asarray(lines, dtype=np.int64)
    starts = np.concatenate(([0], np.flatnonzero(np.diff(numbers) != 1) + 1))
    counts = np.diff(np.append(starts, len(numbers)))
    return np.column_stack((numbers[starts], counts)).tolist()


def unpack_lines(column: Sequence[int] | Sequence[Sequence[int]]) -> list[int]:
    return line_array(column).tolist()


def line_array(column: Sequence[int] | Sequence[Sequence[int]]) -> np.ndarray:
    """Line numbers stored as runs (or as a plain list) as one int64 array."""
    if column and isinstance(column[0], list):
        runs = np.asarray(column, dtype=np.int64)
        firsts, counts = runs[:, 0], runs[:, 1]
        starts = np.cumsum(counts) - counts  # where each run begins in the result
        return np.arange(int(counts.sum())) + np.repeat(firsts - starts, counts)
    return np.asarray(column, dtype=np.int64)


class Runs(Sequence[Any]):
    """A column built in runs, each a list of values or one value repeated: a report column that holds long runs
    of one value (a system, a kind of change) without an entry per row, which a writer can hand over run by run.
    Reads like the list it stands for."""

    __slots__ = ("_length", "parts")

    def __init__(self) -> None:
        self.parts: list[list[Any] | tuple[Any, int]] = []  # a list of values, or (value, how many times)
        self._length = 0

    def repeat(self, value: Any, count: int) -> None:
        if count:
            self.parts.append((value, count))
            self._length += count

    def extend(self, values: Sequence[Any]) -> None:
        if values:
            self.parts.append(values if isinstance(values, list) else list(values))
            self._length += len(values)

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[Any]:
        for part in self.parts:
            yield from repeat(*part) if isinstance(part, tuple) else part

    def __getitem__(self, index: int) -> Any:  # type: ignore[override]  # no slices: a column is read whole
        if index < 0:
            index += self._length
        for part in self.parts:
            size = part[1] if isinstance(part, tuple) else len(part)
            if 0 <= index < size:
                return part[0] if isinstance(part, tuple) else part[index]
            index -= size
        raise IndexError("column index out of range")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Runs | list | tuple) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Runs({list(self)!r})"

"""Writing report files: UTF-8 CSV with a header, replaced atomically so a crash never leaves half a report.

A write that fails (a full disk, a folder that cannot be written) raises ``ReportWriteError``, one clear sentence,
and leaves the file that was there as it was. A process killed while writing leaves its temporary file behind; the
temporary file's name holds the host and the process id, so the next write of that report, on that host, removes
the ones whose writer is dead (see ``temporary_beside``).

Every text cell that a spreadsheet would read as a formula is neutralised on the way out (see
``keysync.infrastructure.cell_safety``), unless the caller turns that off (``reports.escape_formulas: false``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import socket
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from keysync.domain.columns import Runs
from keysync.infrastructure import faults
from keysync.infrastructure.cell_safety import (
    neutralised,
    neutralised_array,
    neutralised_values,
    text_bytes,
    with_inserted,
)

# A value that contains one of these must be quoted (RFC 4180); any other is written as it is.
_QUOTED = re.compile(r'[",\r\n]')
_QUOTED_BYTE = np.zeros(256, dtype=bool)
_QUOTED_BYTE[[ord(c) for c in '",\r\n']] = True  # ASCII: in UTF-8 such a byte is always that character
_BELOW = max(map(ord, '",\r\n')) + 1  # every one of them is a byte below this

# Rows joined into lines at a time: enough to keep the per-call cost small, few enough to stay in the CPU's cache.
_ROWS_PER_BLOCK = 8192
_PYTHON_BELOW = 5_000  # rows of plain Python values written cell by cell (``_small_and_plain``)
_STRING_LIMIT = 2**31 - 1  # the bytes a ``string`` array can hold (32-bit offsets)
_OFFSET = {pa.string(): np.dtype(np.int32), pa.large_string(): np.dtype(np.int64)}
_EMPTY = pc.JoinOptions(null_handling="replace", null_replacement="")  # a null cell is written as nothing


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# The mode a file created the usual way gets (rw-r--r-- under the common umask 022).
_FILE_MODE = 0o666 & ~_umask()

# In temporary files' names: a process id means something only on its own host.
_HOST = socket.gethostname().replace("/", "_").replace(".", "_") or "localhost"


class ReportWriteError(OSError):
    """A report that could not be written. The file at its path (the previous report, if any) is left as it was and
    no temporary file is left behind; everything the command stored in the event store stays stored."""

    def __init__(self, path: Path, error: OSError):
        super().__init__(error.errno, error.strerror or str(error), str(path))
        self.path = path

    def __str__(self) -> str:
        return (
            f"cannot write report {self.path}: {self.strerror}; the previous {self.path.name} is left as it was, and "
            "what was stored stays stored: `keysync reports` writes the reports once the folder can be written"
        )


def temporary_beside(target: Path) -> tuple[int, Path]:
    """Create a temporary file in ``target``'s folder, for writing and then renaming onto ``target``: an open file
    descriptor and its path, ``.<target name>.<host>.<pid>.<random>.tmp``, readable as any file the user creates.

    Temporary files of ``target`` that a process on this host left behind when it died (SIGKILL, power loss) are
    removed first; another host's, or a live process's (a concurrent writer), are left alone."""
    prefix = f".{target.name}.{_HOST}."
    for left in target.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        pid = left.name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            left.unlink(missing_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}.", suffix=".tmp", dir=target.parent)
    # mkstemp makes it private: give it the mode any new file of the user's gets (where the file system has modes).
    with contextlib.suppress(OSError):
        os.fchmod(fd, _FILE_MODE)
    return fd, Path(name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def write_csv_atomic(path: Path, columns: Mapping[str, Sequence[Any]], *, escape_formulas: bool = True) -> Path:
    """Write ``columns`` (name -> values, all the same length) as CSV to a temporary file beside ``path``,
    then rename it into place. With ``escape_formulas`` (the default), a text cell starting with ``=``, ``+``,
    ``-``, ``@``, a tab or a carriage return gets a leading single quote (OWASP); numbers are left alone.

    A column is a list (or any sequence) of strings, integers, ``None`` (written as nothing) or a mix of them, a
    ``Runs``, or an Arrow array of strings or integers. Only a value holding ``"``, ``,``, ``\\r`` or ``\\n`` is
    quoted (RFC 4180); lines end in ``\\n``.

    The rename replaces whatever is at ``path``: a symbolic link there is replaced, never written through.
    A write that fails raises ``ReportWriteError`` and leaves ``path`` as it was.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = temporary_beside(path)
    except OSError as error:
        raise ReportWriteError(path, error) from error
    try:
        with os.fdopen(fd, "wb") as handle:
            _write_csv(handle, columns, escape_formulas)
            handle.flush()
            faults.while_writing(path.name)
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise ReportWriteError(path, error) from error
        raise
    return path


def _write_csv(handle: BinaryIO, columns: Mapping[str, Sequence[Any]], escape_formulas: bool) -> None:
    """The CSV file, built in Arrow: each column is escaped and quoted where needed. Runs of rows in which no cell
    is quoted (nearly all of them) are written by pyarrow's CSV writer, as they are; a block of rows holding a quoted
    cell has its cells joined into lines in C and the lines' bytes written as they are. (pyarrow's own writer can
    only quote every string or none, and refuses unquoted values that need quotes.)"""
    if _small_and_plain(columns):
        handle.write(_cell_by_cell(columns, escape_formulas))
        return
    handle.write((",".join(_quoted(str(name)) for name in columns) + "\n").encode("utf-8"))
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


def _small_and_plain(columns: Mapping[str, Sequence[Any]]) -> bool:
    """Whether ``columns`` are a few lists of text, integers and None: such a report (the summary, the trends) is
    written cell by cell. Building an Arrow array from Python values loads pandas, which costs a run that finds
    nothing changed more than all its reports do."""
    plain = (str, int, type(None))  # not bool, an int Arrow writes as "true"
    return all(
        type(values) is list and len(values) < _PYTHON_BELOW and all(type(v) in plain for v in values)
        for values in columns.values()
    )


def _cell_by_cell(columns: Mapping[str, Sequence[Any]], escape_formulas: bool) -> bytes:
    """The CSV file of plain columns (``_small_and_plain``), one cell at a time: what the columnar writer writes."""
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"report columns differ in length: {lengths}")

    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, str):
            return _quoted(neutralised(value) if escape_formulas else value)
        return str(value)

    lines = [",".join(_quoted(str(name)) for name in columns)]
    lines += (",".join(map(cell, row)) for row in zip(*columns.values(), strict=True))
    return ("\n".join(lines) + "\n").encode("utf-8")


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


def _quoted(text: str) -> str:
    """One value as a cell: quoted if it must be (RFC 4180). For the header and a value repeated down a column."""
    return '"' + text.replace('"', '""') + '"' if _QUOTED.search(text) else text


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
    return pa.repeat(pa.scalar(_quoted(neutralised(value) if escape_formulas else value), pa.string()), count)


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

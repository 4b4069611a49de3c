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
import io
import os
import re
import socket
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from keysync.domain.columns import Runs
from keysync.infrastructure import faults
from keysync.infrastructure.cell_safety import neutralised, neutralised_array, neutralised_values, text_bytes

# A value that contains one of these must be quoted (RFC 4180); any other is written as it is.
_NEEDS_QUOTES = r'[",\r\n]'
_QUOTED = re.compile(_NEEDS_QUOTES)
_QUOTED_BYTE = np.zeros(256, dtype=bool)
_QUOTED_BYTE[[ord(c) for c in '",\r\n']] = True  # ASCII: in UTF-8 such a byte is always that character


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

    Large reports go through pyarrow's C++ writer. It can only quote every string or none, so it is used when
    no value needs quoting (the usual case); otherwise the rows are written here, quoting just the values that
    need it, so a report looks the same whichever writer made it.

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
            table = _table(columns, escape_formulas)
            if table is not None:
                pacsv.write_csv(table, handle, pacsv.WriteOptions(quoting_style="none", quoting_header="none"))
            else:
                _write_quoting_as_needed(handle, columns, escape_formulas)
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


def _table(columns: Mapping[str, Sequence[Any]], escape_formulas: bool) -> pa.Table | None:
    """The columns as an Arrow table of strings and integers, or None when some value needs quoting."""
    arrays = {}
    for name, values in columns.items():
        if isinstance(values, Runs):  # one Arrow chunk per run: a repeated value is never a list entry per row
            chunks = [_run(part, escape_formulas) for part in values.parts]
            if any(chunk is None for chunk in chunks):
                return None
            array = pa.chunked_array([c.cast(pa.string()) for c in chunks], pa.string())  # type: ignore[union-attr]
        elif _same_text(values):  # a run id, a time, a change kind on every row: one value, repeated in C
            array = _repeated(values[0], len(values), escape_formulas)
        else:
            array = _array(values, escape_formulas)
        if array is None:
            return None
        arrays[name] = array
    return pa.table(arrays) if arrays else None


def _run(part: list[Any] | tuple[Any, int], escape_formulas: bool) -> pa.Array | None:
    return _repeated(*part, escape_formulas) if isinstance(part, tuple) else _array(part, escape_formulas)


def _repeated(value: Any, count: int, escape_formulas: bool) -> pa.Array | None:
    if not isinstance(value, str):
        return _array([value] * count, escape_formulas)
    array = pa.repeat(pa.scalar(neutralised(value) if escape_formulas else value, pa.string()), count)
    return None if _needs_quotes(array[:1]) else array


def _array(values: Sequence[Any], escape_formulas: bool) -> pa.Array | None:
    """One column of strings or integers; None when some value needs quoting."""
    try:
        array = pa.array(values, from_pandas=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):  # mixed types, e.g. counts and ""
        # Only the text among them is escaped: a count stays a number, even once it is a string here.
        texts = neutralised_values(values) if escape_formulas else values
        array = pa.array(["" if v is None else str(v) for v in texts], pa.string())
    else:
        if escape_formulas and pa.types.is_string(array.type):
            array = neutralised_array(array)
    if pa.types.is_null(array.type):
        array = array.cast(pa.string())
    if not (pa.types.is_integer(array.type) or pa.types.is_string(array.type)):
        array = array.cast(pa.string())
    if pa.types.is_string(array.type) and _needs_quotes(array):
        return None
    return array


def _same_text(values: Sequence[Any]) -> bool:
    """Whether every value is one and the same string (the ends and the middle first: most columns differ there)."""
    if not values or not isinstance(values, list) or not isinstance(values[0], str):
        return False
    first = values[0]
    return values[-1] == first and values[len(values) // 2] == first and values.count(first) == len(values)


def _needs_quotes(array: pa.Array) -> bool:
    """Whether some value holds a character that must be quoted: one lookup per byte of the column's text, several
    times faster than a regular expression per value; the regular expression for arrays numpy cannot read."""
    buffers = text_bytes(array)
    if buffers is None:
        return bool(pc.any(pc.match_substring_regex(array, _NEEDS_QUOTES)).as_py())
    offsets, data = buffers
    return bool(_QUOTED_BYTE[data[offsets[0] : offsets[-1]]].any())


def _write_quoting_as_needed(handle: Any, columns: Mapping[str, Sequence[Any]], escape_formulas: bool) -> None:
    """RFC 4180 by hand: Python's csv module, with "\\n" line ends, leaves a carriage return unquoted, and a
    reader would then see a row end in the middle of a value."""
    values = [neutralised_values(v) if escape_formulas else v for v in columns.values()]
    lines = (",".join(map(_cell, row)) + "\n" for row in zip(*values, strict=True))
    text = io.TextIOWrapper(handle, encoding="utf-8", newline="", write_through=False)
    text.write(",".join(map(_cell, columns)) + "\n")
    text.writelines(lines)
    text.flush()
    text.detach()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return '"' + text.replace('"', '""') + '"' if _QUOTED.search(text) else text

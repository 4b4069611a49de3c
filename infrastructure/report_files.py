"""Writing report files: UTF-8 CSV with a header, replaced atomically so a crash never leaves half a report.

A write that fails (a full disk, a folder that cannot be written) raises ``ReportWriteError``, one clear sentence,
and leaves the file that was there as it was. A process killed while writing leaves its temporary file behind; the
temporary file's name holds the host and the process id, so the next write of that report, on that host, removes
the ones whose writer is dead (see ``temporary_beside``).

Every text cell that a spreadsheet would read as a formula is neutralised on the way out (see
``keysync.infrastructure.cell_safety``), unless the caller turns that off (``reports.escape_formulas: false``).

A small report of plain values (the summary, the trends, the audit log of a young store) is written cell by cell
here; any other is built in Arrow (``keysync.infrastructure.csv_arrow``), which is imported only then.
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

from keysync.infrastructure import faults
from keysync.infrastructure.cell_safety import neutralised

# A value that contains one of these must be quoted (RFC 4180); any other is written as it is.
_QUOTED = re.compile(r'[",\r\n]')
_PYTHON_BELOW = 5_000  # rows of plain Python values written cell by cell (``_small_and_plain``)


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
    if _small_and_plain(columns):
        handle.write(_cell_by_cell(columns, escape_formulas))
        return
    from keysync.infrastructure.csv_arrow import write_columns  # pyarrow: only for a report that needs it

    write_columns(handle, columns, escape_formulas)


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
            return quoted_cell(neutralised(value) if escape_formulas else value)
        return str(value)

    lines = [",".join(quoted_cell(str(name)) for name in columns)]
    lines += (",".join(map(cell, row)) for row in zip(*columns.values(), strict=True))
    return ("\n".join(lines) + "\n").encode("utf-8")


def quoted_cell(text: str) -> str:
    """One value as a cell: quoted if it must be (RFC 4180). For the header and a value repeated down a column."""
    return '"' + text.replace('"', '""') + '"' if _QUOTED.search(text) else text

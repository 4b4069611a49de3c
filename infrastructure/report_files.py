"""Writing report files: UTF-8 CSV with a header, replaced atomically so a crash never leaves half a report."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from keysync.infrastructure import faults

# A value that contains one of these must be quoted (RFC 4180); any other is written as it is.
_NEEDS_QUOTES = r'[",\r\n]'


def write_csv_atomic(path: Path, columns: Mapping[str, Sequence[Any]]) -> Path:
    """Write ``columns`` (name -> values, all the same length) as CSV to a temporary file beside ``path``,
    then rename it into place.

    Large reports go through pyarrow's C++ writer. It can only quote every string or none, so it is used when
    no value needs quoting (the usual case); otherwise Python's csv module quotes just the values that need it,
    so a report looks the same whichever writer made it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            table = _table(columns)
            if table is not None:
                pacsv.write_csv(table, handle, pacsv.WriteOptions(quoting_style="none", quoting_header="none"))
            else:
                _write_with_csv_module(handle, columns)
            handle.flush()
            faults.while_writing(path.name)
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _table(columns: Mapping[str, Sequence[Any]]) -> pa.Table | None:
    """The columns as an Arrow table of strings and integers, or None when some value needs quoting."""
    arrays = {}
    for name, values in columns.items():
        try:
            array = pa.array(values, from_pandas=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):  # mixed types, e.g. counts and ""
            array = pa.array(["" if v is None else str(v) for v in values], pa.string())
        if pa.types.is_null(array.type):
            array = array.cast(pa.string())
        if not (pa.types.is_integer(array.type) or pa.types.is_string(array.type)):
            array = array.cast(pa.string())
        if pa.types.is_string(array.type) and pc.any(pc.match_substring_regex(array, _NEEDS_QUOTES)).as_py():
            return None
        arrays[name] = array
    return pa.table(arrays) if arrays else None


def _write_with_csv_module(handle: Any, columns: Mapping[str, Sequence[Any]]) -> None:
    text = io.TextIOWrapper(handle, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(zip(*columns.values(), strict=True))
    text.flush()
    text.detach()

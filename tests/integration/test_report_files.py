"""The report writer: RFC 4180 CSV, atomic, and formula-safe (OWASP), built in Arrow column by column and byte for
byte what a writer going cell by cell writes."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from itertools import pairwise
from pathlib import Path
from typing import Any
from unittest import mock

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keysync.domain.columns import Runs
from keysync.infrastructure import csv_arrow, report_files
from keysync.infrastructure.cell_safety import FORMULA_TRIGGERS, neutralised
from keysync.infrastructure.csv_arrow import neutralised_array
from keysync.infrastructure.report_files import write_csv_atomic

HOSTILE = ['=HYPERLINK("http://x","y")', "@SUM(1+1)", "+CUST-9", "-1", "\t=1+1", "\r=1+1", "=cmd|' /C calc'!A0"]


def rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


@pytest.mark.parametrize("quoting", [False, True], ids=["no value quoted", "a value quoted"])
def test_text_that_starts_a_formula_gets_a_quote_and_numbers_stay(tmp_path: Path, quoting: bool) -> None:
    keys = [*HOSTILE, "CUST-1", "", "a,b" if quoting else "plain"]
    n = len(keys)
    path = write_csv_atomic(
        tmp_path / "r.csv",
        {"key": keys, "count": [-1, *range(n - 1)], "mixed": [-5, "", "-x", *[None] * (n - 3)], "none": [None] * n},
    )
    [header, *body] = rows(path)
    assert header == ["key", "count", "mixed", "none"]
    assert [r[0] for r in body] == [neutralised(k) for k in keys]
    assert [r[0] for r in body][:4] == ['\'=HYPERLINK("http://x","y")', "'@SUM(1+1)", "'+CUST-9", "'-1"]
    assert body[0][1] == "-1"  # an integer column: a number, not text
    assert [r[2] for r in body][:3] == ["-5", "", "'-x"]  # mixed: the number stays, the text is quoted
    for row in body:
        assert not any(cell.startswith(FORMULA_TRIGGERS) for cell in row if cell not in ("-1", "-5"))


def test_escaping_can_be_turned_off(tmp_path: Path) -> None:
    path = write_csv_atomic(tmp_path / "r.csv", {"key": HOSTILE}, escape_formulas=False)
    assert [r[0] for r in rows(path)[1:]] == HOSTILE


def test_a_carriage_return_is_quoted_so_the_row_stays_one_row(tmp_path: Path) -> None:
    path = write_csv_atomic(tmp_path / "r.csv", {"reason": ["a\rb", "c\nd", 'say "hi"'], "n": [1, 2, 3]})
    assert path.read_bytes() == b'reason,n\n"a\rb",1\n"c\nd",2\n"say ""hi""",3\n'
    assert rows(path)[1:] == [["a\rb", "1"], ["c\nd", "2"], ['say "hi"', "3"]]


def test_a_value_quoted_in_one_column_leaves_the_other_cells_as_they_were(tmp_path: Path) -> None:
    columns = {"key": [*HOSTILE[:4], "x"], "n": [1, -2, 3, 4, 5]}
    arrow = write_csv_atomic(tmp_path / "a.csv", columns).read_bytes()
    quoting = write_csv_atomic(tmp_path / "b.csv", {**columns, "q": ["", "", "", "", "a,b"]}).read_bytes()
    assert [line.rsplit(b",", 1)[0] for line in quoting.splitlines()[:-1]] == arrow.splitlines()[:-1]


def test_a_symlink_in_place_of_a_report_is_replaced_not_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "precious.csv"
    outside.write_text("do not touch\n", encoding="utf-8")
    reports = tmp_path / "output"
    reports.mkdir()
    (reports / "r.csv").symlink_to(outside)
    write_csv_atomic(reports / "r.csv", {"key": ["=1"]})
    assert outside.read_text(encoding="utf-8") == "do not touch\n"
    assert not (reports / "r.csv").is_symlink() and rows(reports / "r.csv") == [["key"], ["'=1"]]


def test_formulas_are_neutralised_in_a_sliced_chunked_or_large_column_too() -> None:
    array = pa.array(["x", "=1", "y", "@2"])
    assert neutralised_array(array.slice(1, 2)).to_pylist() == ["'=1", "y"]
    chunked = pa.chunked_array([["a", "-1"], ["b"], ["+c"]])
    assert neutralised_array(chunked).to_pylist() == ["a", "'-1", "b", "'+c"]
    assert neutralised_array(pa.array(["a", None, "=b", ""])).to_pylist() == ["a", None, "'=b", ""]
    large = neutralised_array(pa.array(["=1", "x", "", "@2"], pa.large_string()))
    assert large.type == pa.large_string() and large.to_pylist() == ["'=1", "x", "", "'@2"]


_text = st.text(alphabet=st.sampled_from([*'=+-@\t\r\n",', "a", "1", " ", "'", "é", "\u202e"]), max_size=8)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(_text, st.integers(-(2**40), 2**40), _text), min_size=1, max_size=20))
def test_any_text_reads_back_as_written_with_formulas_quoted(tmp_path: Path, table: list) -> None:
    first, numbers, last = (list(column) for column in zip(*table, strict=True))
    path = write_csv_atomic(tmp_path / "fuzz.csv", {"first": first, "n": numbers, "last": last})
    body = rows(path)[1:]
    assert body == [[neutralised(a), str(n), neutralised(b)] for a, n, b in table]
    unescaped = write_csv_atomic(
        tmp_path / "raw.csv", {"first": first, "n": numbers, "last": last}, escape_formulas=False
    )
    assert rows(unescaped)[1:] == [[a, str(n), b] for a, n, b in table]


@pytest.mark.parametrize("value", [*HOSTILE, "RUN-1", "", "a,b", 'say "hi"'])
def test_a_column_of_one_repeated_value_is_written_like_any_other(tmp_path: Path, value: str) -> None:
    """A column holding one value on every row (a run id, a time) is built in one go: it must still be escaped
    and quoted as the value would be in a column of mixed values."""
    same = write_csv_atomic(tmp_path / "same.csv", {"run": [value] * 3, "key": ["K1", "K2", "K3"]})
    mixed = write_csv_atomic(tmp_path / "mixed.csv", {"run": [value, value, value + " "], "key": ["K1", "K2", "K3"]})
    assert [r[0] for r in rows(same)[1:]] == [neutralised(value)] * 3
    assert rows(same)[1:3] == rows(mixed)[1:3]


_PART = st.one_of(
    st.tuples(st.sampled_from([*HOSTILE, "A", "", "a,b", "x\ny"]), st.integers(0, 3)),
    st.lists(st.sampled_from([*HOSTILE, "K-1", "", "k,2", 'q"3']), max_size=3),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_PART, max_size=6), st.booleans())
def test_a_column_built_in_runs_is_written_as_the_list_it_stands_for(tmp_path: Path, parts: list, escape: bool) -> None:
    """Runs of one repeated value go to the writer whole (no list entry per row): the file must be byte for byte
    the one the plain list gives, whether or not some value needs quoting."""
    runs = Runs()
    for part in parts:
        runs.repeat(*part) if isinstance(part, tuple) else runs.extend(part)
    plain = list(runs)
    assert len(runs) == len(plain) and runs == plain
    keys = [f"K{i}" for i in range(len(plain))]
    built = write_csv_atomic(tmp_path / "runs.csv", {"key": keys, "v": runs}, escape_formulas=escape)
    listed = write_csv_atomic(tmp_path / "list.csv", {"key": keys, "v": plain}, escape_formulas=escape)
    assert built.read_bytes() == listed.read_bytes()


def test_the_bytes_written(tmp_path: Path) -> None:
    """The header, "\\n" line ends, a lone "\\r" quoted, nothing for an empty or missing value, digits for a number,
    spaces kept unquoted, and integers never escaped, wherever a column comes from."""
    columns = {
        "key": [" a ", "x\ry", "", None],
        "count": pa.array([-1, None, 3, 40]),
        "mixed": [7, "", "-x", None],
        "arrow": pa.chunked_array([["=1", 'say "hi"'], [None, "a,b"]]),
    }
    path = write_csv_atomic(tmp_path / "r.csv", columns)
    assert path.read_bytes() == (b'key,count,mixed,arrow\n a ,-1,7,\'=1\n"x\ry",,,"say ""hi"""\n,3,\'-x,\n,40,,"a,b"\n')


def reference_csv(columns: Mapping[str, Any], escape_formulas: bool) -> bytes:
    """The report the writer must write, built one cell at a time (RFC 4180, quoting only what must be quoted):
    text is neutralised, numbers are not, and a missing value is empty."""

    def cell(value: Any, escape: bool) -> str:
        if value is None:
            return ""
        text = neutralised(value) if escape and isinstance(value, str) else str(value)
        return '"' + text.replace('"', '""') + '"' if any(c in text for c in '",\r\n') else text

    values = [v.to_pylist() if isinstance(v, pa.Array | pa.ChunkedArray) else list(v) for v in columns.values()]
    lines = [
        [cell(name, False) for name in columns],
        *([cell(v, escape_formulas) for v in row] for row in zip(*values, strict=True)),
    ]
    return "".join(",".join(line) + "\n" for line in lines).encode("utf-8")


_CHARS = st.sampled_from([*'=+-@\t\r\n",', "'", "a", "1", " ", "\u00e9", "\u202e", "\U0001f600"])
_ANY_TEXT = st.text(alphabet=_CHARS, max_size=6)
_KINDS = (
    "text",
    "text or none",
    "integers",
    "counts or empty",
    "one value",
    "none",
    "runs",
    "arrow text",
    "arrow ints",
)


@st.composite
def _report(draw: st.DrawFn) -> dict[str, Any]:
    """A report's columns in every form a caller hands over, of one random length."""
    n = draw(st.integers(0, 7))
    columns: dict[str, Any] = {}
    for i, kind in enumerate(draw(st.lists(st.sampled_from(_KINDS), min_size=1, max_size=4))):
        texts = st.lists(_ANY_TEXT, min_size=n, max_size=n)
        if kind in ("text", "runs"):
            column: Any = draw(texts)
        elif kind in ("text or none", "arrow text"):
            column = draw(st.lists(st.one_of(_ANY_TEXT, st.none()), min_size=n, max_size=n))
        elif kind in ("integers", "arrow ints"):
            column = draw(st.lists(st.integers(-(2**62), 2**62), min_size=n, max_size=n))
        elif kind == "counts or empty":  # the summary: counts, and "" for an unavailable system
            column = draw(st.lists(st.one_of(st.integers(-9, 10**6), st.just("")), min_size=n, max_size=n))
        elif kind == "one value":
            column = [draw(_ANY_TEXT)] * n
        else:
            column = [None] * n
        if kind == "runs":
            column = _as_runs(column, draw(st.lists(st.integers(0, n), max_size=3)))
        elif kind.startswith("arrow"):
            column = _as_arrow(column, draw(st.sampled_from(["array", "chunked", "sliced", "large"])))
        columns[f"{kind} {i}"] = column
    return columns


def _as_runs(values: list[str], cuts: list[int]) -> Runs:
    runs = Runs()
    bounds = sorted({0, len(values), *cuts})
    for start, end in pairwise(bounds):
        part = values[start:end]
        runs.repeat(part[0], len(part)) if len(set(part)) == 1 else runs.extend(part)
    return runs


def _as_arrow(values: list[Any], form: str) -> pa.Array | pa.ChunkedArray:
    array = pa.array(values, pa.int64() if any(isinstance(v, int) for v in values) else pa.string())
    if form == "chunked":
        return pa.chunked_array([array[: len(array) // 2], array[len(array) // 2 :]], array.type)
    if form == "sliced":
        return pa.concat_arrays([array, array]).slice(len(array), len(array))
    if form == "large" and pa.types.is_string(array.type):
        return array.cast(pa.large_string())
    return array


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_report(), st.booleans(), st.sampled_from([1, 2, 8192]), st.booleans(), st.sampled_from([0, 5_000]))
def test_the_file_is_byte_for_byte_the_cell_by_cell_one(
    tmp_path: Path, columns: dict[str, Any], escape: bool, rows_per_block: int, large: bool, python_below: int
) -> None:
    """Whatever the columns hold and however they come (lists, one value repeated, runs, Arrow arrays), the
    columnar writer writes what a writer going cell by cell writes. Small blocks, and text too large for 32-bit
    offsets (made small here), must not change a byte; nor must small plain reports, which are written cell by
    cell (``python_below`` 0: every report goes through Arrow)."""
    limit = 8 if large else 2**31 - 1
    with (
        mock.patch.object(report_files, "_PYTHON_BELOW", python_below),
        mock.patch.object(csv_arrow, "_ROWS_PER_BLOCK", rows_per_block),
        mock.patch.object(csv_arrow, "_STRING_LIMIT", limit),
        mock.patch.object(csv_arrow, "_STRING_BYTES", limit),
    ):
        written = write_csv_atomic(tmp_path / "r.csv", columns, escape_formulas=escape).read_bytes()
    assert written == reference_csv(columns, escape)

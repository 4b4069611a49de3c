"""Fuzzing the source readers: whatever bytes an export holds, read_source either returns a snapshot that accounts
for every line, or raises SourceUnavailable with one line naming the file and the reason; nothing else escapes.

The inputs are built from the pieces that trouble CSV and JSON readers (separators, quotes, the three line ends,
NUL and other control bytes, a BOM, bytes that are not UTF-8, whitespace) around headers that repeat, miss or
reorder columns. Huge inputs (a 50 MB line) run in a fresh process, where peak memory can be measured.

``pytest -m slow tests/integration/test_reader_fuzz.py`` runs the heavier variants.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keysync.domain.keys import key_problem
from keysync.domain.observations import SourceSnapshot
from keysync.infrastructure.sources import FIELDS, SourceUnavailable, read_source

SYSTEM = "B"
MAX_KEY = 16
BOM = b"\xef\xbb\xbf"
LINE_END = re.compile(rb"\r\n|\r|\n")
CONTROL_OR_SURROGATE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HEAVY = settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------------------------------------------------
# Inputs

PIECES = [
    b",", b'"', b'""', b"\r\n", b"\r", b"\n", b"\x00", b"\x1b", b"\t", b" ", b"\xff", b"\xc3", "é".encode(),
    "€".encode(), "\u2028".encode(), BOM, b"K-1", b"k 2", b"B", b"C", b"2026-01-31T10:00:00Z", b"nope", b"\\",
]  # fmt: skip
CSV_BYTES = st.lists(st.sampled_from(PIECES) | st.binary(max_size=6), max_size=60).map(b"".join)

COLUMN = st.sampled_from([*FIELDS, "source_key", "other", "", " Source_Key ", '"source_key"'])
HEADERS = st.lists(COLUMN, max_size=7).map(lambda names: ",".join(names).encode())


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    """A header (any columns, repeated, missing, reordered) and a body of troublesome pieces."""
    bom = draw(st.sampled_from([b"", BOM]))
    end = draw(st.sampled_from([b"\n", b"\r\n", b"\r", b""]))
    return bom + draw(HEADERS) + end + draw(CSV_BYTES)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
RECORDS = st.fixed_dictionaries(
    {},
    optional={name: st.text(max_size=8) | st.sampled_from(["", " ", SYSTEM, "C", "\x00", "x" * 20]) | JSON_VALUES
              for name in FIELDS},
).map(lambda record: json.dumps(record, ensure_ascii=False).encode())  # fmt: skip
JSON_PIECES = st.sampled_from([b"{", b"}", b"[", b"]", b",", b":", b'"', b"\\", b"\r\n", b"\n", b"\r", b"\x00",
                               b"\xff", b" ", b"null", b'"source_key"', b'"k"'])  # fmt: skip
JSON_LINES = st.lists(RECORDS | st.lists(JSON_PIECES, max_size=8).map(b"".join) | st.binary(max_size=10), max_size=12)


@st.composite
def json_files(draw: st.DrawFn) -> bytes:
    """JSON Lines with any line ends, or an array, mixing records with fragments and noise."""
    lines = draw(JSON_LINES)
    if draw(st.booleans()):
        return draw(st.sampled_from([b"", BOM])) + b"[" + b",".join(lines) + draw(st.sampled_from([b"]", b""]))
    ends = draw(st.lists(st.sampled_from([b"\n", b"\r\n", b"\r"]), min_size=len(lines), max_size=len(lines)))
    return b"".join(line + end for line, end in zip(lines, ends, strict=True))


# ------------------------------------------------------------------------------------------------------------
# The property


def read(data: bytes, kind: str) -> tuple[Path, SourceSnapshot | SourceUnavailable]:
    """Read data as an export; only SourceUnavailable may come out of the reader, anything else fails the test."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{SYSTEM}.{kind}"
        path.write_bytes(data)
        try:
            return path, read_source(SYSTEM, path, kind, max_key_length=MAX_KEY)
        except SourceUnavailable as error:
            return path, error


def assert_clear_error(path: Path, error: SourceUnavailable) -> None:
    message = str(error)
    assert message.startswith(f"{path}: ") and len(message) > len(f"{path}: "), message
    assert "\n" not in message and "\r" not in message, message
    assert len(message) < 1000, message  # what it quotes from the file is cut short


def assert_printable(snapshot: SourceSnapshot, path: Path) -> None:
    for row in snapshot.rejected:
        assert (row.system, row.file) == (SYSTEM, str(path))
        assert row.severity in ("error", "warning") and row.reason
        assert not CONTROL_OR_SURROGATE.search(row.reason), row
        assert not CONTROL_OR_SURROGATE.search(row.raw), row
        assert len(row.raw) <= 6 * 200 + 3, row  # 200 characters, escaped (\\uXXXX at most), and "..."


def assert_accepted_rows_are_usable(snapshot: SourceSnapshot) -> None:
    assert (
        len(snapshot.keys.to_pylist())
        == len(snapshot.lines.to_pylist())
        == len(snapshot.entity_types.to_pylist())
        == len(snapshot.last_seen_at.to_pylist())
    )
    for key in snapshot.keys.to_pylist():
        assert key_problem(key, MAX_KEY) is None, key


def physical_lines(data: bytes) -> list[bytes]:
    """The lines of data as the contract defines them: ended by \\r\\n, \\r or \\n (the last may lack one)."""
    lines = LINE_END.split(data)
    return lines[:-1] if lines[-1] == b"" else lines


def assert_csv_lines_accounted_for(data: bytes, snapshot: SourceSnapshot) -> None:
    """Every line after the header is an accepted row, a rejected one, a blank line (a warning), or a further
    line of a record whose first line opened a quote; rows_read counts the records."""
    body = physical_lines(data.removeprefix(BOM))[1:]
    accepted = snapshot.lines.to_pylist()
    errors = [row.line for row in snapshot.rejected if row.severity == "error"]
    blank = [row.line for row in snapshot.rejected if row.reason == "blank line"]
    starts = sorted(accepted + errors)
    assert len(set(starts)) == len(starts), "a line counted twice"
    assert not set(blank) & set(starts)
    assert snapshot.rows_read == len(starts)
    for row in snapshot.rejected:
        if row.severity == "warning" and row.reason != "blank line":
            assert row.reason.startswith("unparseable last_seen_at") and row.line in accepted, row
    covered = set(starts) | set(blank)
    assert covered <= set(range(2, len(body) + 2))
    for line in set(range(2, len(body) + 2)) - covered:  # must continue a record that opened a quote
        start = max((s for s in starts if s < line), default=None)
        assert start is not None and b'"' in body[start - 2] and line - start <= 100, (line, start)
    if b'"' not in data:
        assert covered == set(range(2, len(body) + 2))


def assert_csv_fields_as_written(data: bytes, snapshot: SourceSnapshot) -> None:
    """Without quotes the oracle is a split on commas: each accepted key is the field under source_key."""
    if b'"' in data:
        return
    header, *body = physical_lines(data.removeprefix(BOM))
    names = [name.strip().lower() for name in header.decode().split(",")]
    at = names.index("source_key")
    for line, key in zip(snapshot.lines.to_pylist(), snapshot.keys.to_pylist(), strict=True):
        assert body[line - 2].decode("utf-8", "surrogateescape").split(",")[at] == key


def assert_json_lines_accounted_for(data: bytes, snapshot: SourceSnapshot) -> None:
    lines = physical_lines(data)
    errors = [row.line for row in snapshot.rejected if row.severity == "error"]
    blank = [row.line for row in snapshot.rejected if row.reason == "blank line"]
    assert sorted(snapshot.lines.to_pylist() + errors + blank) == list(range(1, len(lines) + 1))
    assert snapshot.rows_read == len(snapshot.lines.to_pylist()) + len(errors)


def assert_json_array_accounted_for(data: bytes, snapshot: SourceSnapshot) -> None:
    elements = json.loads(data.removeprefix(BOM).decode("utf-8", "surrogateescape"))
    errors = [row.line for row in snapshot.rejected if row.severity == "error"]
    assert sorted(snapshot.lines.to_pylist() + errors) == list(range(1, len(elements) + 1))
    assert snapshot.rows_read == len(elements)


def check_csv(data: bytes) -> None:
    path, outcome = read(data, "csv")
    if isinstance(outcome, SourceUnavailable):
        assert_clear_error(path, outcome)
        return
    assert_printable(outcome, path)
    assert_accepted_rows_are_usable(outcome)
    assert_csv_lines_accounted_for(data, outcome)
    assert_csv_fields_as_written(data, outcome)


def check_json(data: bytes) -> None:
    path, outcome = read(data, "json")
    if isinstance(outcome, SourceUnavailable):
        assert_clear_error(path, outcome)
        return
    assert_printable(outcome, path)
    assert_accepted_rows_are_usable(outcome)
    if data.removeprefix(BOM).lstrip(b" \t\r\n").startswith(b"["):
        assert_json_array_accounted_for(data, outcome)
    else:
        assert_json_lines_accounted_for(data, outcome)


# ------------------------------------------------------------------------------------------------------------
# Fuzz runs


@FAST
@given(data=csv_files())
def test_csv_reader_accounts_for_every_line_or_says_why_not(data: bytes) -> None:
    check_csv(data)


@FAST
@given(data=st.binary(max_size=400))
def test_csv_reader_survives_arbitrary_bytes(data: bytes) -> None:
    check_csv(data)


@FAST
@given(data=json_files())
def test_json_reader_accounts_for_every_line_or_says_why_not(data: bytes) -> None:
    check_json(data)


@FAST
@given(data=st.binary(max_size=400))
def test_json_reader_survives_arbitrary_bytes(data: bytes) -> None:
    check_json(data)


@pytest.mark.slow
@HEAVY
@given(data=csv_files() | st.binary(max_size=2000))
def test_csv_reader_heavy(data: bytes) -> None:
    check_csv(data)


@pytest.mark.slow
@HEAVY
@given(data=json_files() | st.binary(max_size=2000))
def test_json_reader_heavy(data: bytes) -> None:
    check_json(data)


KEYS = st.text(st.characters(exclude_categories=["Cs"]), max_size=20) | st.sampled_from(["", " ", "\u3000", "K" * 17])


@FAST
@given(keys=st.lists(KEYS, min_size=1, max_size=6), kind=st.sampled_from(["csv", "json"]))
def test_the_reader_rejects_a_key_for_the_reason_key_problem_gives(keys: list[str], kind: str) -> None:
    if kind == "csv":
        out = io.StringIO(newline="")
        csv.writer(out, quoting=csv.QUOTE_ALL).writerows([["source_key"], *([key] for key in keys)])
        data = out.getvalue().encode()
    else:
        data = "".join(json.dumps({"source_key": key}) + "\n" for key in keys).encode()
    _, snapshot = read(data, kind)

    assert isinstance(snapshot, SourceSnapshot)
    assert snapshot.keys.to_pylist() == [key for key in keys if key_problem(key, MAX_KEY) is None]
    assert [row.reason for row in snapshot.rejected] == [
        key_problem(key, MAX_KEY) for key in keys if key_problem(key, MAX_KEY)
    ]


# ------------------------------------------------------------------------------------------------------------
# Named cases: the shapes the brief of a reader must survive, each checked with the same property

HEADER = b"source_system,source_key,entity_type,location_ref,last_seen_at"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\n\r\n \t\r", id="only-blank"),
        pytest.param(HEADER, id="header-only-no-line-end"),
        pytest.param(HEADER + b"\r\n", id="header-only"),
        pytest.param(BOM + HEADER + b"\nB,K-1,,,\n", id="bom"),
        pytest.param(BOM, id="bom-only"),
        pytest.param(HEADER + b"\nB,K-1,,,\r\nB,K-2,,,\rB,K-3,,,\n\nB,K-4,,,", id="mixed-line-ends"),
        pytest.param(HEADER + b"\nB,K\x00-1,,,\nB,K-2,\x00,,\n\x00\n", id="nul-bytes"),
        pytest.param(b"source_key,source_key\nK-1,K-2\n", id="duplicate-key-column"),
        pytest.param(b"source_system,entity_type\nB,x\n", id="no-key-column"),
        pytest.param(b"last_seen_at,source_key,source_system\n2026-01-31,K-1,B\n", id="reordered"),
        pytest.param(b"source_key\nK-1\n\n   \nK-2", id="one-column-with-blanks"),
        pytest.param(HEADER + b'\nB,"K-1\n', id="quote-left-open"),
        pytest.param(HEADER + b'\nB,"K\n-1",,,\nB,K-2,,,\n', id="quoted-line-end"),
        pytest.param(b"\xff\xfe" + HEADER, id="utf16-bom"),
        pytest.param(HEADER + b"\nB,\xff\xfe,,,\nB,K-2,\xff,,\n", id="not-utf8"),
        pytest.param(b",".join([b"c"] * 20_000) + b",source_key\n", id="wide-header"),
        pytest.param(b"source_key," + b"x" * 70_000 + b"\nK-1,\n", id="long-header"),
        pytest.param(HEADER + b"\n" + b"," * 100_000 + b"\n", id="a-line-of-commas"),
        pytest.param(HEADER + b"\n" + b'"",' * 30_000 + b"\n", id="a-line-of-empty-quoted-fields"),
    ],
)
def test_csv_shapes(data: bytes) -> None:
    check_csv(data)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"[]", id="empty-array"),
        pytest.param(b"[", id="array-left-open"),
        pytest.param(b'{"source_key": "K-1"}\r{"source_key": "K-2"}\r\n\n{"source_key": "K-3"}', id="mixed-line-ends"),
        pytest.param(BOM + b'{"source_key": "K-1"}\n', id="bom"),
        pytest.param(b'{"source_key": "K\\u0000-1"}\n{"source_key": "K-2", "entity_type": "\x00"}\n', id="nul"),
        pytest.param(b'{"source_key": "K-1", "source_key": "K-2"}\n', id="duplicate-key"),
        pytest.param(b'{"entity_type": "x"}\n', id="missing-key"),
        pytest.param(b'{"source_key": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", id="deeply-nested-line"),
        pytest.param(b'{"x": ' * 100_000 + b"1" + b"}" * 100_000 + b"\n", id="deeply-nested-object"),
        pytest.param(b"[" + b"[" * 100_000 + b"]" * 100_000 + b"]", id="deeply-nested-array"),
        pytest.param(b'[{"source_key": "K-1"}, ' + b"[" * 500 + b"]" * 500 + b"]", id="nested-element"),
        pytest.param(b'{"source_key": "\xff"}\n{"source_key": "K-2", "other": "\xff"}\n', id="not-utf8"),
        pytest.param(b'{"source_key": "K-1"} {"source_key": "K-2"}\n', id="two-on-a-line"),
    ],
)
def test_json_shapes(data: bytes) -> None:
    check_json(data)


# ------------------------------------------------------------------------------------------------------------
# Lines longer than pyarrow's block (1 MiB): they once crashed the CSV reader with a RuntimeError


@pytest.mark.parametrize("quoted", [False, True])
def test_a_csv_line_longer_than_a_parser_block_is_read(tmp_path: Path, quoted: bool) -> None:
    entity = b"e" * 3_000_000
    field = b'"' + entity + b'"' if quoted else entity
    path = tmp_path / "B.csv"
    path.write_bytes(HEADER + b"\nB,K-1,,,\nB,K-2," + field + b",,\nB," + b"K" * 2_000_000 + b",,,\nB,K-3,,,\n")

    snapshot = read_source("B", path)

    assert snapshot.keys.to_pylist() == ["K-1", "K-2", "K-3"] and snapshot.lines.to_pylist() == [2, 3, 5]
    assert snapshot.entity_types.to_pylist()[1] == entity.decode()
    [rejected] = snapshot.rejected
    assert (rejected.line, rejected.reason) == (4, "key longer than 256 characters (2000000)")
    assert rejected.raw == "B," + "K" * 198 + "..."


def test_a_json_line_longer_than_a_parser_block_is_read(tmp_path: Path) -> None:
    path = tmp_path / "B.jsonl"
    lines = [{"source_key": "K-1"}, {"source_key": "K-2", "entity_type": "e" * 3_000_000}, {"source_key": "K" * 300}]
    path.write_text("\n".join(json.dumps(line) for line in lines), encoding="utf-8")

    snapshot = read_source("B", path, "json")

    assert snapshot.keys.to_pylist() == ["K-1", "K-2"] and len(snapshot.entity_types.to_pylist()[1]) == 3_000_000
    assert [(r.line, r.reason) for r in snapshot.rejected] == [(3, "key longer than 256 characters (300)")]


def test_a_long_quoted_field_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "B.csv"
    path.write_bytes(b'source_key\n"' + b"K" * 200_000 + b',K"\nK-2\n')  # the comma: for the careful parser

    snapshot = read_source("B", path)

    assert snapshot.keys.to_pylist() == ["K-2"]
    assert [r.reason for r in snapshot.rejected] == ["a quoted field longer than 131072 bytes"]


def test_a_quoted_empty_key_alone_on_its_line_is_an_empty_key(tmp_path: Path) -> None:
    # Regression: with one column, '""' lost its quotes on the way to pyarrow, which skipped it as an empty line,
    # and the reader crashed ("pyarrow disagrees with the line triage").
    path = tmp_path / "B.csv"
    path.write_bytes(b'source_key\n"K-1"\n""\n"K-2"\n')

    snapshot = read_source("B", path)

    assert snapshot.keys.to_pylist() == ["K-1", "K-2"]
    assert [(r.line, r.reason) for r in snapshot.rejected] == [(3, "empty key")]


@pytest.mark.parametrize("columns", [1, 2])
def test_a_byte_order_mark_starting_a_row_is_kept(tmp_path: Path, columns: int) -> None:
    # Regression: pyarrow dropped a BOM that began the rows it parsed: a key lost it, or the reader crashed.
    header, tail = (b"source_key", b"") if columns == 1 else (b"source_key,x", b",1")
    path = tmp_path / "B.csv"
    path.write_bytes(header + b"\n" + BOM + b"K-1" + tail + b"\n" + BOM + tail + b"\nK-2" + tail + b"\n")

    snapshot = read_source("B", path)

    assert snapshot.keys.to_pylist() == ["\ufeffK-1", "\ufeff", "K-2"] and snapshot.rejected == []


# ------------------------------------------------------------------------------------------------------------
# A 50 MB line: read in a fresh process, so that its peak memory is its own

LINE_MB = 50
_MEASURE = textwrap.dedent(
    """
    import json, resource, sys, time, tracemalloc
    from pathlib import Path
    import pyarrow as pa
    from keysync.infrastructure.sources import SourceUnavailable, read_source

    path, kind, warmup = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    read_source("B", warmup, kind)  # loads what a first read loads, so that it is not counted below
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    began = time.perf_counter()
    try:
        snapshot = read_source("B", path, kind)
        rejected = [[r.line, r.reason, len(r.raw)] for r in snapshot.rejected]
        outcome = {"keys": snapshot.keys.to_pylist(), "rejected": rejected}
    except SourceUnavailable as error:
        outcome = {"unavailable": str(error)}
    seconds = time.perf_counter() - began
    python_peak = tracemalloc.get_traced_memory()[1]
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    print(json.dumps({**outcome, "seconds": seconds, "python_peak": python_peak,
                      "arrow_peak": pa.default_memory_pool().max_memory(), "rss_growth": rss_growth}))
    """
)


def measure(tmp_path: Path, kind: str, content: bytes) -> dict:
    path = tmp_path / f"B.{kind}"
    path.write_bytes(content)
    warmup = tmp_path / f"warmup.{kind}"
    warmup.write_bytes(b'{"source_key": "K"}\n' if kind == "json" else b"source_key\nK\n\xff,\n")
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path), kind, str(warmup)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


CSV_HEAD = HEADER + b"\nB,K-1,,,\n"
JSONL_HEAD = b'{"source_key": "K-1"}\n'
HUGE = LINE_MB << 20
slow = pytest.mark.slow
# Built in the test (50 MB each), not at collection.
HUGE_LINES = [
    pytest.param("csv", lambda: CSV_HEAD + b"B," + b"K" * HUGE + b",,,\nB,K-2,,,\n", "key longer than", id="csv-key"),
    pytest.param("json", lambda: JSONL_HEAD + b'{"source_key": "' + b"K" * HUGE + b'"}\n{"source_key": "K-2"}\n',
                 "key longer than", id="jsonl-key"),
    pytest.param("csv", lambda: CSV_HEAD + b'B,"' + b"K" * HUGE + b'",,,\nB,K-2,,,\n', "key longer than",
                 id="csv-quoted-key", marks=slow),
    pytest.param("csv", lambda: CSV_HEAD + b"B," + b"\xff" * HUGE + b",,,\nB,K-2,,,\n", "key is not valid UTF-8",
                 id="csv-not-utf8", marks=slow),
    pytest.param("csv", lambda: CSV_HEAD + b"B," + "é".encode() * (HUGE // 2) + b",,,\nB,K-2,,,\n",
                 "key longer than", id="csv-two-byte-characters", marks=slow),
    pytest.param("csv", lambda: CSV_HEAD + b"," * HUGE + b"\nB,K-2,,,\n", "wrong number of fields",
                 id="csv-commas", marks=slow),
    pytest.param("csv", lambda: CSV_HEAD + b'B,"' + b"K" * HUGE + b"\nB,K-2,,,\n", "a quoted field longer than",
                 id="csv-quote-left-open", marks=slow),
    pytest.param("csv", lambda: CSV_HEAD + b"B,K\x00" + b"K" * HUGE + b",,,\nB,K-2,,,\n", "control character \\x00",
                 id="csv-nul", marks=slow),
    pytest.param("csv", lambda: BOM + CSV_HEAD + b"B," + b"K" * HUGE + b",,,\nB,K-2,,,\n", "key longer than",
                 id="csv-bom", marks=slow),
    pytest.param("json", lambda: b'[{"source_key": "K-1"}, {"source_key": "' + b"K" * HUGE + b'"}, {"source_key": '
                 b'"K-2"}]', "key longer than", id="json-array", marks=slow),
    pytest.param("json", lambda: JSONL_HEAD + b'{"source_key": "' + b"K" * HUGE + b'}\n{"source_key": "K-2"}\n',
                 "invalid JSON", id="jsonl-broken", marks=slow),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "build", "reason"), HUGE_LINES)
def test_a_50_mb_line_is_rejected_in_bounded_memory(
    tmp_path: Path, kind: str, build: Callable[[], bytes], reason: str
) -> None:
    line = HUGE
    got = measure(tmp_path, kind, build())

    assert got["keys"] == ["K-1", "K-2"]
    [(_, got_reason, raw_length)] = got["rejected"]
    assert got_reason.startswith(reason) and raw_length <= 6 * 200 + 3
    # The file's own bytes are one copy of the line; the reader adds at most two more at a time in Python, and
    # the process as a whole stays under four (five copies would be a whole-line copy too many).
    assert got["python_peak"] < 3.2 * line, got
    assert got["rss_growth"] < 4 * line, got
    assert got["seconds"] < 30, got

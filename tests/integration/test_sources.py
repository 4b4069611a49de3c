"""read_source against real files: the input contract, row by row, for CSV and JSON."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from keysync.domain import observations
from keysync.domain.keys import CONTROL_CLASS
from keysync.domain.observations import RejectedRow, SourceSnapshot
from keysync.infrastructure import csv_source, sources
from keysync.infrastructure.sources import SourceUnavailable, read_source

HEADER = "source_system,source_key,entity_type,location_ref,last_seen_at"
STAMP = "2026-01-31T10:00:00+00:00"


def row(key: str, system: str = "B", entity: str = "customer", location: str = "LOC-7", seen: str = STAMP) -> str:
    return f"{system},{key},{entity},{location},{seen}"


def write(tmp_path: Path, content: str | bytes, name: str = "b.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def csv_file(tmp_path: Path, *lines: str, header: str = HEADER, end: str = "\n") -> Path:
    return write(tmp_path, end.join([header, *lines]) + end)


def only_rejection(snapshot: SourceSnapshot) -> RejectedRow:
    assert len(snapshot.rejected) == 1, snapshot.rejected
    return snapshot.rejected[0]


def assert_rejected(snapshot: SourceSnapshot, line: int, reason: str, severity: str = "error") -> RejectedRow:
    rejected = only_rejection(snapshot)
    assert (rejected.line, rejected.severity, rejected.reason) == (line, severity, reason)
    assert rejected.system == snapshot.system and rejected.file == snapshot.file
    return rejected


# ------------------------------------------------------------------------------------------------------------
# Clean input


def test_reads_every_column_of_a_clean_file(tmp_path: Path) -> None:
    path = csv_file(tmp_path, row("cust_1"), row("cust_2", system="", entity="site", location="", seen=""))

    snapshot = read_source("B", path)

    assert snapshot.system == "B" and snapshot.file == str(path)
    assert snapshot.rows_read == 2 and len(snapshot) == 2
    assert snapshot.keys.to_pylist() == ["cust_1", "cust_2"]
    assert snapshot.entity_types.to_pylist() == ["customer", "site"]
    assert snapshot.location_refs.to_pylist() == ["LOC-7", ""]
    assert snapshot.last_seen_at.to_pylist() == [STAMP, ""]
    assert snapshot.lines.to_pylist() == [2, 3]
    assert snapshot.rejected == []


def test_fingerprint_is_size_mtime_and_sha256_of_the_bytes(tmp_path: Path) -> None:
    path = csv_file(tmp_path, row("cust_1"))
    data = path.read_bytes()

    fingerprint = read_source("B", path).fingerprint

    assert fingerprint is not None
    assert fingerprint.size == len(data)
    assert fingerprint.mtime_ns == path.stat().st_mtime_ns
    assert fingerprint.sha256 == hashlib.sha256(data).hexdigest()


def test_columns_in_any_order_and_optional_ones_absent(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "2026-01-31,k1", ",k2", header="last_seen_at,source_key")

    snapshot = read_source("B", path)

    assert snapshot.keys.to_pylist() == ["k1", "k2"]
    assert snapshot.last_seen_at.to_pylist() == ["2026-01-31T00:00:00+00:00", ""]
    assert snapshot.entity_types.to_pylist() == ["", ""] and snapshot.location_refs.to_pylist() == ["", ""]
    assert snapshot.rejected == []


def test_a_key_only_file_reports_blank_lines_as_blank(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "k1", "", "  ", "k2", header="source_key")

    snapshot = read_source("B", path)

    assert snapshot.keys.to_pylist() == ["k1", "k2"] and snapshot.lines.to_pylist() == [2, 5]
    assert [(r.line, r.severity, r.reason) for r in snapshot.rejected] == [
        (3, "warning", "blank line"),
        (4, "warning", "blank line"),
    ]
    assert snapshot.rows_read == 2


def test_unknown_columns_are_ignored(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "x,k1,y,customer", header="note,source_key,other,entity_type")

    snapshot = read_source("B", path)

    assert snapshot.keys.to_pylist() == ["k1"] and snapshot.entity_types.to_pylist() == ["customer"]


def test_a_bom_is_dropped(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbf" + f"{HEADER}\n{row('k1')}\n".encode())

    assert read_source("B", path).keys.to_pylist() == ["k1"]


@pytest.mark.parametrize("end", ["\r\n", "\r", "\n"])
def test_line_ends(tmp_path: Path, end: str) -> None:
    path = csv_file(tmp_path, row("k1"), row("k2", system="C"), row("k3"), end=end)

    snapshot = read_source("B", path)

    assert snapshot.keys.to_pylist() == ["k1", "k3"] and snapshot.lines.to_pylist() == [2, 4]
    assert_rejected(snapshot, 3, "source_system 'C' differs from the system being read (B)")


def test_mixed_line_ends_count_as_physical_lines(tmp_path: Path) -> None:
    content = f"{HEADER}\r\n{row('k1')}\r{row('k2')}\n{row('')}\r\n{row('k4')}"
    path = write(tmp_path, content)

    snapshot = read_source("B", path)

    assert snapshot.keys.to_pylist() == ["k1", "k2", "k4"] and snapshot.lines.to_pylist() == [2, 3, 5]
    assert_rejected(snapshot, 4, "empty key")


def test_quoted_fields_may_hold_commas_quotes_and_line_ends(tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        'B,"cust,1",customer,"LOC, 7",' + STAMP,
        '"B","say ""hi""","customer","LOC-7","' + STAMP + '"',
        'B,k3,customer,"first line\nsecond line",' + STAMP,
        row("k4"),
    )

    snapshot = read_source("B", path)

    assert snapshot.keys.to_pylist() == ["cust,1", 'say "hi"', "k3", "k4"]
    assert snapshot.location_refs.to_pylist() == ["LOC, 7", "LOC-7", "first line\nsecond line", "LOC-7"]
    assert snapshot.lines.to_pylist() == [2, 3, 4, 6]
    assert snapshot.rows_read == 4 and snapshot.rejected == []


def test_every_field_quoted(tmp_path: Path) -> None:
    """A QUOTE_ALL export: lines whose quoting is simple are unquoted and go to pyarrow."""
    quoted = [",".join(f'"{field}"' for field in line.split(",")) for line in (row("k1"), row(""), row("k3"))]
    path = csv_file(tmp_path, *quoted, '"B","k,4","x","y",""', header=",".join(f'"{n}"' for n in HEADER.split(",")))

    snapshot = read_source("B", path)

    assert snapshot.keys.to_pylist() == ["k1", "k3", "k,4"] and snapshot.lines.to_pylist() == [2, 4, 5]
    rejected = assert_rejected(snapshot, 3, "empty key")
    assert rejected.raw == quoted[1]


def test_header_only_gives_zero_rows(tmp_path: Path) -> None:
    snapshot = read_source("B", csv_file(tmp_path))

    assert (snapshot.rows_read, snapshot.keys.to_pylist(), snapshot.rejected) == (0, [], [])


def test_header_only_without_line_end_gives_zero_rows(tmp_path: Path) -> None:
    snapshot = read_source("B", write(tmp_path, "source_key"))

    assert (snapshot.rows_read, snapshot.keys.to_pylist()) == (0, [])


# ------------------------------------------------------------------------------------------------------------
# Row-level failures: the row is rejected, every other row is still used


def test_wrong_number_of_fields(tmp_path: Path) -> None:
    path = csv_file(tmp_path, row("k1"), row("k2") + ",extra,x", "B,k3,customer", row("k4"))

    snapshot = read_source("B", path)

    assert snapshot.keys.to_pylist() == ["k1", "k4"] and snapshot.rows_read == 4
    assert [(r.line, r.severity, r.reason) for r in snapshot.rejected] == [
        (3, "error", "wrong number of fields: 7, expected 5"),
        (4, "error", "wrong number of fields: 3, expected 5"),
    ]
    assert snapshot.rejected[0].raw == row("k2") + ",extra,x"


def test_wrong_field_counts_that_balance_out_are_still_caught(tmp_path: Path) -> None:
    path = csv_file(tmp_path, row("k1") + ",extra", row("k2"), "B,k3,customer,LOC-7", row("k4"))

    snapshot = read_source("B", path)

    assert snapshot.keys.to_pylist() == ["k2", "k4"]
    assert [r.line for r in snapshot.rejected] == [2, 4]


def test_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    path = write(tmp_path, f"{HEADER}\n{row('k1')}\n".encode() + row("cu\xffst").encode("latin-1") + b"\n")

    snapshot = read_source("B", path)

    assert snapshot.keys.to_pylist() == ["k1"]
    rejected = assert_rejected(snapshot, 3, "key is not valid UTF-8")
    assert rejected.raw == row("cu\\xffst")


def test_bytes_that_are_not_utf8_in_another_field(tmp_path: Path) -> None:
    path = write(tmp_path, f"{HEADER}\n".encode() + row("k1", location="L\xe9").encode("latin-1") + b"\n")

    snapshot = read_source("B", path)

    assert snapshot.keys.to_pylist() == []
    assert_rejected(snapshot, 2, "location_ref is not valid UTF-8")


@pytest.mark.parametrize("char", ["\x00", "\x1b", "\x7f", "\x85", "\x9f", "\x0b", "\x1c"])
def test_control_character_in_key(tmp_path: Path, char: str) -> None:
    path = csv_file(tmp_path, row("k1"), row(f"cu{char}st"), row("k3"))

    snapshot = read_source("B", path)

    assert snapshot.keys.to_pylist() == ["k1", "k3"]
    rejected = assert_rejected(snapshot, 3, f"control character \\x{ord(char):02x} in key")
    assert rejected.raw == row(f"cu\\x{ord(char):02x}st")


def test_tab_in_key_is_allowed(tmp_path: Path) -> None:
    assert read_source("B", csv_file(tmp_path, row("a\tb"))).keys.to_pylist() == ["a\tb"]


@pytest.mark.parametrize("key", ["", "   ", "\t", "\u3000"])
def test_empty_key(tmp_path: Path, key: str) -> None:
    snapshot = read_source("B", csv_file(tmp_path, row("k1"), row(key)))

    assert snapshot.keys.to_pylist() == ["k1"]
    assert_rejected(snapshot, 3, "empty key")


def test_quote_left_open(tmp_path: Path) -> None:
    path = csv_file(tmp_path, row("k1"), 'B,"k2,customer,LOC-7,' + STAMP, row("k3"), row("k4"))

    snapshot = read_source("B", path)

    assert snapshot.keys.to_pylist() == ["k1", "k3", "k4"] and snapshot.lines.to_pylist() == [2, 4, 5]
    assert_rejected(snapshot, 3, "quote left open")


def test_quote_left_open_on_the_last_line(tmp_path: Path) -> None:
    snapshot = read_source("B", csv_file(tmp_path, row("k1"), 'B,"k2,customer'))

    assert snapshot.keys.to_pylist() == ["k1"]
    assert_rejected(snapshot, 3, "quote left open")


def test_two_open_quotes_do_not_swallow_the_lines_between(tmp_path: Path) -> None:
    path = csv_file(tmp_path, 'B,"k1,customer,LOC,' + STAMP, row("k2"), 'B,"k3,customer,LOC,' + STAMP, row("k4"))

    snapshot = read_source("B", path)

    assert snapshot.keys.to_pylist() == ["k2", "k4"]
    assert [(r.line, r.reason) for r in snapshot.rejected] == [(2, "quote left open"), (4, "quote left open")]


def test_text_after_a_closing_quote(tmp_path: Path) -> None:
    snapshot = read_source("B", csv_file(tmp_path, row('"k1"x'), row("k2")))

    assert snapshot.keys.to_pylist() == ["k2"]
    assert_rejected(snapshot, 2, "unexpected text after a closing quote")


def test_key_longer_than_the_limit(tmp_path: Path) -> None:
    path = csv_file(tmp_path, row("k" * 300), row("k" * 256))

    snapshot = read_source("B", path)

    assert snapshot.keys.to_pylist() == ["k" * 256]
    rejected = assert_rejected(snapshot, 2, "key longer than 256 characters (300)")
    assert rejected.raw.endswith("...") and len(rejected.raw) == 203


def test_key_length_limit_counts_characters(tmp_path: Path) -> None:
    path = csv_file(tmp_path, row("é" * 5), row("é" * 6))

    snapshot = read_source("B", path, max_key_length=5)

    assert snapshot.keys.to_pylist() == ["é" * 5]
    assert_rejected(snapshot, 3, "key longer than 5 characters (6)")


def test_source_system_of_another_system(tmp_path: Path) -> None:
    path = csv_file(tmp_path, row("k1", system="C"), row("k2", system=""), row("k3", system="B"))

    snapshot = read_source("B", path)

    assert snapshot.keys.to_pylist() == ["k2", "k3"]
    assert_rejected(snapshot, 2, "source_system 'C' differs from the system being read (B)")


def test_unparseable_last_seen_at_keeps_the_row_with_a_warning(tmp_path: Path) -> None:
    path = csv_file(tmp_path, row("k1", seen="31/02/2026"), row("k2"))

    snapshot = read_source("B", path)

    assert snapshot.keys.to_pylist() == ["k1", "k2"]
    assert snapshot.last_seen_at.to_pylist() == ["", STAMP]
    assert_rejected(snapshot, 2, "unparseable last_seen_at '31/02/2026'", severity="warning")


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        (STAMP, STAMP),
        ("2026-01-31T10:00:00Z", STAMP),
        ("2026-01-31T10:00:00", STAMP),
        ("2026-01-31 10:00:00", STAMP),
        ("2026-01-31T12:00:00+02:00", STAMP),
        ("2026-01-31T05:30:00-04:30", STAMP),
        ("20260131T100000Z", STAMP),
        ("2026-01-31", "2026-01-31T00:00:00+00:00"),
        ("2026-01-31T10:00:00.250Z", "2026-01-31T10:00:00.250000+00:00"),
        ("2024-02-29T10:00:00+00:00", "2024-02-29T10:00:00+00:00"),
        (" 2026-01-31T10:00:00Z ", STAMP),
        ("", ""),
        ("  ", ""),
    ],
)
def test_last_seen_at_is_stored_as_iso_8601_utc(tmp_path: Path, written: str, stored: str) -> None:
    snapshot = read_source("B", csv_file(tmp_path, row("k1", seen=written)))

    assert snapshot.last_seen_at.to_pylist() == [stored] and snapshot.rejected == []


@pytest.mark.parametrize(
    "written",
    [
        "2026-02-29T10:00:00+00:00",
        "2026-04-31T10:00:00+00:00",
        "2026-01-31T24:00:00+00:00",
        "0000-01-01T00:00:00+00:00",
        "2026-13-01",
        "now",
        "today",
        "yesterday",
        "1767175200",
    ],
)
def test_impossible_or_non_iso_last_seen_at_is_unparseable(tmp_path: Path, written: str) -> None:
    snapshot = read_source("B", csv_file(tmp_path, row("k1", seen=written)))

    assert snapshot.keys.to_pylist() == ["k1"] and snapshot.last_seen_at.to_pylist() == [""]
    assert only_rejection(snapshot).severity == "warning"


def test_blank_lines_are_skipped_with_a_warning_and_not_counted(tmp_path: Path) -> None:
    path = csv_file(tmp_path, row("k1"), "", " \t", row("k2"), "")

    snapshot = read_source("B", path)

    assert snapshot.keys.to_pylist() == ["k1", "k2"] and snapshot.lines.to_pylist() == [2, 5]
    assert snapshot.rows_read == 2
    assert [(r.line, r.severity, r.reason) for r in snapshot.rejected] == [
        (3, "warning", "blank line"),
        (4, "warning", "blank line"),
        (6, "warning", "blank line"),
    ]


def test_rows_read_counts_rejected_rows_too(tmp_path: Path) -> None:
    path = csv_file(tmp_path, row("k1"), row(""), 'B,"k3', row("k4", system="C"), row("k5"))

    snapshot = read_source("B", path)

    assert snapshot.rows_read == 5 and snapshot.keys.to_pylist() == ["k1", "k5"]


def test_the_careful_path_agrees_with_the_fast_path(tmp_path: Path) -> None:
    """A quote anywhere sends the whole file down the careful path; rows must come out the same."""
    lines = [row(f"k{i}", seen=seen) for i, seen in enumerate([STAMP, "2026-01-31", "bad", ""])]
    lines += [row(""), row("k\x1b"), row("k", system="C"), row("x" * 300)]
    fast = read_source("B", csv_file(tmp_path, *lines))
    careful = read_source("B", csv_file(tmp_path, *lines, row('"quoted"')))

    for name in ("keys", "entity_types", "location_refs", "last_seen_at", "lines"):
        assert getattr(careful, name)[:-1] == getattr(fast, name)
    assert careful.rejected == fast.rejected
    assert careful.rows_read == fast.rows_read + 1


def test_raw_is_escaped_and_safe_to_print(tmp_path: Path) -> None:
    snapshot = read_source("B", csv_file(tmp_path, row("a\x00b", entity="x\x1by")))

    assert only_rejection(snapshot).raw == "B,a\\x00b,x\\x1by,LOC-7," + STAMP


# ------------------------------------------------------------------------------------------------------------
# Unusable files


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"

    with pytest.raises(SourceUnavailable, match=r"nope\.csv: file not found"):
        read_source("B", path)


def test_a_directory_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match=str(tmp_path)):
        read_source("B", tmp_path)


@pytest.mark.parametrize("content", ["", "\n", "\xef\xbb\xbf", "  \r\n"])
def test_empty_file_is_unavailable(tmp_path: Path, content: str) -> None:
    """Decision: an empty export (no header at all) is a failed export, not a system without keys."""
    path = write(tmp_path, content.encode("latin-1"))

    with pytest.raises(SourceUnavailable, match=r"b\.csv: empty file"):
        read_source("B", path)


def test_header_without_source_key(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "B,k1", header="Source_System,Key")

    with pytest.raises(
        SourceUnavailable, match=r"b\.csv: no usable header.*no source_key column \(found: Source_System,Key\)"
    ):
        read_source("B", path)


def test_header_with_a_repeated_column(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "k1,k2", header="source_key,source_key")

    with pytest.raises(SourceUnavailable, match="column source_key appears 2 times"):
        read_source("B", path)


def test_source_unavailable_is_the_domain_exception() -> None:
    assert SourceUnavailable is observations.SourceUnavailable


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown source kind"):
        read_source("B", Path("b.xml"), "xml")


# ------------------------------------------------------------------------------------------------------------
# JSON


def obj(key: object, **fields: object) -> dict[str, object]:
    return {"source_system": "B", "source_key": key, "entity_type": "customer", **fields}


def test_json_array(tmp_path: Path) -> None:
    elements = [
        obj("k1", last_seen_at="2026-01-31T10:00:00Z"),
        "oops",
        {"entity_type": "site"},
        obj(True),
        obj("k5"),
    ]
    path = write(tmp_path, json.dumps(elements, indent=2), "b.json")

    snapshot = read_source("B", path, "json")

    assert snapshot.keys.to_pylist() == ["k1", "k5"] and snapshot.lines.to_pylist() == [1, 5]
    assert snapshot.last_seen_at.to_pylist() == [STAMP, ""] and snapshot.location_refs.to_pylist() == ["", ""]
    assert snapshot.rows_read == 5
    assert [(r.line, r.severity, r.reason) for r in snapshot.rejected] == [
        (2, "error", "not a JSON object (string)"),
        (3, "error", "missing source_key"),
        (4, "error", "source_key is not a string or a number (boolean)"),
    ]
    assert snapshot.rejected[0].raw == '[element 2] "oops"'


def test_json_array_applies_the_field_rules(tmp_path: Path) -> None:
    elements = [obj(" "), obj("k\x1b"), obj("k", source_system="C"), obj("ok", last_seen_at="31/02/2026")]
    snapshot = read_source("B", write(tmp_path, json.dumps(elements), "b.json"), "json")

    assert snapshot.keys.to_pylist() == ["ok"]
    assert [(r.line, r.severity, r.reason) for r in snapshot.rejected] == [
        (1, "error", "empty key"),
        (2, "error", "control character \\x1b in key"),
        (3, "error", "source_system 'C' differs from the system being read (B)"),
        (4, "warning", "unparseable last_seen_at '31/02/2026'"),
    ]
    assert snapshot.rejected[1].raw.startswith("[element 2] ")


def test_a_pretty_printed_single_object_is_unavailable_with_the_formats_expected(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps({"source_system": "B", "source_key": "K-1"}, indent=2), "b.json")

    with pytest.raises(SourceUnavailable, match=r"b\.json: one JSON object over several lines: expected an array"):
        read_source("B", path, "json")
    one_line = write(tmp_path, json.dumps({"source_system": "B", "source_key": "K-1"}), "c.json")
    assert read_source("B", one_line, "json").keys.to_pylist() == [
        "K-1"
    ]  # one object on one line: JSON Lines of one record


def test_json_array_that_does_not_parse_is_unavailable(tmp_path: Path) -> None:
    path = write(tmp_path, '[{"source_key": "k1"},\n {"source_key": }]', "b.json")

    with pytest.raises(SourceUnavailable, match=r"b\.json: not valid JSON: .* at line 2 column 17"):
        read_source("B", path, "json")


def test_json_lines(tmp_path: Path) -> None:
    lines = [json.dumps(obj("k1")), "", "{not json", json.dumps([1]), json.dumps(obj("k5", location_ref="L"))]
    path = write(tmp_path, "\r\n".join(lines), "b.jsonl")

    snapshot = read_source("B", path, "json")

    assert snapshot.keys.to_pylist() == ["k1", "k5"] and snapshot.lines.to_pylist() == [1, 5]
    assert snapshot.location_refs.to_pylist() == ["", "L"]
    assert snapshot.rows_read == 4
    assert [(r.line, r.severity) for r in snapshot.rejected] == [(2, "warning"), (3, "error"), (4, "error")]
    assert snapshot.rejected[0].reason == "blank line"
    assert snapshot.rejected[1].reason.startswith("invalid JSON: ")
    assert snapshot.rejected[1].raw == "{not json"
    assert snapshot.rejected[2].reason == "not a JSON object (array)"


def test_json_lines_with_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    content = json.dumps(obj("k1")).encode() + b"\n" + json.dumps(obj("cu\xffst"), ensure_ascii=False).encode("latin-1")
    snapshot = read_source("B", write(tmp_path, content, "b.jsonl"), "json")

    assert snapshot.keys.to_pylist() == ["k1"]
    assert_rejected(snapshot, 2, "key is not valid UTF-8")


def test_json_non_string_field(tmp_path: Path) -> None:
    snapshot = read_source("B", write(tmp_path, json.dumps(obj("k1", location_ref=[5])), "b.jsonl"), "json")

    assert_rejected(snapshot, 1, "location_ref is not a string or a number (array)")


NUMBERS = ["12345", "-7", "1.50", "1e3", "0.1E-2", "123456789012345678901234567890"]


@pytest.mark.parametrize("layout", ["array", "lines"])
def test_json_numbers_are_read_as_the_text_they_are_written_as(tmp_path: Path, layout: str) -> None:
    records = [f'{{"source_system": "B", "source_key": {n}, "location_ref": {n}}}' for n in NUMBERS]
    records += ['{"source_key": true}', '{"source_key": NaN}', '{"source_key": "k1", "entity_type": false}']
    text = f"[{', '.join(records)}]" if layout == "array" else "\n".join(records)

    snapshot = read_source("B", write(tmp_path, text, "b.json"), "json")

    assert snapshot.keys.to_pylist() == NUMBERS and snapshot.location_refs.to_pylist() == NUMBERS
    assert [(r.line, r.reason) for r in snapshot.rejected] == [
        (7, "source_key is not a string or a number (boolean)"),
        (8, "source_key is not a string or a number (NaN or Infinity)"),
        (9, "entity_type is not a string or a number (boolean)"),
    ]
    if layout == "array":  # a number in a rejected element is shown as a number
        bad = read_source("B", write(tmp_path, '[{"source_key": 12, "entity_type": true}]', "c.json"), "json")
        assert bad.rejected[0].raw == '[element 1] {"source_key": 12, "entity_type": true}'


def test_json_lines_of_plain_objects_apply_the_field_rules(tmp_path: Path) -> None:
    """Lines framed as "{...}" go to pyarrow together; the field rules and missing keys still apply."""
    records = [obj("k1"), obj(" "), obj("k\x1b"), obj("k4", source_system="C"), obj(None), {"x": 1}, obj("k7")]
    records[6]["last_seen_at"] = "2026-01-31T10:00:00Z"
    path = write(tmp_path, "\r\n".join(json.dumps(r) for r in records) + "\r\n", "b.jsonl")

    snapshot = read_source("B", path, "json")

    assert snapshot.keys.to_pylist() == ["k1", "k7"] and snapshot.lines.to_pylist() == [1, 7]
    assert snapshot.last_seen_at.to_pylist() == ["", STAMP]
    assert snapshot.rows_read == 7
    assert [(r.line, r.reason) for r in snapshot.rejected] == [
        (2, "empty key"),
        (3, "control character \\x1b in key"),
        (4, "source_system 'C' differs from the system being read (B)"),
        (5, "missing source_key"),
        (6, "missing source_key"),
    ]
    assert snapshot.rejected[0].raw == json.dumps(records[1])


def test_json_lines_read_line_by_line_agree_with_pyarrow(tmp_path: Path) -> None:
    """One odd line sends every line down the line-by-line path; the other rows must come out the same."""
    records = [obj("k1"), obj(""), obj(None), obj("k4", last_seen_at="bad"), {"source_key": "k5", "x": [1, {}]}]
    lines = [json.dumps(r) for r in records]
    fast = read_source("B", write(tmp_path, "\n".join(lines), "b.jsonl"), "json")
    careful = read_source("B", write(tmp_path, "\n".join([*lines, json.dumps(obj(False))]), "b.jsonl"), "json")

    for name in ("keys", "entity_types", "location_refs", "last_seen_at", "lines"):
        assert getattr(careful, name) == getattr(fast, name)
    assert careful.rejected[:-1] == fast.rejected
    assert careful.rejected[-1].reason == "source_key is not a string or a number (boolean)"


def test_empty_json_file_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="empty file"):
        read_source("B", write(tmp_path, " \n", "b.json"), "json")


def test_empty_json_array_gives_zero_rows(tmp_path: Path) -> None:
    snapshot = read_source("B", write(tmp_path, "[]", "b.json"), "json")

    assert (snapshot.rows_read, snapshot.keys.to_pylist(), snapshot.rejected) == (0, [], [])


# ------------------------------------------------------------------------------------------------------------
# Assumptions the vectorized checks rest on


def test_arrow_whitespace_is_python_whitespace() -> None:
    """The blank-key pre-filter uses pyarrow's utf8_is_space; it must agree with str.isspace exactly."""
    chars = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]
    arrow = pc.utf8_is_space(pa.array(chars)).to_pylist()

    assert [c for c, space in zip(chars, arrow, strict=True) if space] == [c for c in chars if c.isspace()]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(st.text(alphabet="0123456789-T:+Z ", max_size=27) | st.sampled_from(["", STAMP]), max_size=30),
       stamps=st.lists(st.datetimes(), max_size=30), split=st.integers(0, 60))  # fmt: skip
def test_the_byte_level_timestamp_test_is_the_canonical_regex(texts: list[str], stamps: list, split: int) -> None:
    values = [*texts, *(f"{stamp:%Y-%m-%dT%H:%M:%S}+00:00" for stamp in stamps), "2026-02-29T10:00:00+00:00"]
    column = pa.array(values, pa.string())
    expected = pc.match_substring_regex(column, f"^$|{sources._CANONICAL_UTC}").to_pylist()

    in_chunks = pa.chunked_array([column.slice(0, split), column.slice(split)])
    assert sources._is_canonical_utc(in_chunks).tolist() == expected


def test_the_byte_level_control_test_is_the_regex() -> None:
    keys = pa.array([f"k{chr(c)}" for c in range(0x2FF)] + ["\u0085x", "é\x9f", "\u0100", "", "\t"], pa.string())
    expected = pc.match_substring_regex(keys, CONTROL_CLASS).to_pylist()

    for column in (keys, pa.chunked_array([keys.slice(0, 200), keys.slice(200)])):
        found = set(sources._rows_with_control(column).tolist())
        assert [i in found for i in range(len(keys))] == expected


UNQUOTED_FIELD = st.sampled_from(["", " ", "k", "B", "C", "\x1b", "\x85", "\u3000", "é", STAMP, "nope", "\t"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(st.lists(UNQUOTED_FIELD, max_size=7).map(",".join), max_size=20),
       end=st.sampled_from(["\n", "\r\n", "\r"]))  # fmt: skip
def test_the_one_pass_read_agrees_with_the_line_by_line_read(lines: list[str], end: str) -> None:
    """Quote-free UTF-8 goes through pyarrow in one pass, wrong widths and blank lines included; the line-by-line
    parser must give the same rows and the same rejections."""
    with tempfile.TemporaryDirectory() as tmp:
        path = csv_file(Path(tmp), *lines, end=end)
        one_pass = read_source("B", path)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(csv_source, "_read_whole_body", lambda *args: None)
            line_by_line = read_source("B", path)

    assert one_pass.rows.equals(line_by_line.rows)
    assert (one_pass.rejected, one_pass.rows_read) == (line_by_line.rejected, line_by_line.rows_read)


# ------------------------------------------------------------------------------------------------------------
# Property: every written record is accounted for exactly once

FIELD_TEXT = st.text(max_size=8) | st.sampled_from(["", "x", ",", '"', "\n", "\r", "\r\n", " "])
ROWS = st.lists(
    st.tuples(
        st.sampled_from(["", "B", "C"]),
        st.text(max_size=12) | st.sampled_from(["", " ", '"', 'a"b', "a,b", "a\nb", "a\r\nb", "k" * 20]),
        FIELD_TEXT,
        FIELD_TEXT,
        st.sampled_from(["", STAMP, "2026-01-31", "nope"]) | FIELD_TEXT,
    ),
    max_size=12,
)


def physical_line_ends(text: str) -> int:
    return text.count("\n") + text.count("\r") - text.count("\r\n")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=ROWS)
def test_every_written_row_is_accepted_or_rejected_exactly_once(rows: list[tuple[str, ...]]) -> None:
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(HEADER.split(","))
    starts, line = [], 2
    for fields in rows:
        record = io.StringIO(newline="")
        csv.writer(record).writerow(fields)
        starts.append(line)
        line += physical_line_ends(record.getvalue())
        out.write(record.getvalue())
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), out.getvalue())
        snapshot = read_source("B", path, max_key_length=16)

    errors = [r.line for r in snapshot.rejected if r.severity == "error"]
    assert sorted(snapshot.lines.to_pylist() + errors) == starts
    assert snapshot.rows_read == len(rows)
    written = dict(zip(starts, rows, strict=True))
    for line, key, entity, location in zip(
        snapshot.lines.to_pylist(),
        snapshot.keys.to_pylist(),
        snapshot.entity_types.to_pylist(),
        snapshot.location_refs.to_pylist(),
        strict=True,
    ):
        assert (key, entity, location) == written[line][1:4]
        assert written[line][0] in ("", "B")
    for rejected in snapshot.rejected:
        if rejected.severity == "warning":
            assert (
                rejected.reason.startswith("unparseable last_seen_at") and rejected.line in snapshot.lines.to_pylist()
            )


JSON_VALUE = st.one_of(
    st.none(), st.text(max_size=8), st.integers(), st.booleans(), st.lists(st.integers(), max_size=2)
)
JSON_RECORDS = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {"source_key": st.text(max_size=10) | st.none() | st.integers()},
            optional={name: JSON_VALUE | st.text(max_size=8) for name in ("source_system", "entity_type", "x")},
        ),
        st.sampled_from(["", "   ", "{", "[1]", '{"source_key": "a"} {}', '{"source_key": "a",}', "null"]),
    ),
    max_size=15,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=JSON_RECORDS, ascii_only=st.booleans(), end=st.sampled_from(["\n", "\r\n"]))
def test_every_json_line_is_accepted_or_rejected_exactly_once(
    records: list[dict[str, object] | str], ascii_only: bool, end: str
) -> None:
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=ascii_only) for r in records]
    content = end.join(lines)
    assume(content.strip() and not content.lstrip().startswith("["))  # else: unavailable, or an array
    with tempfile.TemporaryDirectory() as tmp:
        snapshot = read_source("B", write(Path(tmp), content, "b.jsonl"), "json", max_key_length=8)

    blank = [n for n, line in enumerate(lines, 1) if not line.strip()]
    errors = [r.line for r in snapshot.rejected if r.severity == "error"]
    assert sorted(snapshot.lines.to_pylist() + errors + blank) == list(range(1, len(lines) + 1))
    assert snapshot.rows_read == len(lines) - len(blank)
    for line, key in zip(snapshot.lines.to_pylist(), snapshot.keys.to_pylist(), strict=True):
        written = records[line - 1]["source_key"]  # type: ignore[index]
        assert key == (written if isinstance(written, str) else json.dumps(written))  # a number: as written


def test_many_rows_with_one_rewritten_timestamp_are_read(tmp_path):
    # Regression: a column of repeated timestamps that needed rewriting ("Z" suffix) crashed the reader.
    path = tmp_path / "C.csv"
    rows = "".join(f"C,K{i},,,2024-05-01T00:00:00Z\n" for i in range(50))
    path.write_text("source_system,source_key,entity_type,location_ref,last_seen_at\n" + rows, encoding="utf-8")
    snapshot = read_source("C", path)
    assert len(snapshot) == 50 and set(snapshot.last_seen_at.to_pylist()) == {"2024-05-01T00:00:00+00:00"}

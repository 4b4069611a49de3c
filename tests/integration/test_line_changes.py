"""Reading a changed export as the lines that changed gives what reading it whole gives: the same rows, rejected
rows and counts, and a delta that turns the earlier rows (and their keys normalized) into the new ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keysync.domain.observations import SourceSnapshot
from keysync.domain.reconciliation import prepare
from keysync.domain.rules import NormalizationRules
from keysync.domain.run import spliced
from keysync.infrastructure.sources import read_source

HEADER = b"source_system,source_key,entity_type,location_ref,last_seen_at"
LINES = [
    *(f"B,K-{i},customer,WH-1,2026-01-0{i % 9 + 1}T10:00:00Z".encode() for i in range(12)),
    b"B,k-1,customer,WH-1,2026-01-01T10:00:00Z",  # the same key, written another way
    b"", b"   ", b"\t",  # blank lines
    b"B,K-20,customer",  # too few fields
    b'"B","K-21","customer","WH-2",""',  # simply quoted
    b'B,"K,22",customer,WH-2,',  # a comma inside quotes
    b"B,\xff\xfe,customer,WH-2,",  # not UTF-8
    b"B,K\x01-23,customer,WH-2,",  # a control character
    b"C,K-24,customer,WH-2,",  # another system's row
    b"B," + b"X" * 40 + b",customer,WH-2,",  # a key too long
    b"B,K-25,customer,WH-2,yesterday",  # last_seen_at unparseable
    b"B,,customer,WH-2,",  # no key
]  # fmt: skip
SPANNING = b'B,"K-26\nstill K-26",customer,WH-2,'  # a record over two lines
MAX_KEY = 32

lines = st.lists(st.sampled_from([*LINES, SPANNING]) | st.sampled_from(LINES[:12]), min_size=8, max_size=40)


@st.composite
def edits(draw: st.DrawFn) -> tuple[list[bytes], list[bytes], bytes, bool]:
    """An export's lines before and after a few edits (lines removed, added, changed), its line end, and whether
    the file's last line ends with one."""
    before = draw(lines)
    after = list(before)
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(after)))
        match draw(st.sampled_from(["remove", "add", "change"])):
            case "remove" if after:
                del after[min(at, len(after) - 1)]
            case "change" if after:
                after[min(at, len(after) - 1)] = draw(st.sampled_from(LINES))
            case _:
                after.insert(at, draw(st.sampled_from(LINES)))
    return before, after, draw(st.sampled_from([b"\n", b"\r\n", b"\r"])), draw(st.booleans())


def write(path: Path, body: list[bytes], end: bytes, last_end: bool, header: bytes = HEADER) -> Path:
    data = end.join([header, *body])
    path.write_bytes(data + end if last_end or not body else data)
    return path


def read(path: Path, since: SourceSnapshot | None = None) -> SourceSnapshot:
    return read_source("B", path, max_key_length=MAX_KEY, keep_lines=True, since=since)


def assert_same(got: SourceSnapshot, whole: SourceSnapshot) -> None:
    assert got.rows.equals(whole.rows)
    assert got.rejected == whole.rejected
    assert got.rows_read == whole.rows_read
    assert np.array_equal(got.export_lines.hashes, whole.export_lines.hashes)
    assert np.array_equal(got.export_lines.blank, whole.export_lines.blank)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits())
def test_an_export_read_as_its_changed_lines_is_the_export_read_whole(tmp_path, case):
    before, after, end, last_end = case
    old = read(write(tmp_path / "before.csv", before, end, last_end))
    path = write(tmp_path / "B.csv", after, end, last_end)
    whole, changed = read(path), read(path, since=old)
    assert_same(changed, whole)
    if changed.delta is None:
        return
    delta = changed.delta
    added = changed.rows.take(pa.array(delta.added_at, pa.int64()))
    added = added.append_column("at", pa.array(delta.added_at, pa.int64()))
    rebuilt = spliced(old.rows, [delta.removed], [added], changed.rows.column("line").to_numpy())
    assert rebuilt is not None and rebuilt.equals(whole.rows)
    assert 2 * (len(delta.removed) + len(delta.added_at)) < len(whole.export_lines)
    # Only the added rows' keys are normalized; the others' are the earlier rows' keys as normalized before.
    rules = NormalizationRules(pad_numbers=3)
    by_delta = prepare(changed, rules, since=prepare(old, rules).normalized)
    assert by_delta.normalized.equals(prepare(whole, rules).normalized)


def test_a_few_lines_changed_are_all_that_is_parsed(tmp_path):
    body = [f"B,K-{i},customer,WH-1,".encode() for i in range(100)]
    old = read(write(tmp_path / "before.csv", body, b"\n", True))
    body[10] = b"B,NEW-1,customer,WH-1,"
    del body[50]
    body.insert(70, b"B,K-200,customer")
    changed = read(write(tmp_path / "B.csv", body, b"\n", True), since=old)
    assert changed.delta is not None
    assert changed.delta.removed.tolist() == [10, 50]
    assert changed.rows.take(pa.array(changed.delta.added_at)).column("key").to_pylist() == ["NEW-1"]
    assert [(r.line, r.reason) for r in changed.rejected] == [(72, "wrong number of fields: 3, expected 5")]
    assert changed.rows_read == 100


def test_a_changed_header_or_a_record_over_two_lines_means_reading_the_export_whole(tmp_path):
    body = [f"B,K-{i},customer,WH-1,".encode() for i in range(20)]
    old = read(write(tmp_path / "before.csv", body, b"\n", True))
    reordered = b"source_key,source_system,entity_type,location_ref,last_seen_at"
    swapped = [b"K-%d,B,customer,WH-1," % i for i in range(20)]
    assert read(write(tmp_path / "B.csv", swapped, b"\n", True, reordered), since=old).delta is None
    spanning = [*body[:19], SPANNING]
    assert read(write(tmp_path / "B.csv", spanning, b"\n", True), since=old).delta is None

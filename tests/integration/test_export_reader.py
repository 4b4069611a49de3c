"""Reading a changed export line by line gives exactly what reading it whole gives: the same snapshot (rows, line
numbers, rejections, rows read) and a row delta that turns the earlier rows into the new ones."""

from __future__ import annotations

import tempfile
from pathlib import Path

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keysync.domain.line_changes import LineChanges, apply_line_changes
from keysync.domain.row_delta import rows_of, splice
from keysync.infrastructure import export_reader
from keysync.infrastructure.export_reader import ExportReader
from keysync.infrastructure.sources import read_source

HEADER = b"source_system,source_key,entity_type,location_ref,last_seen_at\n"
# Lines of every kind a reader meets: good rows, repeats, rejections, blanks, quotes, bad bytes, odd line ends.
LINES = [
    b"B,K-1,customer,,2026-01-02T03:04:05+00:00\n",
    b"B,K-2,customer,x,\n",
    b"B,k-1,customer,,2026-01-02 03:04:05\n",
    b"B,K-3,customer,,yesterday\n",
    b"B,,customer,,\n",
    b"B,K-4,customer\n",
    b"C,K-5,customer,,\n",
    b"\n",
    b"   \n",
    b'B,"K,6",customer,,\n',
    b'B,"K-7",customer,,\n',
    b"B,K-\xff8,customer,,\n",
    b"B,K-9,customer,,\r\n",
    b"B,K-10,customer,,\r",
    b"B,bad\tkey,customer,,\n",
]
OPEN_QUOTE = b'B,"K-11\n'  # a quoted field running over the line end


def export(lines: list[bytes], *, ended: bool = True) -> bytes:
    data = HEADER + b"".join(lines)
    return data if ended else data.rstrip(b"\r\n")


EDITS = st.lists(
    st.tuples(st.sampled_from(["replace", "insert", "delete"]), st.integers(0, 10_000), st.sampled_from(LINES)),
    min_size=1,
    max_size=6,
)


def edited(lines: list[bytes], edits: list[tuple[str, int, bytes]]) -> list[bytes]:
    lines = list(lines)
    for operation, where, line in edits:
        i = where % (len(lines) + 1)
        if operation == "insert" or not lines:
            lines.insert(i, line)
        elif operation == "replace":
            lines[min(i, len(lines) - 1)] = line
        else:
            del lines[min(i, len(lines) - 1)]
    return lines


def first_read(reader: ExportReader, path: Path):  # type: ignore[no-untyped-def]
    """A whole read that the reader remembers (no earlier export to compare with)."""
    outcome = reader.read_changes("B", path, "csv", None)
    assert not isinstance(outcome, LineChanges)
    return outcome


def read_twice(folder: Path, before: list[bytes], after: list[bytes]):  # type: ignore[no-untyped-def]
    """The export read whole, then what the same reader makes of it rewritten: (base snapshot, outcome, path)."""
    path = folder / "B.csv"
    path.write_bytes(export(before))
    reader = ExportReader()
    base = first_read(reader, path)
    path.write_bytes(export(after))
    return base, reader.read_changes("B", path, "csv", base.fingerprint), path


def whole(path: Path, system: str = "B"):  # type: ignore[no-untyped-def]
    return attrs.evolve(read_source(system, path), fingerprint=None)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(LINES), max_size=30), EDITS, st.booleans(), st.booleans())
def test_changed_lines_applied_to_the_earlier_rows_are_the_whole_read(before, edits, ended_before, ended_after):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "B.csv"
        path.write_bytes(export(before, ended=ended_before))
        reader = ExportReader()
        base = first_read(reader, path)
        path.write_bytes(export(edited(before, edits), ended=ended_after))
        outcome = reader.read_changes("B", path, "csv", base.fingerprint)
        expected = whole(path)
        if isinstance(outcome, LineChanges):
            applied = apply_line_changes(base, outcome)
            assert applied is not None
            snapshot, delta = applied
            assert attrs.evolve(snapshot, fingerprint=None) == expected
            added = [rows_of(snapshot)[j] for j in delta.added]
            assert splice(rows_of(base), delta.removed, delta.added, added) == rows_of(expected)
        else:
            assert attrs.evolve(outcome, fingerprint=None) == expected


def test_an_export_edited_in_place_or_with_lines_inserted_is_read_line_by_line(tmp_path):
    rows = [f"B,K-{i},customer,,\n".encode() for i in range(200)]
    path = tmp_path / "B.csv"
    path.write_bytes(export(rows))
    reader = ExportReader()
    base = first_read(reader, path)
    rows[50] = b"B,NEW-1,customer,,\n"
    rows.insert(10, b"B,NEW-2,customer,,\n")
    path.write_bytes(export(rows))
    changes = reader.read_changes("B", path, "csv", base.fingerprint)
    assert isinstance(changes, LineChanges)
    assert changes.removed_lines == [52] and changes.added_lines == [12, 53]
    assert changes.added.keys == ["NEW-2", "NEW-1"]  # only the added lines were parsed
    snapshot, delta = apply_line_changes(base, changes)
    assert delta.removed == [50] and delta.added == [10, 51]
    assert attrs.evolve(snapshot, fingerprint=None) == whole(path)


def test_what_lines_cannot_say_is_read_whole(tmp_path):
    """A quoted field over a line end, a new header, an export this reader did not keep."""
    path = tmp_path / "B.csv"
    rows = [f"B,K-{i},customer,,\n".encode() for i in range(20)]
    cases = {
        "open quote": export([*rows, OPEN_QUOTE, b'",customer,,\n']),
        "new header": HEADER.replace(b"location_ref", b"location") + b"".join(rows),
    }
    for case, data in cases.items():
        path.write_bytes(export(rows))
        reader = ExportReader()
        base = first_read(reader, path)
        path.write_bytes(data)
        outcome = reader.read_changes("B", path, "csv", base.fingerprint)
        assert not isinstance(outcome, LineChanges), case
        assert attrs.evolve(outcome, fingerprint=None) == whole(path), case
    path.write_bytes(export(rows))
    base = first_read(ExportReader(), path)
    path.write_bytes(export(rows[1:]))
    assert not isinstance(ExportReader().read_changes("B", path, "csv", base.fingerprint), LineChanges)
    reader = ExportReader()
    base = reader.read("B", path)  # as a full run reads: nothing is kept
    path.write_bytes(export(rows[2:]))
    assert not isinstance(reader.read_changes("B", path, "csv", base.fingerprint), LineChanges)


def test_changes_taken_against_other_rows_are_refused(tmp_path):
    """apply_line_changes checks that the removed lines hold what the base has on them."""
    path = tmp_path / "B.csv"
    rows = [f"B,K-{i},customer,,\n".encode() for i in range(20)]
    path.write_bytes(export(rows))
    reader = ExportReader()
    base = first_read(reader, path)
    path.write_bytes(export([b"B,X,customer,,\n", *rows[1:]]))
    changes = reader.read_changes("B", path, "csv", base.fingerprint)
    assert isinstance(changes, LineChanges)
    other = attrs.evolve(base, keys=["OTHER", *base.keys[1:]])
    assert apply_line_changes(other, changes) is None


@given(st.lists(st.integers(), max_size=40), st.data())
def test_splice_removes_and_inserts_like_a_list_would(old, data):
    removed = sorted(data.draw(st.sets(st.sampled_from(range(len(old))))) if old else [])
    kept = [v for i, v in enumerate(old) if i not in set(removed)]
    added = data.draw(st.lists(st.integers(), max_size=10))
    size = len(kept) + len(added)
    at = (
        sorted(data.draw(st.sets(st.sampled_from(range(size)), min_size=len(added), max_size=len(added))))
        if size
        else []
    )
    slots = dict(zip(at, added, strict=True))
    rest = iter(kept)
    expected = [slots[i] if i in slots else next(rest) for i in range(size)]
    assert splice(old, removed, at, added) == expected


def test_a_line_ending_in_a_lone_carriage_return_is_not_joined_to_a_blank_line(tmp_path):
    """Changed lines are parsed joined: "...\\r" then "\\n" would read as one "\\r\\n" line, losing a line."""
    rows = [f"B,K-{i},customer,,\n".encode() for i in range(10)]
    edited = list(rows)
    edited[2], edited[4], edited[6] = b"B,X-2,customer,,\r", b"\n", b"B,X-6,customer,,\n"
    base, outcome, path = read_twice(tmp_path, rows, edited)
    if isinstance(outcome, LineChanges):
        outcome = apply_line_changes(base, outcome)[0]
    assert attrs.evolve(outcome, fingerprint=None) == whole(path)


def test_the_reader_keeps_one_export_per_system_and_none_unless_asked(tmp_path):
    reader = ExportReader()
    for day in range(5):  # keysync replay-history reads a new folder each day
        path = tmp_path / f"day-{day}" / "B.csv"
        path.parent.mkdir()
        path.write_bytes(export([b"B,K-1,customer,,\n"]))
        reader.read_changes("B", path, "csv", None)
    assert list(reader._last) == ["B"] and reader._last["B"][0] == str(path)
    once = ExportReader(keep=False)
    once.read_changes("B", path, "csv", None)
    assert not once._last


def test_a_rolling_export_is_read_line_by_line(tmp_path):
    """The oldest row dropped and a new one appended: every line moved, yet only two changed."""
    rows = [f"B,K-{i},customer,,\n".encode() for i in range(100)]
    base, changes, path = read_twice(tmp_path, rows, [*rows[1:], b"B,K-100,customer,,\n"])
    assert isinstance(changes, LineChanges)
    assert (changes.removed_lines, changes.added_lines) == ([2], [101])
    assert attrs.evolve(apply_line_changes(base, changes)[0], fingerprint=None) == whole(path)


@pytest.mark.parametrize("keep_lines_up_to", [0, 16 * 1024 * 1024], ids=["kept as bytes", "kept as lines"])
def test_a_kept_export_compares_the_same_kept_as_lines_or_as_bytes(tmp_path, monkeypatch, keep_lines_up_to):
    """Three exports in a row, each compared with the one before, whichever way the reader kept it."""
    monkeypatch.setattr(export_reader, "KEEP_LINES_UP_TO", keep_lines_up_to)
    rows = [f"B,K-{i},customer,,\n".encode() for i in range(50)]
    path = tmp_path / "B.csv"
    path.write_bytes(export(rows))
    reader = ExportReader()
    base = first_read(reader, path)
    for step in range(3):
        rows[10 + step] = f"B,NEW-{step},customer,,\n".encode()
        path.write_bytes(export(rows))
        changes = reader.read_changes("B", path, "csv", base.fingerprint)
        assert isinstance(changes, LineChanges) and changes.removed_lines == [12 + step]
        base = attrs.evolve(apply_line_changes(base, changes)[0], fingerprint=changes.fingerprint)
        assert attrs.evolve(base, fingerprint=None) == whole(path)
    assert isinstance(reader._last["B"][2], list if keep_lines_up_to else bytes)

"""The sandbox's adapters: its CSV files read back through the real reader exactly as the sandbox predicts, saved
state files, and the lock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keysync.application.sandbox_ports import SandboxBusy, SandboxFilesError, StateFileError
from keysync.domain.sandbox_rows import make_row, snapshot
from keysync.infrastructure.sandbox_files import stage_sources
from keysync.infrastructure.sandbox_lock import sandbox_lock
from keysync.infrastructure.sandbox_states import StateFolder
from keysync.infrastructure.sources import read_source

SYSTEMS = "ABCDE"
MAX = 24
SEEN = "2026-01-02T03:04:05+00:00"

_keys = st.one_of(
    st.text(alphabet="AB-_ .,\"'\t\r\n\x00\x1b\x85Üß€1", max_size=30),
    st.binary(max_size=12).map(lambda b: b.decode("utf-8", "surrogateescape")),
    st.sampled_from(["CUST-00001", "", "   ", "X" * (MAX + 1), "Ｘ-1", "=cmd|' /C calc'!A0"]),
)


def staged_files(folder: Path, rows: dict[str, list]) -> dict[str, Path]:
    targets = {s: folder / f"{s}.csv" for s in SYSTEMS}
    expected = {s: snapshot(s, rows[s], MAX, str(targets[s])) for s in SYSTEMS}
    stage_sources(targets, rows, expected, max_key_length=MAX).commit()
    return targets


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_keys, max_size=12))
def test_what_the_sandbox_writes_the_reader_reads_as_predicted(tmp_path: Path, keys: list[str]):
    rows = [make_row(k, "customer", "WH-01", SEEN if i % 2 else "") for i, k in enumerate(keys)]
    targets = staged_files(tmp_path, {s: rows for s in SYSTEMS})  # raises if any file reads back otherwise
    got = read_source("B", targets["B"], "csv", max_key_length=MAX)
    want = snapshot("B", rows, MAX, str(targets["B"]))
    assert (got.keys.to_pylist(), got.lines.to_pylist(), got.last_seen_at.to_pylist()) == (
        want.keys.to_pylist(),
        want.lines.to_pylist(),
        want.last_seen_at.to_pylist(),
    )
    assert [(r.line, r.reason) for r in got.rejected] == [(r.line, r.reason) for r in want.rejected]
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_file_that_would_read_back_otherwise_is_never_put_in_place(tmp_path: Path):
    rows = {s: [make_row("K-1")] for s in SYSTEMS}
    targets = staged_files(tmp_path, rows)
    before = {s: p.read_bytes() for s, p in targets.items()}
    wrong = {s: snapshot(s, [make_row("K-2")], MAX) for s in SYSTEMS}
    with pytest.raises(SandboxFilesError, match="reads back with other"):
        stage_sources(targets, {s: [make_row("K-1"), make_row("K-3")] for s in SYSTEMS}, wrong, max_key_length=MAX)
    assert {s: p.read_bytes() for s, p in targets.items()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{s}.csv" for s in SYSTEMS]


def test_staged_files_are_only_in_place_once_committed(tmp_path: Path):
    rows = {s: [make_row(f"{s}-1")] for s in SYSTEMS}
    expected = {s: snapshot(s, rows[s], MAX) for s in SYSTEMS}
    targets = {s: tmp_path / f"{s}.csv" for s in SYSTEMS}
    staged = stage_sources(targets, rows, expected, max_key_length=MAX)
    assert not any(p.exists() for p in targets.values())
    staged.discard()
    assert list(tmp_path.iterdir()) == []


def test_states_folder(tmp_path: Path):
    folder = StateFolder(tmp_path / "states")
    assert folder.names() == []
    staged = folder.stage("one", {"format": "x"})
    assert folder.names() == []
    staged.commit()
    assert folder.names() == ["one"] and folder.read("one") == {"format": "x"}
    deletion = folder.stage_delete("one")
    assert folder.names() == ["one"]  # until the deletion is logged and committed, the state stays in sight
    deletion.discard()
    assert folder.names() == ["one"]
    folder.stage_delete("one").commit()
    assert folder.names() == [] and list((tmp_path / "states").iterdir()) == []
    with pytest.raises(StateFileError, match="no saved state 'one'"):
        folder.read("one")


def test_exported_state_is_the_same_file(tmp_path: Path):
    folder = StateFolder(tmp_path / "states")
    folder.stage("one", {"format": "x", "systems": {}}).commit()
    exported = folder.export("one", tmp_path)
    assert exported == tmp_path / "one.json"
    assert exported.read_bytes() == folder.path("one").read_bytes()


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"\xff\xfe", "not UTF-8 JSON"), (b"{", "not UTF-8 JSON"), (b"[1]", "not a JSON object")],
)
def test_a_state_file_that_is_not_json_is_refused(tmp_path: Path, content: bytes, problem: str):
    path = tmp_path / "x.json"
    path.write_bytes(content)
    with pytest.raises(StateFileError, match=problem):
        StateFolder(tmp_path).read_file(path)


def test_the_lock_waits_then_gives_up_clearly(tmp_path: Path):
    lock = tmp_path / "sandbox.lock"
    with (
        sandbox_lock(lock, 5),
        pytest.raises(SandboxBusy, match="nothing was changed, try again"),
        sandbox_lock(lock, 0.05),
    ):
        pass
    with sandbox_lock(lock, 0.05):  # released
        pass


def test_state_documents_are_plain_json(tmp_path: Path):
    folder = StateFolder(tmp_path)
    folder.stage("s", {"systems": {"A": [make_row(b"K\xff".decode("utf-8", "surrogateescape"))]}}).commit()
    assert json.loads(folder.path("s").read_bytes().decode("utf-8"))["systems"]["A"][0][-1] == "4bff"

"""A sandbox command that fails anywhere changes nothing, and concurrent commands never lose an edit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
from eventsourcing.persistence import IntegrityError

from keysync.application.sandbox_bootstrap import build_sandbox
from keysync.application.service import ConflictError
from keysync.application.store import KeySyncStore
from keysync.domain.sandbox import SANDBOX_ID
from keysync.infrastructure import sandbox_files
from keysync.infrastructure.config import load_config
from keysync.infrastructure.sandbox_lock import sandbox_lock
from tests.e2e.test_sandbox_support import SYSTEMS, as_json, files, keys, sandbox, stored_events


@pytest.fixture
def ready(project):
    sandbox(project, "init", "--keys", "20")
    return project


def leftovers(project) -> list[str]:
    return sorted(p.name for p in project.input.iterdir() if p.name not in {f"{s}.csv" for s in SYSTEMS})


def assert_unchanged(project, before: dict[str, bytes], events: list[str]) -> None:
    assert files(project) == before
    assert stored_events(project) == events
    assert leftovers(project) == []  # no temporary file left behind


def test_a_file_that_cannot_be_written_rolls_the_operation_back(ready, monkeypatch):
    before, events = files(ready), stored_events(ready)
    real = sandbox_files.write_rows

    def failing(path: Path, system: str, rows):
        if system == "D":  # A, B and C are written already: they must go too
            raise OSError(28, "No space left on device")
        real(path, system, rows)

    monkeypatch.setattr(sandbox_files, "write_rows", failing)
    result = sandbox(ready, "add-key", "X-1", "--systems", "A,B,C,D,E", expect=1)
    assert "cannot write" in result.stderr and "No space left on device; nothing was changed" in result.stderr
    assert_unchanged(ready, before, events)


def test_a_file_that_reads_back_differently_rolls_the_operation_back(ready, monkeypatch):
    before, events = files(ready), stored_events(ready)
    real = sandbox_files.read_source

    def misreading(system, path, kind, *, max_key_length):
        snapshot = real(system, path, kind, max_key_length=max_key_length)
        if system == "E":
            return attrs.evolve(snapshot, rows=snapshot.rows.slice(0, len(snapshot) - 1))
        return snapshot

    monkeypatch.setattr(sandbox_files, "read_source", misreading)
    result = sandbox(ready, "remove-key", "--pattern", "CUST-*", "--systems", "E", "--yes", expect=1)
    assert "E.csv: the file written reads back with other keys; nothing was changed" in result.stderr
    assert_unchanged(ready, before, events)


def test_a_save_refused_by_the_store_rolls_the_files_back(ready, monkeypatch):
    before, events = files(ready), stored_events(ready)

    def conflicting(self, *objs, **kwargs):
        raise IntegrityError("UNIQUE constraint failed: stored_events.originator_id, stored_events.originator_version")

    monkeypatch.setattr(KeySyncStore, "save", conflicting)
    result = sandbox(ready, "add-key", "X-1", "--systems", "B", expect=1)
    assert (
        "another sandbox command changed the sandbox at the same moment; nothing was changed, try again"
        in result.stderr
    )
    assert_unchanged(ready, before, events)


def test_a_saved_state_that_cannot_be_written_is_not_recorded(ready, monkeypatch):
    events = stored_events(ready)
    states = ready.root / "sandbox_states"
    states.mkdir()
    (states / "blocked.json").mkdir()  # the state's file cannot be renamed over a folder
    result = sandbox(ready, "save-state", "blocked", "--force", expect=1)
    assert "blocked.json exists and is not a file" in result.stderr
    assert stored_events(ready) == events
    assert sorted(p.name for p in states.iterdir()) == ["blocked.json"]


def test_a_state_file_that_fails_half_way_is_not_recorded(ready, monkeypatch):
    events = stored_events(ready)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("keysync.infrastructure.sandbox_states.json.dump", full_disk)
    result = sandbox(ready, "save-state", "big", expect=1)
    assert "cannot write state 'big'" in result.stderr and "No space left on device" in result.stderr
    assert stored_events(ready) == events
    assert list((ready.root / "sandbox_states").iterdir()) == []


def test_two_writers_of_the_same_version_the_second_is_refused(ready, monkeypatch):
    """Optimistic concurrency without the lock: of two commands that loaded the same version, one wins."""
    config = load_config(ready.config)
    first, second = build_sandbox(config, actor="one"), build_sandbox(config, actor="two")
    stale = second.sandbox()  # loaded before the first writer saves
    loaded_version = stale.version
    first.add_keys(["FIRST"], ["B"])
    monkeypatch.setattr(type(second), "sandbox", lambda _self: stale)
    before = files(ready)
    with pytest.raises(ConflictError, match="nothing was changed, try again"):
        second.add_keys(["SECOND"], ["C"])
    assert files(ready) == before
    assert "FIRST" in keys(ready, "B") and "SECOND" not in keys(ready, "C")
    assert first.store.repository.get(SANDBOX_ID).version == loaded_version + 1


def test_concurrent_processes_never_lose_an_edit(ready):
    code = "import sys; from keysync.cli.sandbox import sandbox_group; sandbox_group.main(sys.argv[1:])"
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                code,
                "add-key",
                f"P-{i}",
                "--systems",
                "B",
                "--user",
                f"p{i}",
                "-c",
                str(ready.config),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(6)
    ]
    outcomes = [(p.wait(timeout=120), p.stderr.read()) for p in processes]  # type: ignore[union-attr]
    for process in processes:
        process.stdout.close()  # type: ignore[union-attr]
        process.stderr.close()  # type: ignore[union-attr]
    succeeded = {f"P-{i}" for i, (code, _err) in enumerate(outcomes) if code == 0}
    for code, err in outcomes:  # one waits for the other; a refusal would be this one clear message
        assert code == 0 or "nothing was changed, try again" in err, err
    assert succeeded == {f"P-{i}" for i in range(6)}  # the lock makes every one wait its turn
    assert set(keys(ready, "B")[20:]) == succeeded
    history = as_json(sandbox(ready, "history", "--json"))
    assert sorted(h["actor"] for h in history if h["operation"] == "add-key") == [f"p{i}" for i in range(6)]


def test_a_command_that_waits_too_long_for_another_gives_up_clearly(ready):
    ready.write_config("processing: {lock_timeout_s: 0.1}\n")
    before, events = files(ready), stored_events(ready)
    lock = ready.root / "data" / "keysync.sqlite.sandbox.lock"
    with sandbox_lock(lock, 1):
        result = sandbox(ready, "add-key", "X", "--systems", "B", expect=1)
    assert "another sandbox command has held the sandbox for 0.1 s" in result.stderr
    assert_unchanged(ready, before, events)


def test_a_delete_state_killed_after_its_event_never_hides_the_state(ready):
    sandbox(ready, "save-state", "kept")
    killed = subprocess.run(
        [sys.executable, "-c", "from keysync.cli.main import main; main()", "sandbox", "delete-state", "kept", "--yes",
         "-c", str(ready.config)],
        capture_output=True, text=True, env={**os.environ, "KEYSYNC_CRASH_AFTER_EVENTS": "1"},
    )  # fmt: skip

    assert killed.returncode == -9  # right after the deletion was stored, before the file went
    assert [s["name"] for s in as_json(sandbox(ready, "states", "--json"))] == ["kept"]
    sandbox(ready, "delete-state", "kept", "--yes")
    assert as_json(sandbox(ready, "states", "--json")) == []

"""Rows kept out of memory (keysync.infrastructure.spill): the same rows, read within a budget, cleaned up."""

from __future__ import annotations

import csv
import gc
import os
import shutil
import threading
from datetime import UTC, datetime
from pathlib import Path

import attrs
import pytest

from keysync.application.bootstrap import build, run_settings
from keysync.application.retry import RetryPolicy
from keysync.application.schedule import Scheduler
from keysync.domain.observations import SourceSnapshot
from keysync.infrastructure.config import load_config
from keysync.infrastructure.sources import read_source
from keysync.infrastructure.spill import SpillingReader
from tests.conftest import Project

REPORTS = ("diff_missing_in_A.csv", "diff_missing_from_system.csv", "duplicate_keys.csv", "rejected_rows.csv",
           "master_key_registry.csv", "reconciliation_summary.csv")  # fmt: skip


def _export(path: Path, keys: list[str]) -> Path:
    path.write_text(
        "source_system,source_key,entity_type,location_ref,last_seen_at\n"
        + "".join(f"B,{k},customer,L{i},2026-01-0{i % 9 + 1}T00:00:00+00:00\n" for i, k in enumerate(keys)),
        encoding="utf-8",
    )
    return path


def test_kept_rows_are_the_rows_read_and_go_with_the_run(tmp_path: Path) -> None:
    path = _export(tmp_path / "B.csv", ["k-1", "K 2", "k-1", "", "ｋ３"])
    reader = SpillingReader(read_source, tmp_path / "spill", spill_rows=0)
    kept = reader("B", path, "csv", max_key_length=256)
    plain = read_source("B", path)
    assert kept.rows.equals(plain.rows)
    assert (kept.rejected, kept.rows_read, kept.fingerprint) == (plain.rejected, plain.rows_read, plain.fingerprint)
    assert [p.suffix for p in reader.folder.iterdir()] == [".arrow"]
    reader.release()  # the pages go back to the file cache; the rows stay readable
    assert kept.keys.to_pylist() == plain.keys.to_pylist()
    reader.clear()
    assert not reader.folder.exists()
    assert kept.rows.equals(plain.rows)  # still mapped after the file is gone


def test_small_exports_stay_in_memory(tmp_path: Path) -> None:
    path = _export(tmp_path / "B.csv", ["k-1", "k-2"])
    reader = SpillingReader(read_source, tmp_path / "spill", spill_rows=3)
    assert reader("B", path, "csv", max_key_length=256).keys.to_pylist() == ["k-1", "k-2"]
    assert not reader.folder.exists()


def test_clear_removes_what_ended_processes_left_and_keeps_the_living_ones(tmp_path: Path) -> None:
    spill = tmp_path / "spill"
    # A crash's folder: its process is gone, so nothing holds its lock (its pid may well be in use again).
    left = spill / f"host-{os.getpid()}-0a0a0a0a"
    left.mkdir(parents=True)
    (left / "B-x.arrow").write_bytes(b"rows")
    living = SpillingReader(read_source, spill, spill_rows=0)  # another process's, as far as locks go
    kept = living("B", _export(tmp_path / "B.csv", ["k-1"]), "csv", max_key_length=256)
    SpillingReader(read_source, spill).clear()
    assert not left.exists()
    assert [p.suffix for p in living.folder.iterdir()] == [".arrow"]
    living.clear()
    assert not any(spill.iterdir())
    assert kept.keys.to_pylist() == ["k-1"]


def test_exports_are_read_together_only_while_they_fit_the_budget(tmp_path: Path) -> None:
    sizes = {"B": 100, "C": 100, "D": 100, "E": 100}
    for system, size in sizes.items():
        (tmp_path / f"{system}.csv").write_bytes(b"x" * size)
    together = threading.Barrier(2, timeout=30)  # two reads that fit must be under way at once
    reading, most = [0], [0]
    lock = threading.Lock()
    reader = SpillingReader(read_source, tmp_path / "spill", read_budget=250)

    def read(system: str) -> None:
        with reader.turn(tmp_path / f"{system}.csv"):
            with lock:
                reading[0] += 1
                most[0] = max(most[0], reading[0])
            together.wait()
            with lock:
                reading[0] -= 1

    threads = [threading.Thread(target=read, args=(s,)) for s in sizes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 2


def test_waiting_for_a_turn_costs_no_read_its_time_limit_nor_does_a_hung_read_keep_its_turn(
    tmp_path: Path,
) -> None:
    """Five exports that fit the budget only one at a time, each read taking longer than a fifth of the time limit,
    and one (B) that hangs for good: every other export is read, within its own time limit."""
    project = Project(tmp_path)
    for system in "ABCDE":
        project.write_system(system, [f"K-{i}" for i in range(3)])
    hung, slow = threading.Event(), threading.Event()

    def read(system: str, path: Path, kind: str, *, max_key_length: int, **_options: object) -> SourceSnapshot:
        if system == "B":
            hung.wait()  # never set during the run
        slow.wait(0.4)  # never set: a read that takes 0.4 s
        return read_source(system, path, kind, max_key_length=max_key_length)

    config = load_config(project.config)
    application = build(config, create_tables=True)
    reader = SpillingReader(read, tmp_path / "spill", read_budget=1)  # one file at a time
    application = attrs.evolve(application, read_source=reader, spill=reader)
    settings = attrs.evolve(run_settings(config), retry=RetryPolicy(timeout_s=1.0, retries=0))
    outcome = application.run(settings)
    hung.set()
    kpis = outcome.result.run.kpis["systems"]
    assert {s: kpis[s]["status"] for s in "ABCDE"} == {"A": "ok", "B": "unavailable", "C": "ok", "D": "ok", "E": "ok"}


def test_a_read_the_run_gave_up_on_keeps_nothing_once_it_returns(tmp_path: Path) -> None:
    path = _export(tmp_path / "B.csv", ["k-1"])
    reader = SpillingReader(read_source, tmp_path / "spill", spill_rows=0)
    late: list[SourceSnapshot] = []
    started, go = threading.Event(), threading.Event()

    def read(system: str, path: Path, kind: str, *, max_key_length: int, **_options: object) -> SourceSnapshot:
        started.set()
        go.wait(30)
        return read_source(system, path, kind, max_key_length=max_key_length)

    reader.read = read
    thread = threading.Thread(target=lambda: late.append(reader("B", path, "csv", max_key_length=256)))
    thread.start()
    started.wait(30)
    reader.clear()  # the run ended without it
    go.set()
    thread.join()
    assert late[0].keys.to_pylist() == ["k-1"]
    assert not reader.folder.exists()


def test_a_file_larger_than_the_budget_is_read_alone(tmp_path: Path) -> None:
    path = _export(tmp_path / "B.csv", ["k-1"])
    reader = SpillingReader(read_source, tmp_path / "spill", read_budget=1)
    assert reader("B", path, "csv", max_key_length=256).keys.to_pylist() == ["k-1"]


def _rows(project: Project, report: str) -> list[dict[str, str]]:
    """A report's rows without what names the run, its time or the project's folder."""
    with (project.output / report).open(encoding="utf-8", newline="") as handle:
        return [
            {k: v.replace(str(project.root), "") for k, v in row.items() if not k.endswith(("run_id", "_at"))}
            for row in csv.DictReader(handle)
        ]


def test_a_run_with_its_rows_kept_in_files_reports_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "kept").mkdir(), (tmp_path / "plain").mkdir()
    kept, plain = Project(tmp_path / "kept"), Project(tmp_path / "plain")
    kept.invoke("generate", "--keys", "3000", "--seed", "7")
    shutil.rmtree(plain.input)
    shutil.copytree(kept.input, plain.input)
    plain.invoke("run")
    kept.write_config("processing: {spill_rows: 0}\n")
    kept.invoke("run")
    assert (kept.root / "data" / "spill").is_dir()  # the rows went to files there
    assert not any((kept.root / "data" / "spill").iterdir())  # which went with the run
    for report in REPORTS:
        assert _rows(kept, report) == _rows(plain, report), report


def test_rows_that_cannot_be_kept_in_a_file_stay_in_memory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _export(tmp_path / "B.csv", ["k-1", "k-2"])
    (tmp_path / "spill").write_text("a file where the folder would be")  # mkdir fails, as on a read-only disk
    reader = SpillingReader(read_source, tmp_path / "spill", spill_rows=0)
    with caplog.at_level("WARNING", logger="keysync"):
        kept = reader("B", path, "csv", max_key_length=256)
    assert kept.keys.to_pylist() == ["k-1", "k-2"]
    assert "System B: its rows stay in memory" in caplog.text
    reader.release()
    reader.clear()  # nothing to clear, and no error for it


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc/self/maps (Linux)")
def test_a_scheduler_keeps_no_run_s_rows_once_the_run_is_done(tmp_path: Path) -> None:
    project = Project(tmp_path)
    for system in "ABCDE":
        project.write_system(system, [f"K-{i}" for i in range(50)])
    project.write_config("processing: {spill_rows: 0}\n")  # every export waits in a file
    config = load_config(project.config)
    application = build(config, create_tables=True)
    now = [datetime(2026, 3, 2, 1, tzinfo=UTC)]

    def sleep_until(until: datetime) -> None:
        now[0] = until

    scheduler = Scheduler("0 2 * * *", lambda: application.run(run_settings(config)), clock=lambda: now[0],
                          sleep_until=sleep_until)  # fmt: skip
    records = scheduler.serve(max_runs=3)
    assert [r.ok for r in records] == [True] * 3
    assert all(r.outcome is not None and r.outcome.result.reconciliation is None for r in records)
    gc.collect()
    spill = str(tmp_path / "data" / "spill")
    assert [line for line in Path("/proc/self/maps").read_text().splitlines() if spill in line] == []

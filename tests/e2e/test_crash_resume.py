"""Crash safety: a run killed at any save resumes to the same result; one run at a time per store."""

from __future__ import annotations

import csv
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from keysync.infrastructure.run_lock import file_lock
from keysync.projections.reports import REPORTS

A = ["CUST-1", "CUST-2", "CUST-3", "PROD-1"]
# Columns that name the run or the moment, and so differ between any two runs.
VOLATILE = {"run_id", "first_detected_run_id", "first_detected_at", "generated_at", "finished_at", "created_at",
            "updated_at", "created_run_id", "event_id", "payload", "file"}  # fmt: skip


def keysync(project, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from keysync.cli.main import main; main()", *args, "-c", str(project.config)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def stable_reports(output: Path) -> dict[str, list[dict[str, str]]]:
    reports = {}
    for name in REPORTS:
        with (output / name).open(encoding="utf-8", newline="") as handle:
            reports[name] = [{k: v for k, v in row.items() if k not in VOLATILE} for row in csv.DictReader(handle)]
    return reports


def events(project) -> list[tuple[str, str]]:
    with sqlite3.connect(project.root / "data" / "keysync.sqlite") as db:
        rows = db.execute("SELECT originator_id, topic FROM stored_events ORDER BY rowid").fetchall()
    return [(originator, topic.rsplit(".", 1)[-1]) for originator, topic in rows]


@pytest.fixture
def seeded(project, write_systems):
    write_systems(A=A, B=["cust_1", "X-1"], C=A, D=["CUST-1", "x 1", "Y-2"], E=A)
    project.write_config("processing: {batch_size: 2}\n")  # several observation batches per system
    return project


def test_a_run_killed_after_any_save_resumes_to_the_uninterrupted_result(seeded, tmp_path_factory):
    pristine = tmp_path_factory.mktemp("pristine") / "project"
    shutil.copytree(seeded.root, pristine)
    assert keysync(seeded, "run").returncode == 0
    expected_reports = stable_reports(seeded.output)
    expected_events = [topic for _, topic in events(seeded)]

    crash_points = set()
    for crash_after in range(1, len(expected_events) + 1):
        shutil.rmtree(seeded.root)
        shutil.copytree(pristine, seeded.root)
        crashed = keysync(seeded, "run", env={"KEYSYNC_CRASH_AFTER_EVENTS": str(crash_after)})
        assert crashed.returncode == -9, (crash_after, crashed.stderr)
        stored_before = len(events(seeded))
        if stored_before in crash_points:
            continue  # the same save boundary as an earlier iteration: saves are atomic
        crash_points.add(stored_before)
        # Killed after its last save, the run is complete and only its reports lag behind.
        recovery = "reports" if stored_before == len(expected_events) else "run"
        recovered = keysync(seeded, recovery)
        assert recovered.returncode == 0, (crash_after, recovered.stderr)
        stored = events(seeded)
        assert [topic for _, topic in stored] == expected_events, crash_after  # nothing lost, nothing twice
        assert len({originator for originator, topic in stored if topic == "Started"}) == 1
        assert stable_reports(seeded.output) == expected_reports, crash_after
    assert len(crash_points) >= 7  # a checkpoint per system, plus the start and the end


def test_a_crash_while_writing_a_report_leaves_no_half_report(seeded):
    assert keysync(seeded, "run").returncode == 0
    seeded.write_system("B", [*A, "Z-9"])
    crashed = keysync(seeded, "run", env={"KEYSYNC_CRASH_IN_REPORT": "diff_missing_in_A.csv"})
    assert crashed.returncode == -9
    before = seeded.report("diff_missing_in_A.csv")  # the previous complete report, not half a new one
    assert {r["normalized_key"] for r in before} == {"X-1", "Y-2"}
    assert keysync(seeded, "run").returncode == 0
    assert {r["normalized_key"] for r in seeded.report("diff_missing_in_A.csv")} == {"Z-9", "X-1", "Y-2"}


def test_no_resume_marks_the_interrupted_run_failed_and_starts_afresh(seeded):
    assert keysync(seeded, "run", env={"KEYSYNC_CRASH_AFTER_EVENTS": "3"}).returncode == -9
    fresh = keysync(seeded, "run", "--no-resume")
    assert fresh.returncode == 0, fresh.stderr
    statuses = [r["status"] for r in seeded.report("reconciliation_summary.csv")]
    assert statuses == ["ok"] * 5
    assert [topic for _, topic in events(seeded)].count("Failed") == 1


def test_a_second_run_on_a_locked_store_says_which_run_is_in_progress(seeded):
    lock = seeded.root / "data" / "keysync.sqlite.lock"
    with file_lock(lock) as claim:
        claim("abc123")
        refused = seeded.invoke("run", expect=1)
    assert "another run is in progress (run_id abc123" in refused.stderr
    seeded.invoke("run")  # released: the next run goes ahead


def test_a_run_killed_while_its_rows_wait_in_files_resumes_and_the_files_go(seeded, tmp_path_factory):
    seeded.write_config("processing: {batch_size: 2, spill_rows: 0}\n")  # every export waits in a file
    root = tmp_path_factory.mktemp("uninterrupted") / "project"
    shutil.copytree(seeded.root, root)
    uninterrupted = SimpleNamespace(config=root / "keysync-config.yaml")
    assert keysync(uninterrupted, "run").returncode == 0
    spill = seeded.root / "data" / "spill"
    assert keysync(seeded, "run", env={"KEYSYNC_CRASH_AFTER_EVENTS": "6"}).returncode == -9
    assert [p.suffix for p in spill.glob("*/*")] == [".arrow"] * 5  # left behind by the killed process
    resumed = keysync(seeded, "run")
    assert resumed.returncode == 0, resumed.stderr
    assert not any(spill.iterdir())
    assert stable_reports(seeded.output) == stable_reports(root / "output")

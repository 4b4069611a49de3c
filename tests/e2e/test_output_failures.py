"""A full disk and a folder that cannot be written: a command fails with one clear line (exit 1, no traceback), the
store stays consistent, the report files that were there stay whole, and once there is room again everything
catches up.

Three ways to make writing fail, each where it can be had:
- ``KEYSYNC_DISK_FULL_IN_REPORT`` (keysync.infrastructure.faults) makes the report writer fail with ENOSPC half-way
  through one report, after the reports before it were replaced: always available;
- a small tmpfs, filled up, under the output folder or the store's folder: a real ENOSPC, from the report writer
  and from SQLite ("database or disk is full"); only where this process may mount (root with CAP_SYS_ADMIN);
- a read-only output folder (chmod): only for a user other than root, whom permissions do not stop.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from keysync.projections.reports import MISSING_IN_A, REPORTS
from tests.e2e.reliability_support import (
    check_reports,
    clear_failure,
    file_keys,
    keysync,
    sandbox_rows,
    temporaries,
)

A = ["CUST-1", "CUST-2", "CUST-3"]


def reports(output: Path) -> dict[str, bytes]:
    return {name: (output / name).read_bytes() for name in REPORTS}


def doctor_problems(project) -> set[str]:
    """What keysync doctor finds wrong (in this process: it is the store that is examined, not the command)."""
    done = project.invoke("doctor", "--json", expect=None)
    return {check["name"] for check in json.loads(done.stdout)["checks"] if not check["ok"]}


def only_reports_behind(problems: set[str]) -> bool:
    """The log, the aggregates, the views and the read models are sound; only the report files lag behind."""
    return all(p == "projection reports" or p.startswith("report ") for p in problems)


@pytest.fixture
def seeded(project, write_systems):
    write_systems(A=A, B=["X-1", "cust 2"], C=A, D=["CUST-1", "Y-2"], E=A)
    project.invoke("run")
    project.write_system("B", ["X-1", "X-2", "cust 2"])  # the next run has something new to report
    return project


def test_a_run_whose_report_writing_fails_says_so_and_the_next_run_recovers(seeded):
    before = reports(seeded.output)
    failed = keysync(seeded.config, "run", env={"KEYSYNC_DISK_FULL_IN_REPORT": MISSING_IN_A})
    line = clear_failure(failed)
    assert f"cannot write report {seeded.output / MISSING_IN_A}: No space left on device" in line, line
    assert "`keysync reports`" in line
    # The report that failed is the one from before, whole; the ones written before it are new ones, whole too.
    assert (seeded.output / MISSING_IN_A).read_bytes() == before[MISSING_IN_A]
    assert check_reports(seeded.output) == len(REPORTS)
    assert not list(temporaries(seeded.output))
    # The run itself is stored and completed: only the report files are behind, and the doctor says so.
    [latest, _] = json.loads(seeded.invoke("history", "--json").stdout)
    assert latest["status"] == "completed"
    problems = doctor_problems(seeded)
    assert "projection reports" in problems and only_reports_behind(problems), problems

    seeded.invoke("reports")  # room again: the reports catch up
    assert not doctor_problems(seeded)
    assert {r["normalized_key"] for r in seeded.report(MISSING_IN_A)} == {"X-1", "X-2", "Y-2"}
    seeded.invoke("run")  # and the next run goes ahead as usual
    assert not doctor_problems(seeded)


def test_every_report_failing_leaves_every_previous_report_as_it_was(seeded):
    before = reports(seeded.output)
    clear_failure(keysync(seeded.config, "run", env={"KEYSYNC_DISK_FULL_IN_REPORT": "*"}))
    assert reports(seeded.output) == before
    assert not list(temporaries(seeded.output))
    seeded.invoke("run")
    assert not doctor_problems(seeded)


def test_a_sandbox_edit_is_saved_even_when_the_reports_cannot_be_written(project):
    project.invoke("sandbox", "init", "--keys", "5")
    edited = keysync(project.config, "sandbox", "add-key", "NEW-1", "--systems", "B",
                     env={"KEYSYNC_DISK_FULL_IN_REPORT": "*"})  # fmt: skip
    assert edited.returncode == 0, edited.stderr
    assert "Traceback" not in edited.stderr
    assert "Warning: the change is saved, but the reports could not be brought up to date" in edited.stderr
    assert "NEW-1" in file_keys(project.input)["B"] and sandbox_rows(project.config) == file_keys(project.input)
    assert only_reports_behind(doctor_problems(project))
    project.invoke("reports")
    assert not doctor_problems(project)


def test_a_read_only_output_folder_fails_clearly(seeded):
    seeded.output.chmod(0o555)
    try:
        if os.access(seeded.output, os.W_OK):
            pytest.skip("permissions do not stop this user (root): the tests with a full disk cover this")
        before = reports(seeded.output)
        line = clear_failure(keysync(seeded.config, "run"))
        assert "Permission denied" in line and "cannot write report" in line, line
        assert reports(seeded.output) == before
    finally:
        seeded.output.chmod(0o755)
    seeded.invoke("run")
    assert not doctor_problems(seeded)


# A real full disk -------------------------------------------------------------------------------------------------


@contextmanager
def small_disk(folder: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``folder`` (created), unmounted afterwards; skips the test where this process
    may not mount one."""
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill the disk up, leaving ``leave`` bytes; return the filler, whose removal gives the room back."""
    filler = disk / "filler"
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize
    with filler.open("wb") as handle:
        handle.truncate(0)
        chunk = b"\0" * 65536
        left = max(0, free - leave)
        try:
            while left > 0:
                left -= handle.write(chunk[: min(len(chunk), left)])
        except OSError:  # full before the count says so (metadata): good enough
            pass
    return filler


def test_reports_on_a_full_disk_fail_clearly_and_catch_up_when_there_is_room(project, write_systems):
    with small_disk(project.root / "disk"):
        config = project.config.read_text()
        project.config.write_text(config.replace("output_dir: ./output", "output_dir: ./disk/output"))
        project.output = project.root / "disk" / "output"
        write_systems(A=A, B=["X-1"], C=A, D=A, E=A)
        project.invoke("run")
        project.write_system("B", [f"X-{n}" for n in range(3000)])  # reports larger than the room left
        before = reports(project.output)
        filler = fill(project.root / "disk")
        line = clear_failure(keysync(project.config, "run"))
        assert "cannot write report" in line and "No space left on device" in line, line
        assert check_reports(project.output) == len(REPORTS)  # each one whole: the one from before, or a new one
        assert any(reports(project.output)[name] == before[name] for name in REPORTS)
        assert not list(temporaries(project.output))
        assert only_reports_behind(doctor_problems(project))
        filler.unlink()  # room again
        project.invoke("run")
        assert not doctor_problems(project)
        assert len(project.report(MISSING_IN_A)) == 3000


def test_a_store_on_a_full_disk_refuses_clearly_and_recovers(project, write_systems):
    with small_disk(project.root / "disk", "32m"):
        project.config.write_text(
            project.config.read_text().replace("path: ./data/keysync.sqlite", "path: ./disk/keysync.sqlite")
        )
        write_systems(A=A, B=["X-1"], C=A, D=A, E=A)
        project.invoke("run")
        project.write_system("B", [f"X-{n}" for n in range(20000)])  # observations larger than the room left
        filler = fill(project.root / "disk", leave=64 * 1024)
        line = clear_failure(keysync(project.config, "run"))
        assert "database or disk is full" in line or "disk I/O error" in line, line
        check_reports(project.output)
        filler.unlink()  # room again: the interrupted run resumes, and the log replays
        resumed = keysync(project.config, "run")
        assert resumed.returncode == 0, resumed.stderr
        assert not doctor_problems(project)
        assert len(project.report(MISSING_IN_A)) == 20000

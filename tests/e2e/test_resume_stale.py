"""A resumed run never reconciles stale data: each system it recorded before the interruption is checked against
its export, and one that changed (or went missing, or came back) is read and recorded again. Ctrl-C says where
the run stands and what the next `keysync run` does."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import Project
from tests.e2e.reliability_support import keysync, kind, logged_events, start
from tests.e2e.test_crash_resume import stable_reports

A = ["CUST-1", "CUST-2", "CUST-3", "PROD-1"]
# With one observation batch per system and no rejected rows, a run stores Started, then SourceRead and
# RowsObserved per system: after 5 events it has recorded A and B (each test checks so in the log).
AFTER_A_AND_B = "5"


@pytest.fixture
def seeded(project: Project, write_systems) -> Project:
    write_systems(A=A, B=["cust_1", "X-1"], C=A, D=A, E=A)
    return project


def run(project: Project, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return keysync(project.config, "run", *args, env=env)


def interrupted_after(project: Project, events: str, *args: str) -> None:
    crashed = run(project, *args, env={"KEYSYNC_CRASH_AFTER_EVENTS": events})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr


def recorded(project: Project) -> Counter[tuple[str, str]]:
    """How many times each (event, system) was stored, over the whole log."""
    return Counter((kind(e), e.system) for e in logged_events(project.config) if hasattr(e, "system"))


def missing_in_a(project: Project) -> set[tuple[str, str]]:
    return {(r["system"], r["normalized_key"]) for r in project.report("diff_missing_in_A.csv")}


def missing_from_system(project: Project) -> set[tuple[str, str]]:
    return {(r["system"], r["master_key"]) for r in project.report("diff_missing_from_system.csv")}


def reports(output: Path) -> dict:
    """The reports, less the audit log (a resumed run's log holds the interruption's events too), the mode (the
    fresh run is a full one) and a system's status_reason (it names the project's own file)."""
    found = stable_reports(output)
    del found["audit_log.csv"]
    unlike = {"mode", "status_reason"}
    return {name: [{k: v for k, v in row.items() if k not in unlike} for row in rows] for name, rows in found.items()}


def fresh_reports(project: Project, tmp_path: Path) -> dict:
    """The reports of an uninterrupted run, in a new store, on the project's exports as they are now."""
    (tmp_path / "fresh").mkdir()
    fresh = Project(tmp_path / "fresh")
    for system in "ABCDE":
        if (project.input / f"{system}.csv").exists():
            shutil.copy(project.input / f"{system}.csv", fresh.input)
    assert run(fresh).returncode == 0
    return reports(fresh.output)


def test_a_resumed_run_reads_again_an_export_that_changed_since_it_was_recorded(seeded, tmp_path):
    interrupted_after(seeded, AFTER_A_AND_B)
    assert {s for (name, s) in recorded(seeded) if name == "SourceRead"} == {"A", "B"}
    seeded.write_system("B", ["CUST-1", "Z-9", "Z-10"])

    resumed = run(seeded)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resumed run" in resumed.stderr
    assert "System B changed since it was recorded: read again" in resumed.stderr
    assert "System A" not in resumed.stderr  # A's export is the one recorded
    assert missing_in_a(seeded) == {("B", "Z-9"), ("B", "Z-10")}
    assert reports(seeded.output) == fresh_reports(seeded, tmp_path)
    # The log keeps both recordings of B, the older one set aside; A was read once.
    log = recorded(seeded)
    assert log["SourceRead", "B"] == 2 and log["SourceSuperseded", "B"] == 1
    assert log["SourceRead", "A"] == 1 and log["SourceSuperseded", "A"] == 0
    audit = [(r["event_type"], r["payload"]) for r in seeded.report("audit_log.csv")]
    assert [t for t, p in audit if '"system": "B"' in p and t in ("SourceRead", "SourceSuperseded")] == [
        "SourceRead",
        "SourceSuperseded",
        "SourceRead",
    ]


def test_a_resumed_run_whose_exports_did_not_change_reads_nothing_again(seeded, tmp_path):
    interrupted_after(seeded, AFTER_A_AND_B)
    # Written again with the same bytes: a newer modification time alone is no change (the content hash says).
    b = seeded.input / "B.csv"
    os.utime(b, ns=(b.stat().st_atime_ns, b.stat().st_mtime_ns + 10**9))

    resumed = run(seeded)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resumed run" in resumed.stderr and "read again" not in resumed.stderr
    log = recorded(seeded)
    assert all(log["SourceRead", s] == 1 for s in "ABCDE")
    assert not any(name == "SourceSuperseded" for name, _ in log)
    assert reports(seeded.output) == fresh_reports(seeded, tmp_path)


def test_a_recorded_export_missing_at_resume_is_unavailable_as_in_a_fresh_run(seeded, tmp_path):
    interrupted_after(seeded, AFTER_A_AND_B)
    (seeded.input / "B.csv").unlink()

    resumed = run(seeded, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["read_again"] == {"B": "cannot be read now"}
    assert "System B cannot be read now: read again" in resumed.stderr
    summary = {r["system"]: r["status"] for r in seeded.report("reconciliation_summary.csv")}
    assert summary == {"A": "ok", "B": "unavailable", "C": "ok", "D": "ok", "E": "ok"}
    reason = next(r["status_reason"] for r in seeded.report("reconciliation_summary.csv") if r["system"] == "B")
    assert str(seeded.input / "B.csv") in reason
    assert ("B", "X-1") not in missing_in_a(seeded)
    assert reports(seeded.output) == fresh_reports(seeded, tmp_path)


def test_a_system_unavailable_when_recorded_is_read_once_its_export_is_back(seeded, tmp_path):
    b = (seeded.input / "B.csv").read_bytes()
    (seeded.input / "B.csv").unlink()
    interrupted_after(seeded, "4")  # Started, A's two events, B's SourceUnavailable
    assert recorded(seeded)["SourceUnavailable", "B"] == 1
    (seeded.input / "B.csv").write_bytes(b)

    resumed = run(seeded)
    assert resumed.returncode == 0, resumed.stderr
    assert "System B was unavailable when recorded and can be opened now: read again" in resumed.stderr
    assert "System B was unavailable:" not in resumed.stderr
    assert ("B", "X-1") in missing_in_a(seeded)
    assert reports(seeded.output) == fresh_reports(seeded, tmp_path)
    history = seeded.invoke("history", "--json").stdout
    assert "B unavailable" not in history  # the run's errors: B's was set aside with its recording


def test_an_incremental_run_resumed_reads_a_changed_export_again_from_its_baseline(seeded, tmp_path):
    assert run(seeded, "-m", "incremental").returncode == 0  # the baseline, keeping its exports' lines
    seeded.write_system("B", ["cust_1", "X-1", "X-2"])
    # Started, SourceUnchanged for A, C, D, E (one save), then B's SourceChanged, RowsSpliced: B is recorded as
    # its changes.
    interrupted_after(seeded, "7", "-m", "incremental")
    assert (recorded(seeded)["SourceRead", "B"], recorded(seeded)["SourceChanged", "B"]) == (1, 1)
    seeded.write_system("B", ["cust_1", "X-1", "X-3", "X-4"])  # as many rows new as kept: recorded whole

    resumed = run(seeded, "-m", "incremental")
    assert resumed.returncode == 0, resumed.stderr
    assert "System B changed since it was recorded: read again" in resumed.stderr
    assert "Incremental: B read whole; A, C, D, E unchanged." in resumed.stderr
    assert recorded(seeded)["SourceRead", "B"] == 2
    assert {k for s, k in missing_in_a(seeded) if s == "B"} == {"X-1", "X-3", "X-4"}
    history = {"changes_since_last_run.csv", "trend_report.csv"}  # a fresh store has no earlier run
    expected = {name: rows for name, rows in fresh_reports(seeded, tmp_path).items() if name not in history}
    assert {name: rows for name, rows in reports(seeded.output).items() if name not in history} == expected
    changes = {(r["change"], r["key"]) for r in seeded.report("changes_since_last_run.csv")}
    assert ("key_added", "X-3") in changes and ("key_added", "X-2") not in changes


def test_an_incremental_run_resumed_after_its_export_went_back_carries_the_baseline_over(seeded, tmp_path):
    assert run(seeded).returncode == 0
    before = (seeded.input / "B.csv").read_bytes()
    seeded.write_system("B", ["cust_1", "X-1", "X-2"])
    interrupted_after(seeded, "7", "-m", "incremental")
    (seeded.input / "B.csv").write_bytes(before)  # the change undone, before the resume

    resumed = run(seeded, "-m", "incremental")
    assert resumed.returncode == 0, resumed.stderr
    assert "System B changed since it was recorded: read again" in resumed.stderr
    assert "No export changed since run" in resumed.stderr  # B, recorded again, is the baseline's export
    assert {k for s, k in missing_in_a(seeded) if s == "B"} == {"X-1"}


def test_ctrl_c_says_what_the_run_recorded_and_the_next_run_resumes_it(seeded):
    process = start(seeded.config, "run", env={"KEYSYNC_PAUSE_AFTER_EVENTS": AFTER_A_AND_B})
    assert process.stderr is not None
    said = []
    while not said or not said[-1].startswith("paused after"):  # the run waits there for the signal
        line = process.stderr.readline()
        assert line, f"the run ended before its pause: {said}"
        said.append(line)
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=120)

    assert process.returncode == 130, err
    assert "Traceback" not in err and "Aborted" not in err
    run_id = next(e.run_id for e in logged_events(seeded.config) if kind(e) == "Started")
    assert f"Interrupted: run {run_id} has recorded A, B; the next `keysync run` resumes it" in err
    resumed = run(seeded)
    assert resumed.returncode == 0, resumed.stderr
    assert f"Resumed run {run_id}" in resumed.stderr


def test_ctrl_c_after_the_run_is_stored_says_that_only_its_reports_lag(seeded):
    assert run(seeded).returncode == 0  # to count a whole run's events: the pause comes after its last save
    total = len(logged_events(seeded.config))
    shutil.rmtree(seeded.root / "data")
    process = start(seeded.config, "run", env={"KEYSYNC_PAUSE_AFTER_EVENTS": str(total)})
    assert process.stderr is not None
    while not (line := process.stderr.readline()).startswith("paused after"):
        assert line, "the run ended before its pause"
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "is complete and stored, its reports may lag behind: `keysync reports` writes them" in err


# A run interrupted just after it held a suspect export of D back: every system has K1..K20, then D is cut to three
# keys. The run stores Started, SourceRead and RowsObserved for A, B and C, then D's SourceHeldBack: 8 events.
KEYS = [f"K{i}" for i in range(1, 21)]
AFTER_D_HELD_BACK = "8"


@pytest.fixture
def held_back_d(project: Project, write_systems) -> Project:
    write_systems(A=KEYS, B=KEYS, C=KEYS, D=KEYS, E=KEYS)
    assert run(project).returncode == 0
    project.write_system("D", KEYS[:3])
    interrupted_after(project, AFTER_D_HELD_BACK)
    log = recorded(project)
    assert log["SourceHeldBack", "D"] == 1 and log["SourceRead", "E"] == 1  # E: the first run's recording only
    return project


def statuses(project: Project) -> dict[str, str]:
    return {r["system"]: r["status"] for r in project.report("reconciliation_summary.csv")}


def test_a_resumed_run_reads_again_a_held_back_export_that_was_restored(held_back_d):
    held_back_d.write_system("D", [*KEYS, "K21"])

    resumed = run(held_back_d, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert "System D changed since it was recorded: read again" in resumed.stderr
    assert "held back" not in resumed.stderr
    assert json.loads(resumed.stdout)["suspect"] == {}
    assert statuses(held_back_d) == dict.fromkeys("ABCDE", "ok")
    assert missing_in_a(held_back_d) == {("D", "K21")}  # the restored export's rows, not the last accepted ones
    log = recorded(held_back_d)
    assert log["SourceSuperseded", "D"] == 1 and log["SourceRead", "D"] == 2  # the first run's, and this one
    history = json.loads(held_back_d.invoke("history", "--json").stdout)
    assert "D suspect" not in history[0]["errors"]  # set aside with the held-back recording


def test_accept_shrink_given_to_the_resumed_run_takes_the_held_back_export(held_back_d):
    resumed = run(held_back_d, "--json", "--accept-shrink", "D")
    assert resumed.returncode == 0, resumed.stderr
    assert "System D was held back as suspect and is taken as it is now (--accept-shrink): read again" in (
        resumed.stderr
    )
    assert json.loads(resumed.stdout)["suspect"] == {}
    summary = {r["system"]: r for r in held_back_d.report("reconciliation_summary.csv")}
    assert summary["D"]["status"] == "ok" and summary["D"]["unique_keys"] == "3"
    assert {k for s, k in missing_from_system(held_back_d) if s == "D"} == set(KEYS[3:])
    assert recorded(held_back_d)["SourceSuperseded", "D"] == 1


def test_a_held_back_export_unchanged_at_resume_stays_held_back_without_a_second_read(held_back_d):
    resumed = run(held_back_d, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert "read again" not in resumed.stderr
    assert "System D's export was held back as suspect: its export has 3 valid rows" in resumed.stderr
    assert json.loads(resumed.stdout)["suspect"].keys() == {"D"}
    assert statuses(held_back_d)["D"] == "suspect"
    log = recorded(held_back_d)
    assert log["SourceHeldBack", "D"] == 1 and log["SourceRead", "D"] == 1 and log["SourceSuperseded", "D"] == 0


def test_a_held_back_export_configured_from_another_file_is_read_again_and_held_back_again(held_back_d):
    shutil.copy(held_back_d.input / "D.csv", held_back_d.input / "D-moved.csv")
    sources = "".join(f"  {s}: {{type: csv, path: ./input/{s}.csv}}\n" for s in "ABCE")
    held_back_d.write_config(f"sources:\n{sources}  D: {{type: csv, path: ./input/D-moved.csv}}\n")

    resumed = run(held_back_d, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert "System D is configured from another file now: read again" in resumed.stderr
    assert json.loads(resumed.stdout)["suspect"].keys() == {"D"}  # the new file is as small: held back again
    log = recorded(held_back_d)
    assert log["SourceSuperseded", "D"] == 1 and log["SourceHeldBack", "D"] == 2
    held = [e.file for e in logged_events(held_back_d.config) if kind(e) == "SourceHeldBack"]
    assert held[-1] == str(held_back_d.input / "D-moved.csv")


def test_a_held_back_export_within_the_resumed_runs_max_shrink_is_read_again_and_taken(held_back_d):
    held_back_d.write_config("processing: {max_shrink: 0.9}\n")  # D fell by 85%

    resumed = run(held_back_d, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert "System D was held back as suspect and is within processing.max_shrink now: read again" in resumed.stderr
    assert json.loads(resumed.stdout)["suspect"] == {}
    assert statuses(held_back_d)["D"] == "ok"

"""keysync doctor: a healthy store passes; a missing or edited report, a projection behind the log, a read model
that differs from the log, and a damaged log are each found, named, and make it exit 1."""

from __future__ import annotations

import json
import sqlite3

import pyarrow as pa
import pytest
from eventsourcing.domain import Snapshot

from keysync.application.bootstrap import build
from keysync.domain.registry import REGISTRY_ID
from keysync.infrastructure.config import load_config
from keysync.projections.reports import AUDIT, MISSING_IN_A, REGISTRY, REPORTS, SUMMARY
from tests.e2e.test_sandbox_support import sandbox

A = ["CUST-1", "CUST-2", "CUST-3"]


def diagnose(project, expect: int, *args: str) -> dict:
    result = project.invoke("doctor", "--json", *args, expect=expect)
    return json.loads(result.stdout)


def problems(diagnosis: dict) -> dict[str, str]:
    """Each failed check's detail by name (the event log's problems, one per aggregate, joined)."""
    found: dict[str, str] = {}
    for check in diagnosis["checks"]:
        if not check["ok"]:
            found[check["name"]] = "\n".join(filter(None, [found.get(check["name"]), check["detail"]]))
    return found


@pytest.fixture
def reconciled(any_project, write_systems):
    """Two runs, an approval and a deprecation: runs, registry and audit all have something in them."""
    write_systems(A=A, B=[*A, "X-1", "X-2"], C=A, D=["CUST-1", "=HYPERLINK(1)"], E=A)
    any_project.invoke("run")
    any_project.invoke("registry", "approve", "X-1")
    any_project.invoke("registry", "deprecate", "X-2", "--reason", "typo")
    any_project.write_system("E", [*A, "E-9"])
    any_project.invoke("run")
    return any_project


def test_a_healthy_store_passes(reconciled):
    diagnosis = diagnose(reconciled, 0)
    assert diagnosis["healthy"] and diagnosis["problems"] == 0
    names = [c["name"] for c in diagnosis["checks"]]
    assert names[:3] == ["event log", "projection views", "projection reports"]
    assert {f"report {name}" for name in REPORTS} <= set(names)
    assert {"read model registry", "read model run history", "read model audit trail"} <= set(names)
    [log] = [c for c in diagnosis["checks"] if c["name"] == "event log"]
    assert log["detail"].startswith(f"{diagnosis['events']} events, 3 aggregates (2 ReconciliationRun, 1 Registry)")


def test_the_table_and_the_exit_code(reconciled):
    result = reconciled.invoke("doctor")
    assert "event log" in result.stdout and "PROBLEM" not in result.stdout
    assert "No problem found." in result.stderr
    (reconciled.output / AUDIT).unlink()
    result = reconciled.invoke("doctor", expect=1)
    assert "PROBLEM" in result.stdout and "1 problem(s) found." in result.stderr


def test_an_empty_store_is_healthy(any_project):
    diagnosis = diagnose(any_project, 1)  # no report written yet: each is missing
    assert set(problems(diagnosis)) == {f"report {name}" for name in REPORTS}
    any_project.invoke("reports")
    assert diagnose(any_project, 0)["events"] == 0


def test_a_deleted_report_is_found(reconciled):
    (reconciled.output / MISSING_IN_A).unlink()
    found = problems(diagnose(reconciled, 1))
    assert list(found) == [f"report {MISSING_IN_A}"]
    assert found[f"report {MISSING_IN_A}"].endswith("is missing: `keysync reports` writes it again")
    reconciled.invoke("reports")
    diagnose(reconciled, 0)


def test_an_edited_report_is_found_row_by_row(reconciled):
    path = reconciled.output / REGISTRY
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[2] = lines[2].replace("Active", "Deprecated").replace("Proposed", "Active")
    path.write_text("".join(lines), encoding="utf-8")
    found = problems(diagnose(reconciled, 1))
    assert list(found) == [f"report {REGISTRY}"]
    assert "1 row(s) differ from a rebuild from the log; the first: line 3, status: " in found[f"report {REGISTRY}"]
    assert found[f"report {REGISTRY}"].endswith("`keysync rebuild` rewrites it from the log")
    reconciled.invoke("rebuild")
    diagnose(reconciled, 0)


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        (lambda text: text + "extra,row\n", "line {lines_plus_1} is not in the rebuild"),
        (lambda text: text.rsplit("\n", 2)[0] + "\n", "row {lines} of the rebuild is missing here"),
        (lambda text: text.replace("\n", "\r\n"), "the same rows as a rebuild from the log, but not the same bytes"),
        (lambda text: text.replace("run_id,", "run,", 1), "line 1, run_id: 'run' here, 'run_id' in the rebuild"),
    ],
)
def test_what_an_edit_did_is_said(reconciled, edit, said):
    path = reconciled.output / AUDIT
    text = path.read_text(encoding="utf-8")
    lines = text.count("\n")  # one a row: no payload holds a line break
    path.write_bytes(edit(text).encode("utf-8"))
    assert said.format(lines=lines, lines_plus_1=lines + 1) in problems(diagnose(reconciled, 1))[f"report {AUDIT}"]


def test_a_projection_behind_the_log_is_found(reconciled):
    """Events saved without the projections catching up (as a crash between the two would leave them)."""
    keysync = build(load_config(reconciled.config))
    registry = keysync.store.registry()
    registry.deprecate(["X-1"], "retired", "someone")
    keysync.store.save(registry)
    found = problems(diagnose(reconciled, 1))
    last = keysync.store.recorder.max_notification_id()
    assert found["projection views"].startswith(f"at event {last - 1}, 1 behind the log (last event {last})")
    assert found["projection reports"].startswith(f"at event {last - 1}, 1 behind the log")
    assert "`keysync reports` catches up" in found["projection views"]
    # What the lag leaves out shows too: the registry's row and the event, in the tables and in the reports.
    detail = found["read model registry"]
    assert "1 different (e.g. master_key 'X-1': status is 'Active' here, 'Deprecated' in the rebuild)" in detail
    assert "1 missing" in found["read model audit trail"]
    assert {f"report {REGISTRY}", f"report {AUDIT}"} <= set(found)
    reconciled.invoke("reports")
    diagnose(reconciled, 0)


def test_a_dry_run_preview_in_the_reports_folder_is_found(reconciled):
    previewed = json.loads(reconciled.invoke("run", "--dry-run", "--json").stdout)["run_id"]
    found = problems(diagnose(reconciled, 1))
    assert found == {"reports": f"the folder holds dry run {previewed}'s preview, not what the log holds: "
                                "`keysync reports` writes that"}  # fmt: skip
    reconciled.invoke("reports")
    diagnose(reconciled, 0)


def test_reports_elsewhere_are_checked_with_output_dir(reconciled, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    reconciled.invoke("rebuild")
    reconciled.invoke("run", "-o", str(elsewhere))  # a new run: the configured folder is now behind
    assert diagnose(reconciled, 0, "-o", str(elsewhere))["healthy"]
    assert f"report {SUMMARY}" in problems(diagnose(reconciled, 1))


def test_a_read_model_edited_behind_the_logs_back_is_found(reconciled):
    keysync = build(load_config(reconciled.config))
    recorder = keysync.projections.recorder
    with recorder.datastore.transaction(commit=True) as cursor:
        cursor.execute(f"UPDATE {recorder.qualified('run_history')} SET mode = 'tampered'")
    found = problems(diagnose(reconciled, 1))
    assert list(found) == ["read model run history"]
    runs = found["read model run history"]
    assert "2 different" in runs and "mode is 'tampered' here" in runs


def test_a_registry_snapshot_is_replayed_both_ways(reconciled):
    keysync = build(load_config(reconciled.config))
    keysync.store.take_snapshot(REGISTRY_ID)
    diagnose(reconciled, 0)


def test_a_snapshot_that_disagrees_with_the_events_is_found(reconciled):
    keysync = build(load_config(reconciled.config))
    registry = keysync.store.registry()
    keys = registry.keys  # every key Deprecated behind the events' back: only a snapshot can carry this
    registry.keys = keys.set_column(3, "status", pa.array(["Deprecated"] * keys.num_rows))
    keysync.store.snapshots.put([Snapshot.take(registry)])
    found = problems(diagnose(reconciled, 1))
    assert list(found) == ["event log"]
    assert found["event log"].endswith("Registry: its snapshot disagrees with its events (in keys)")


# The log itself damaged: SQLite only, where the test can reach into the file.


def test_an_event_missing_from_the_log_is_found(project, write_systems):
    write_systems(A=A, B=[*A, "X-1"], C=A, D=A, E=A)
    project.invoke("run")
    with sqlite3.connect(project.root / "data" / "keysync.sqlite") as db:
        [(run, held)] = db.execute(
            "SELECT originator_id, COUNT(*) FROM stored_events GROUP BY originator_id HAVING COUNT(*) > 5"
        ).fetchall()
        db.execute("DELETE FROM stored_events WHERE originator_id = ? AND originator_version = 3", (run,))
    found = problems(diagnose(project, 1))
    assert found["event log"].endswith(f"versions 3 are missing from the log (it holds {held - 1} events)")


def test_an_undecodable_event_is_found(project, write_systems):
    write_systems(A=A, B=[*A, "X-1"], C=A, D=A, E=A)
    project.invoke("run")
    with sqlite3.connect(project.root / "data" / "keysync.sqlite") as db:
        db.execute("UPDATE stored_events SET state = x'00ff00' WHERE originator_version = 2")
    found = problems(diagnose(project, 1))
    damaged = found["event log"].splitlines()
    assert len(damaged) == 2  # the run and the registry each have a version 2
    assert all("cannot be replayed (MapperDeserialisationError: " in line for line in damaged)
    assert all(line.endswith("Corrupt ZSTD compressed data.)") for line in damaged)
    assert found["rebuild"].startswith("the read models and reports cannot be rebuilt from the log (")


def test_doctor_and_sandbox_together(project):
    sandbox(project, "init", "--keys", "5")
    sandbox(project, "add-key", "NEW-1", "--systems", "B")
    project.invoke("run")
    diagnosis = diagnose(project, 0)
    [log] = [c for c in diagnosis["checks"] if c["name"] == "event log"]
    assert "1 Sandbox" in log["detail"]

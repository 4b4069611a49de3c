"""keysync run -m incremental: unchanged exports are skipped, changed ones are read and recorded whole, and the
reports always say what a full run on the same input would say."""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keysync.application.bootstrap import build, run_settings
from keysync.application.reconcile import RunFailed
from keysync.infrastructure.config import load_config
from tests.conftest import Project
from tests.e2e.test_crash_resume import keysync

SYSTEMS = "ABCDE"
# Columns that name a run or the moment of one: the only ones in which an incremental run's reports may differ
# from a full run's (and "file" and "status_reason", since the two stores compared read from two folders). The
# audit log is the event log itself, which differs by design.
RUN_COLUMNS = {
    "run_id", "generated_at", "first_detected_run_id", "first_detected_at", "finished_at", "mode", "created_run_id",
    "created_at", "updated_at", "file", "status_reason",
}  # fmt: skip
START = {
    "A": ["CUST-1", "CUST-2", "CUST-3", "CUST-4"],
    "B": ["cust-1", "CUST-2", "X-1", "X-1"],
    "C": ["CUST-1", "CUST-3", "Y-1"],
    "D": ["CUST-1", "CUST-2", "CUST-3", "CUST-4"],
    "E": ["CUST-4", " bad\tkey", ""],
}


def reports(project: Project, *, everything: bool = False) -> dict[str, list[dict[str, str]]]:
    found = {}
    for path in sorted(project.output.glob("*.csv")):
        if path.name == "audit_log.csv" and not everything:
            continue
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        found[path.name] = [{k: v for k, v in r.items() if everything or k not in RUN_COLUMNS} for r in rows]
    return found


def last_run(project: Project) -> dict:
    return json.loads(project.invoke("history", "--last", "1", "--json").stdout)[0]


def event_types(project: Project, run_id: str) -> list[str]:
    events = json.loads(project.invoke("audit", "--run", run_id, "--json").stdout)
    return [e["event_type"] for e in events]


def write_all(project: Project, systems: dict[str, list[str]]) -> None:
    for system, keys in systems.items():
        project.write_system(system, keys)


def test_a_run_on_unchanged_exports_reads_nothing_and_carries_the_last_reconciliation_over(any_project):
    project = any_project
    write_all(project, START)
    project.invoke("run")
    first = last_run(project)
    before = reports(project, everything=True)
    os.utime(project.input / "B.csv")  # touched, not changed: the content hash decides
    result = project.invoke("run", "-m", "incremental")
    second = last_run(project)
    assert "carries over" in result.stderr
    assert second["mode"] == "incremental" and second["status"] == "completed"
    types = event_types(project, second["run_id"])
    assert types.count("SourceUnchanged") == 5
    assert not {"SourceRead", "RowsObserved", "KeysObserved", "SourceChanged", "RowsAdded"} & set(types)
    after = reports(project, everything=True)
    # The discrepancies are those the first run found, and say so; the summary names the new run.
    assert after["diff_missing_in_A.csv"] == before["diff_missing_in_A.csv"]
    assert {r["first_detected_run_id"] for r in after["diff_missing_in_A.csv"]} == {first["run_id"]}
    assert {r["run_id"] for r in after["reconciliation_summary.csv"]} == {second["run_id"]}
    assert after["changes_since_last_run.csv"] == []
    assert len(after["trend_report.csv"]) == 2 * len(before["trend_report.csv"])
    assert reports(project) == {
        **reports(project),
        **_stripped(before, "trend_report.csv", "changes_since_last_run.csv"),
    }


def _stripped(found, *leave_out):
    return {
        name: [{k: v for k, v in r.items() if k not in RUN_COLUMNS} for r in rows]
        for name, rows in found.items()
        if name not in leave_out and name != "audit_log.csv"
    }


def payloads(project: Project, run_id: str) -> dict[str, list[dict]]:
    events = json.loads(project.invoke("audit", "--run", run_id, "--json").stdout)
    by_type: dict[str, list[dict]] = {}
    for e in events:
        by_type.setdefault(e["event_type"], []).append(json.loads(e["payload"]))
    return by_type


def test_a_changed_export_is_recorded_as_its_changes_and_the_others_as_unchanged(any_project):
    project = any_project
    many = [f"W-{i}" for i in range(20)]
    write_all(project, {**START, "B": [*START["B"], *many]})
    project.invoke("run", "-m", "incremental")  # the first: read whole, and the lines kept for the next
    project.write_system("B", ["cust-1", "CUST-2", "CUST-3", "X-1", *many, "Z-9"])  # X-1 once; CUST-3, Z-9 new
    project.invoke("run", "-m", "incremental")
    by_type = payloads(project, last_run(project)["run_id"])
    assert [p["system"] for p in by_type["SourceChanged"]] == ["B"]
    assert by_type["SourceChanged"][0]["rows"] == 25 and by_type["SourceChanged"][0]["depth"] == 1
    assert by_type["RowsSpliced"] == [{"system": "B", "removed": 1, "added": 2}]  # not the 25 rows
    assert sorted(p["system"] for p in by_type["SourceUnchanged"]) == ["A", "C", "D", "E"]
    assert not {"SourceRead", "RowsObserved"} & set(by_type)
    # A second change builds on the first (its lines were kept beside the store).
    project.write_system("B", ["cust-1", "CUST-3", "X-1", *many[:-1], "Z-9", "Z-10"])
    project.invoke("run", "-m", "incremental")
    second = payloads(project, last_run(project)["run_id"])
    assert second["SourceChanged"][0]["depth"] == 2
    assert second["RowsSpliced"] == [{"system": "B", "removed": 2, "added": 1}]
    live = reports(project, everything=True)
    incremental = _stripped(reports(project), "changes_since_last_run.csv", "trend_report.csv")
    project.invoke("rebuild")  # B's rows, read back from the log, are the base's with both deltas applied
    assert reports(project, everything=True) == live
    project.invoke("run")  # a full run on the same input
    assert _stripped(reports(project), "changes_since_last_run.csv", "trend_report.csv") == incremental
    assert "Z-10" in {r["normalized_key"] for r in project.report("diff_missing_in_A.csv")}
    said = project.invoke("key", "CUST-3").stdout  # a row of the delta: not said to be new to B
    assert "in the rows of B recorded as changed" in said and "added to" not in said


def test_an_export_reordered_or_mostly_new_is_recorded_whole(project):
    many = [f"W-{i}" for i in range(20)]
    write_all(project, {**START, "B": many, "C": many})
    project.invoke("run", "-m", "incremental")
    project.write_system("B", many[::-1])  # the same rows, in another order: a delta cannot say it
    project.write_system("C", [f"V-{i}" for i in range(20)])  # every row new: a delta would not be smaller
    result = project.invoke("run", "-m", "incremental")
    assert "Incremental: B, C read whole; A, D, E unchanged." in result.stderr
    by_type = payloads(project, last_run(project)["run_id"])
    assert sorted(p["system"] for p in by_type["SourceRead"]) == ["B", "C"]
    assert "SourceChanged" not in by_type
    incremental = _stripped(reports(project), "changes_since_last_run.csv", "trend_report.csv")
    project.invoke("run")
    assert _stripped(reports(project), "changes_since_last_run.csv", "trend_report.csv") == incremental


def test_kept_exports_that_are_gone_or_damaged_are_not_used(project):
    """What is kept beside the store of each system's export is a cache: damaged, a changed export is read and
    recorded whole; gone, the unchanged exports' rows come from the log. The reports stay those of the log."""
    many = [f"W-{i}" for i in range(20)]
    write_all(project, {**START, "B": many})
    project.invoke("run")  # a full run keeps its exports' rows, not their lines
    exports = project.root / "data" / "exports"
    assert sorted(p.name.split("-")[0] for p in exports.iterdir()) == ["A", "B", "C", "D", "E"]
    assert not list(exports.glob("*/lines.npy"))
    project.write_system("B", [*many, "Z-1"])
    project.invoke("run", "-m", "incremental")
    assert [p["system"] for p in payloads(project, last_run(project)["run_id"])["SourceRead"]] == ["B"]
    project.write_system("B", [*many, "Z-1", "Z-2"])
    project.invoke("run", "-m", "incremental")
    assert payloads(project, last_run(project)["run_id"])["RowsSpliced"] == [{"system": "B", "removed": 0, "added": 1}]
    (kept,) = exports.glob("B-*")
    (kept / "rows.arrow").write_bytes(b"not rows")
    project.write_system("B", ["Z-0", *many, "Z-1"])
    project.invoke("run", "-m", "incremental")
    recorded = payloads(project, last_run(project)["run_id"])
    assert "RowsSpliced" not in recorded and [p["system"] for p in recorded["SourceRead"]] == ["B"]
    project.write_system("B", ["Z-0", *many])  # kept again by the run before
    project.invoke("run", "-m", "incremental")
    assert payloads(project, last_run(project)["run_id"])["RowsSpliced"] == [{"system": "B", "removed": 1, "added": 0}]
    project.write_system("B", ["Z-0", *many, "Z-3"])
    project.invoke("run")  # a full run on a store run incrementally keeps its exports' lines too
    assert len(list(exports.glob("*/lines.npy"))) == 5
    project.write_system("B", ["Z-0", *many])
    project.invoke("run", "-m", "incremental")
    assert payloads(project, last_run(project)["run_id"])["RowsSpliced"] == [{"system": "B", "removed": 1, "added": 0}]
    shutil.rmtree(exports)
    project.write_system("C", ["CUST-1", "Z-0"])
    project.invoke("run", "-m", "incremental")
    live = reports(project, everything=True)
    project.invoke("rebuild")
    assert reports(project, everything=True) == live
    assert "Z-0" in (project.root / "output" / "diff_missing_in_A.csv").read_text()


def test_an_incremental_run_killed_after_any_event_resumes_to_a_full_runs_reports(tmp_path):
    """A real process stops hard after its Nth stored event, N = 1, 2, ...; the next run resumes it."""
    (tmp_path / "inc").mkdir()
    (tmp_path / "full").mkdir()
    incremental, full = Project(tmp_path / "inc"), Project(tmp_path / "full")
    many = [f"W-{i}" for i in range(20)]
    for project in (incremental, full):
        write_all(project, {**START, "C": [*START["C"], *many]})
    incremental.invoke("run")
    full.invoke("run")
    for crash_after in range(1, 8):
        for project in (incremental, full):
            project.write_system("C", [*START["C"], *many[crash_after:], f"Y-{crash_after}"])
            project.write_system("E", [*START["E"], f"Z-{crash_after}"] * 20)
        crashed = keysync(incremental, "run", "-m", "incremental", env={"KEYSYNC_CRASH_AFTER_EVENTS": str(crash_after)})
        assert crashed.returncode == -9, crashed.stderr
        incremental.invoke("run", "-m", "incremental")
        full.invoke("run")
        assert reports(incremental) == reports(full), crash_after


OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["add", "remove", "modify", "delete", "restore", "touch"]),
        st.sampled_from(SYSTEMS),
        st.sampled_from(["CUST-1", "cust-2", "CUST-5", "X-1", "x-2", "Y-3", "bad\tkey"]),
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPERATIONS)
def test_incremental_runs_report_what_full_runs_report_after_any_edits(operations):
    """Two stores see the same exports change step by step: one runs incrementally, the other in full. Each
    incremental run is a new keysync command (rows come back from the log)."""
    with tempfile.TemporaryDirectory() as folder:
        incremental, full = _pair(Path(folder))

        def run_incremental() -> int:
            return incremental.invoke("run", "-m", "incremental", expect=None).exit_code

        _check_after_each_edit(incremental, full, run_incremental, operations)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPERATIONS)
def test_a_long_lived_process_reports_what_full_runs_report_after_any_edits(operations):
    """As above, with every incremental run in one application, as keysync schedule runs them."""
    with tempfile.TemporaryDirectory() as folder:
        incremental, full = _pair(Path(folder))
        config = load_config(incremental.config)
        application = build(config, create_tables=True)
        settings_ = attrs.evolve(run_settings(config), mode="incremental")

        def run_incremental() -> int:
            try:
                application.run(settings_)
            except RunFailed:
                return 1
            return 0

        _check_after_each_edit(incremental, full, run_incremental, operations)


def _pair(root: Path) -> tuple[Project, Project]:
    (root / "inc").mkdir()
    (root / "full").mkdir()
    return Project(root / "inc"), Project(root / "full")


def _check_after_each_edit(
    incremental: Project, full: Project, run_incremental: Callable[[], int], operations: list[tuple[str, str, str]]
) -> None:
    """Apply the edits to both projects one by one, running both after each; their reports must agree."""
    systems = {s: list(keys) for s, keys in START.items()}
    deleted: set[str] = set()

    def write(system: str) -> None:
        for project in (incremental, full):
            if system in deleted:
                (project.input / f"{system}.csv").unlink(missing_ok=True)
            else:
                project.write_system(system, systems[system])

    for system in SYSTEMS:
        write(system)
    assert run_incremental() == 0
    full.invoke("run")
    for operation, system, key in operations:
        keys = systems[system]
        if operation == "add":
            keys.insert(len(keys) // 2, key)
        elif operation == "remove" and keys:
            keys.pop(0)
        elif operation == "modify" and keys:
            keys[-1] = key
        elif operation == "delete":
            deleted.add(system)
        elif operation == "restore":
            deleted.discard(system)
        write(system)
        b = full.invoke("run", expect=None)
        assert run_incremental() == b.exit_code, b.stderr
        assert reports(incremental) == reports(full), (operation, system, key)
    # And the live reports are the log's: a rebuild from the events alone writes the same files.
    live = reports(incremental, everything=True)
    incremental.invoke("rebuild")
    assert reports(incremental, everything=True) == live


def twins(tmp_path):
    (tmp_path / "inc").mkdir()
    (tmp_path / "full").mkdir()
    incremental, full = Project(tmp_path / "inc"), Project(tmp_path / "full")
    for project in (incremental, full):
        write_all(project, START)
        project.invoke("run")
    return incremental, full


def test_a_dry_run_in_between_leaves_nothing_behind_in_the_reports(tmp_path):
    incremental, full = twins(tmp_path)
    incremental.write_system("B", [*START["B"], "NEW-1"])
    incremental.invoke("run", "--dry-run", "-m", "incremental")
    assert "NEW-1" in {r["normalized_key"] for r in incremental.report("diff_missing_in_A.csv")}
    incremental.write_system("B", START["B"])  # back as it was: the next run finds nothing changed
    assert "carries over" in incremental.invoke("run", "-m", "incremental").stderr
    full.invoke("run")
    assert reports(incremental) == reports(full)


def test_each_report_folder_shows_its_own_latest_run(tmp_path):
    incremental, full = twins(tmp_path)
    incremental.invoke("run", "-o", str(incremental.root / "other"))
    for project in (incremental, full):
        project.write_system("B", [*START["B"], "NEW-1"])
    incremental.invoke("run", "-o", str(incremental.root / "other"))
    incremental.write_system("B", [*START["B"], "NEW-1"])  # rewritten, the same bytes
    incremental.invoke("run", "-m", "incremental")  # into ./output, which showed the first run
    full.invoke("run")
    history = ("trend_report.csv", "changes_since_last_run.csv")  # the stores ran different numbers of runs
    assert _stripped(reports(incremental), *history) == _stripped(reports(full), *history)
    assert "NEW-1" in {r["normalized_key"] for r in incremental.report("diff_missing_in_A.csv")}


def test_rows_read_under_other_limits_are_read_again(tmp_path):
    incremental, full = twins(tmp_path)
    for project in (incremental, full):
        project.write_system("B", [*START["B"], "LONGKEY-123456789"])
        project.invoke("run")
        project.write_config("processing: {max_key_length: 10}\n")
    result = incremental.invoke("run", "-m", "incremental")
    assert "carries over" not in result.stderr
    full.invoke("run")
    assert reports(incremental) == reports(full)
    assert any("LONGKEY" in r["raw"] for r in incremental.report("rejected_rows.csv"))


def test_an_export_held_back_then_restored_is_read_again_under_new_limits(tmp_path):
    """The rows that stood in for a suspect export were read under the old limits: when the export comes back as it
    was, it is read again, not taken as unchanged."""
    incremental, full = twins(tmp_path)
    many = [f"W-{i}" for i in range(20)]
    before = [*many, "LONGKEY-12345"]
    for project in (incremental, full):
        project.write_system("B", before)
        project.invoke("run")
        project.write_config("processing: {max_key_length: 10}\n")
        project.write_system("B", many[:5])  # lost most of its rows: held back, the first run's rows stand in
    incremental.invoke("run", "-m", "incremental")
    full.invoke("run")
    for project in (incremental, full):
        project.write_system("B", before)  # byte for byte the first run's export
    incremental.invoke("run", "-m", "incremental")
    full.invoke("run")
    assert reports(incremental) == reports(full)
    assert any("LONGKEY" in r["raw"] for r in incremental.report("rejected_rows.csv"))


def test_an_incremental_run_says_how_it_recorded_each_export(project):
    write_all(project, START)
    project.invoke("run", "-m", "incremental")
    project.write_system("B", [*START["B"], "NEW-1"])
    project.write_system("C", [*START["C"], "Y-2"])
    preview = project.invoke("run", "-m", "incremental", "--dry-run")
    expected = "Incremental: B, C recorded as changes; A, D, E unchanged"
    assert f"{expected} (dry run: nothing stored)." in preview.stderr
    result = project.invoke("run", "-m", "incremental")
    assert f"{expected}." in result.stderr
    completed = project.invoke("audit", "--run", last_run(project)["run_id"], "--type", "Completed", "--json")
    kpis = json.loads(json.loads(completed.stdout)[0]["payload"])["kpis"]
    assert kpis["recorded"] == {"A": "unchanged", "B": "changes", "C": "changes", "D": "unchanged", "E": "unchanged"}
    project.write_system("D", ["D-1", "D-2", "D-3", "D-4", "D-5"])
    result = project.invoke("run", "-m", "incremental")
    assert "Incremental: D read whole; A, B, C, E unchanged." in result.stderr
    assert "Incremental:" not in project.invoke("run").stderr

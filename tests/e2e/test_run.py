"""keysync run through the real CLI, the real SQLite store and real CSV files."""

from __future__ import annotations

import json
import os
import stat

from keysync.projections.reports import (
    AUDIT,
    DUPLICATES,
    MISSING_FROM_SYSTEM,
    MISSING_IN_A,
    REGISTRY,
    REJECTED,
    REPORTS,
    SUMMARY,
)

A = ["CUST-00001", "CUST-00002", "CUST-00003", "PROD-ABC-789"]


def stored_events(any_project) -> int:
    return json.loads(any_project.invoke("store", "status", "--json").stdout)["events"]


def test_a_run_writes_seven_reports_that_match_the_input(any_project, write_systems):
    write_systems(
        A=A,
        B=["cust_00001", " cust-00002 ", "CUST-00003", "prod.abc.789", "CUST-77777"],
        C=["CUST-00001", "CUST-00001", "CUST-00002", "CUST-00003", "PROD-ABC-789"],
        D=["CUST-00001", "cust 77777", "ZZZ-1"],
        E=list(A),
    )
    any_project.invoke("run")
    assert sorted(p.name for p in any_project.output.iterdir() if not p.name.startswith(".")) == sorted(REPORTS)

    summary = {row["system"]: row for row in any_project.report(SUMMARY)}
    assert summary["A"]["matched_in_A"] == "4" and summary["A"]["missing_in_A"] == "0"
    assert (summary["B"]["matched_in_A"], summary["B"]["missing_in_A"], summary["B"]["missing_from_system"]) == (
        "4", "1", "0",
    )  # fmt: skip
    assert summary["B"]["match_rate"] == "0.8000"
    assert (summary["D"]["missing_in_A"], summary["D"]["missing_from_system"]) == ("2", "3")
    assert summary["C"]["duplicate_keys"] == "1"

    missing = {(r["system"], r["normalized_key"]): r for r in any_project.report(MISSING_IN_A)}
    assert set(missing) == {("B", "CUST-77777"), ("D", "CUST-77777"), ("D", "ZZZ-1")}
    assert missing[("D", "CUST-77777")]["source_key"] == "cust 77777"
    assert missing[("D", "CUST-77777")]["registry_status"] == "Proposed"
    assert {r["strategy"] for r in missing.values()} == {"mirror"}

    gaps = {(r["system"], r["master_key"]) for r in any_project.report(MISSING_FROM_SYSTEM)}
    assert gaps == {("D", "CUST-00002"), ("D", "CUST-00003"), ("D", "PROD-ABC-789")}

    registry = {r["master_key"]: r for r in any_project.report(REGISTRY)}
    assert set(registry) == {"CUST-77777", "ZZZ-1"}
    assert registry["CUST-77777"]["source_systems"] == "B|D"
    assert registry["CUST-77777"]["status"] == "Proposed"
    assert registry["CUST-77777"]["created_at"].endswith("+00:00")

    [dup] = any_project.report(DUPLICATES)
    assert (dup["system"], dup["normalized_key"], dup["occurrences"]) == ("C", "CUST-00001", "2")
    assert len(any_project.report(AUDIT)) == stored_events(any_project)
    assert any_project.report(REJECTED) == []


def test_rerunning_never_duplicates_registry_entries_and_tracks_last_seen(any_project, write_systems):
    write_systems(A=A, B=["X-1"], C=A, D=A, E=A)
    first = json.loads(any_project.invoke("run", "--json").stdout)
    second = json.loads(any_project.invoke("run", "--json").stdout)
    assert (first["proposed"], second["proposed"]) == (1, 0)
    [entry] = any_project.report(REGISTRY)
    assert entry["created_run_id"] == first["run_id"]
    assert "last_seen_run_id" not in entry  # every run would rewrite it: the registry view keeps it
    [listed] = json.loads(any_project.invoke("registry", "list", "--json").stdout)
    assert (listed["created_run_id"], listed["last_seen_run_id"]) == (first["run_id"], second["run_id"])


def test_an_unavailable_system_is_reported_and_the_run_goes_on(any_project, write_systems):
    write_systems(A=A, B=A, C=A, E=["NEW-1"])
    result = any_project.invoke("run")
    assert "System D was unavailable" in result.stderr
    summary = {row["system"]: row for row in any_project.report(SUMMARY)}
    assert summary["D"]["status"] == "unavailable" and summary["D"]["missing_from_system"] == ""
    assert not [r for r in any_project.report(MISSING_FROM_SYSTEM) if r["system"] == "D"]
    assert [r["system"] for r in any_project.report(MISSING_IN_A)] == ["E"]


def test_a_missing_system_a_fails_the_run_clearly_and_records_it(any_project, write_systems):
    write_systems(B=A, C=A, D=A, E=A)
    result = any_project.invoke("run", expect=1)
    assert "System A is the authority and could not be read" in result.stderr
    assert "Traceback" not in result.output
    assert [r["event_type"] for r in any_project.report(AUDIT)][-1] == "Failed"


def test_a_dry_run_stores_nothing_and_proposes_what_a_real_run_then_does(any_project, write_systems):
    write_systems(A=A, B=["X-1", "X-2"], C=A, D=A, E=A)
    dry = json.loads(any_project.invoke("run", "--dry-run", "--json").stdout)
    assert dry["dry_run"] and dry["proposed"] == 2
    assert stored_events(any_project) == 0
    assert any_project.report(SUMMARY)[0]["mode"] == "full (dry-run)"
    assert {r["master_key"] for r in any_project.report(REGISTRY)} == {"X-1", "X-2"}
    real = json.loads(any_project.invoke("run", "--json").stdout)
    assert real["proposed"] == 2 and not real["dry_run"]
    assert any_project.report(SUMMARY)[0]["mode"] == "full"


def test_fail_on_discrepancy_exits_3_only_when_something_differs(any_project, write_systems):
    write_systems(A=A, B=A, C=A, D=A, E=A)
    any_project.invoke("run", "--fail-on-discrepancy")
    any_project.write_system("B", [*A, "X-1"])
    any_project.invoke("run", "--fail-on-discrepancy", expect=3)


def test_auto_approve_and_namespaced_strategy(any_project, write_systems):
    any_project.write_config("provisioning: {strategy: namespaced}\n")
    write_systems(A=A, B=["x-1"], C=A, D=["X_1"], E=A)
    any_project.invoke("run", "--auto-approve")
    registry = {r["master_key"]: r for r in any_project.report(REGISTRY)}
    assert set(registry) == {"A-B-X-1", "A-D-X-1"}
    assert {r["status"] for r in registry.values()} == {"Active"}
    assert registry["A-B-X-1"]["status_reason"] == "auto-approved"


def test_rejected_rows_are_reported_with_file_and_line_and_the_rest_is_used(any_project, write_systems):
    write_systems(A=A, C=A, D=A, E=A)
    (any_project.input / "B.csv").write_bytes(
        b"source_system,source_key,entity_type,location_ref,last_seen_at\n"
        b"B,CUST-00001,customer,,2026-01-01T00:00:00+00:00\n"
        b"B,CUST\x1b[31m-2,customer,,\n"
        b"B,,customer,,\n"
        b"B,CUST-00003,customer,,not-a-date\n"
        b"B,***,customer,,\n"
    )
    any_project.invoke("run")
    rejected = {(r["system"], r["line"]): r for r in any_project.report(REJECTED)}
    assert rejected[("B", "3")]["severity"] == "error" and "\\x1b" in rejected[("B", "3")]["raw"]
    assert "\x1b" not in (any_project.output / REJECTED).read_text(encoding="utf-8")
    assert rejected[("B", "4")]["severity"] == "error"
    assert rejected[("B", "5")]["severity"] == "warning"
    assert rejected[("B", "6")]["reason"] == "key is empty after normalization"
    summary = {row["system"]: row for row in any_project.report(SUMMARY)}
    assert (summary["B"]["rows_read"], summary["B"]["rows_rejected"], summary["B"]["unique_keys"]) == (
        "5",
        "3",
        "2",
    )


def test_data_in_error_messages_cannot_drive_the_terminal(any_project, write_systems):
    write_systems(A=A, B=A, C=A, D=A, E=A)
    any_project.invoke("run")
    result = any_project.invoke("registry", "approve", "\x1b[31mX", expect=1)
    assert "\x1b" not in result.stderr and "\\x1b[31mX" in result.stderr


def test_a_system_whose_every_row_is_rejected_still_counts_its_rows_read(project):
    """The summary's rows_read counts records read, accepted or not, also when carried over from the KPIs."""
    for system in "ABCD":
        project.write_system(system, ["K-1", "K-2"])
    project.write_system("E", ["", " "])  # every row rejected: no key
    project.invoke("run")
    assert {r["system"]: r["rows_read"] for r in project.report("reconciliation_summary.csv")}["E"] == "2"
    project.invoke("run", "-m", "incremental")  # nothing changed: the summary comes from the run's KPIs
    assert {r["system"]: r["rows_read"] for r in project.report("reconciliation_summary.csv")}["E"] == "2"


def test_reports_and_exports_are_readable_as_any_new_file_is(project) -> None:
    """Written through a private temporary file, they still get the mode the user's umask gives new files."""
    project.write_system("A", ["K-1", "K-2"])
    project.write_system("B", ["K-1", "K-3"])
    mask = os.umask(0o022)
    os.umask(mask)
    expected = 0o666 & ~mask

    project.invoke("run")
    project.invoke("sandbox", "save-state", "s1")
    project.invoke("sandbox", "export-state", "s1", str(project.root / "s1-copy.json"))

    written = [*(project.output / name for name in REPORTS), project.root / "s1-copy.json"]
    assert {path.name: stat.S_IMODE(path.stat().st_mode) for path in written} == {p.name: expected for p in written}


def test_a_failed_run_with_json_still_prints_json(project):
    project.write_config("processing: {retries: 0}\n")
    project.write_system("B", ["K-1"])  # no System A

    result = project.invoke("run", "--json", expect=1)

    failed = json.loads(result.stdout)
    assert failed["status"] == "failed" and "System A" in failed["error"] and len(failed["run_id"]) == 12

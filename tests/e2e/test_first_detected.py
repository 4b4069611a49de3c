"""The discrepancy, duplicate and rejected-row reports say since when each row is open (first_detected_run_id,
first_detected_at), so that a row stays the same, byte for byte, as long as what it says stays true."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from keysync.projections.reports import (
    CHANGES,
    DUPLICATES,
    MISSING_FROM_SYSTEM,
    MISSING_IN_A,
    REGISTRY,
    REJECTED,
    REPORTS,
    SUMMARY,
    TREND,
)

A = [f"CUST-{i:03}" for i in range(1, 11)]
# B: one key out of authority, one of A's missing, one key twice (a duplicate).
B = [*A[1:], "OUT-1", "CUST-002"]
RUN_LEVEL = {SUMMARY, TREND, CHANGES, "audit_log.csv"}  # name the latest run, or list every event
STABLE = (MISSING_IN_A, MISSING_FROM_SYSTEM, DUPLICATES, REJECTED, REGISTRY)


def run(project, *args: str) -> dict:
    return json.loads(project.invoke("run", "--json", *args).stdout)


def first_detected(project, report: str, system: str = "B", column: str = "normalized_key") -> dict[str, tuple]:
    return {
        r[column]: (r["first_detected_run_id"], r["first_detected_at"])
        for r in project.report(report)
        if r["system"] == system
    }


def files(project) -> dict[str, bytes]:
    return {name: (project.output / name).read_bytes() for name in STABLE}


def finished_at(project, run_id: str) -> str:
    [row] = [r for r in json.loads(project.invoke("history", "--json").stdout) if r["run_id"] == run_id]
    return row["finished_at"]


def test_a_discrepancy_that_stays_open_keeps_the_run_that_found_it_and_its_row_its_bytes(any_project, write_systems):
    write_systems(A=A, B=B, C=A, D=A, E=A)
    (any_project.input / "C.csv").write_text(
        (any_project.input / "C.csv").read_text(encoding="utf-8") + "C,,customer,,2026-01-02T03:04:05+00:00\n",
        encoding="utf-8",
    )
    first = run(any_project)["run_id"]
    since = (first, finished_at(any_project, first))
    assert first_detected(any_project, MISSING_IN_A) == {"OUT-1": since}
    assert first_detected(any_project, MISSING_FROM_SYSTEM, column="master_key") == {"CUST-001": since}
    assert first_detected(any_project, DUPLICATES) == {"CUST-002": since}
    assert first_detected(any_project, REJECTED, "C", "raw") == {"C,,customer,,2026-01-02T03:04:05+00:00": since}

    second = run(any_project, "--mode", "full")["run_id"]
    before = files(any_project)
    third = run(any_project, "--mode", "full")["run_id"]
    assert len({first, second, third}) == 3
    assert files(any_project) == before  # nothing changed in the data: not one byte of these files either
    assert first_detected(any_project, MISSING_IN_A) == {"OUT-1": since}
    assert {r["run_id"] for r in any_project.report(SUMMARY)} == {third}  # the summary names the latest run
    header = (any_project.output / REGISTRY).read_text(encoding="utf-8").splitlines()[0]
    assert "last_seen_run_id" not in header.split(",")


def test_a_discrepancy_resolved_and_found_again_is_opened_anew(any_project, write_systems):
    write_systems(A=A, B=B, C=A, D=A, E=A)
    first = run(any_project)["run_id"]
    write_systems(B=A)
    run(any_project)
    assert first_detected(any_project, MISSING_IN_A) == {}
    write_systems(B=B)
    third = run(any_project)["run_id"]
    assert first_detected(any_project, MISSING_IN_A)["OUT-1"][0] == third != first
    assert first_detected(any_project, DUPLICATES)["CUST-002"][0] == third


def test_a_new_discrepancy_beside_an_old_one_leaves_the_old_rows_as_they_were(any_project, write_systems):
    write_systems(A=A, B=B, C=A, D=A, E=A)
    first = run(any_project)["run_id"]
    old_row = (any_project.output / MISSING_IN_A).read_text(encoding="utf-8").splitlines()[1]
    write_systems(B=[*B, "OUT-2"])
    second = run(any_project)["run_id"]
    found = first_detected(any_project, MISSING_IN_A)
    assert (found["OUT-1"][0], found["OUT-2"][0]) == (first, second)
    assert old_row in (any_project.output / MISSING_IN_A).read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("doubt", ["suspect", "unavailable"])
def test_a_system_in_doubt_neither_opens_nor_resolves(any_project, write_systems, doubt):
    write_systems(A=A, B=B, C=A, D=A, E=A)
    first = run(any_project)["run_id"]
    opened = first_detected(any_project, MISSING_IN_A)
    if doubt == "suspect":
        write_systems(B=[])  # an empty export after an accepted one: held back, its last rows stand in
    else:
        (any_project.input / "B.csv").unlink()
    second = run(any_project)
    assert second["kpis"]["systems"]["B"]["status"] == doubt
    if doubt == "suspect":
        assert first_detected(any_project, MISSING_IN_A) == opened
    else:
        assert first_detected(any_project, MISSING_IN_A) == {}
    write_systems(B=B)  # back, as it was: still open since the first run
    run(any_project)
    assert first_detected(any_project, MISSING_IN_A) == opened == {"OUT-1": (first, finished_at(any_project, first))}
    assert first_detected(any_project, DUPLICATES)["CUST-002"][0] == first


def test_a_rejected_line_keeps_its_first_run_while_it_stays_though_its_line_number_moves(any_project, write_systems):
    bad = "C,,customer,,2026-01-02T03:04:05+00:00"
    write_systems(A=A, B=A, C=A, D=A, E=A)
    with (any_project.input / "C.csv").open("a", encoding="utf-8") as handle:
        handle.write(bad + "\n")
    first = run(any_project)["run_id"]
    [row] = any_project.report(REJECTED)
    write_systems(C=["CUST-000", *A])  # a line inserted above: the rejected line moves down
    with (any_project.input / "C.csv").open("a", encoding="utf-8") as handle:
        handle.write(bad + "\n")
    run(any_project)
    [moved] = any_project.report(REJECTED)
    assert int(moved["line"]) == int(row["line"]) + 1
    assert (moved["raw"], moved["first_detected_run_id"]) == (bad, first)


def test_the_registry_report_drops_last_seen_but_the_commands_still_answer_it(any_project, write_systems):
    write_systems(A=A, B=["X-1"], C=A, D=A, E=A)
    run(any_project)
    second = run(any_project, "--mode", "full")["run_id"]
    assert "last_seen_run_id" not in any_project.report(REGISTRY)[0]
    [listed] = json.loads(any_project.invoke("registry", "list", "--json").stdout)
    assert listed["last_seen_run_id"] == second
    timeline = json.loads(any_project.invoke("key", "X-1", "--json").stdout)
    assert timeline["last_seen_run_id"] == second


def test_a_rebuild_gives_the_same_first_detected_values_and_the_doctor_agrees(any_project, write_systems):
    write_systems(A=A, B=B, C=A, D=A, E=A)
    run(any_project)
    write_systems(B=[*B, "OUT-2"])
    run(any_project)
    write_systems(B=[])
    run(any_project)
    live = {name: (any_project.output / name).read_bytes() for name in REPORTS}
    doctor = json.loads(any_project.invoke("doctor", "--json").stdout)
    assert doctor["healthy"], [c for c in doctor["checks"] if not c["ok"]]
    shutil.rmtree(any_project.output)
    any_project.invoke("rebuild")
    assert {name: (any_project.output / name).read_bytes() for name in REPORTS} == live


def test_show_as_of_gives_the_first_detected_values_as_they_stood_then(any_project, write_systems):
    write_systems(A=A, B=B, C=A, D=A, E=A)
    first = run(any_project)["run_id"]
    second = run(any_project, "--mode", "full")["run_id"]
    write_systems(B=A)
    third = run(any_project)["run_id"]
    write_systems(B=B)
    fourth = run(any_project)["run_id"]
    assert first_detected(any_project, MISSING_IN_A)["OUT-1"][0] == fourth
    found = {}
    for run_id in (second, third):
        folder = any_project.root / f"as-of-{run_id}"
        any_project.invoke("show-as-of", run_id, "-o", str(folder))
        with (folder / MISSING_IN_A).open(encoding="utf-8", newline="") as handle:
            found[run_id] = {r["normalized_key"]: r["first_detected_run_id"] for r in csv.DictReader(handle)}
    assert found == {second: {"OUT-1": first}, third: {}}

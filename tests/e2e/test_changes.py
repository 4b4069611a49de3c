"""changes_since_last_run.csv, written with the other reports after every run."""

from __future__ import annotations

import json

import pytest

from keysync.application.bootstrap import build, run_settings
from keysync.infrastructure.config import load_config
from keysync.projections.changes import CHANGE_COLUMNS

CHANGES = "changes_since_last_run.csv"
A = ["CUST-1", "CUST-2"]


def rows(project) -> list[tuple[str, ...]]:
    """The report's rows without run_id, after checking that run_id is the latest run's on every row."""
    found = project.report(CHANGES)
    latest = json.loads(project.invoke("history", "--last", "1", "--json").stdout)[0]["run_id"]
    assert {r["run_id"] for r in found} <= {latest}
    return [(r["system"], r["change"], r["key"], r["detail"]) for r in found]


def test_the_first_run_says_so_per_system_and_opens_every_discrepancy(any_project, write_systems):
    """Its keys are all new: a row per system says how many, not a row per key (millions at scale)."""
    write_systems(A=A, B=["cust_1", "X-1"], C=["CUST-2", "CUST-1"], D=A, E=["CUST-2"])
    any_project.invoke("run")
    assert list(any_project.report(CHANGES)[0]) == list(CHANGE_COLUMNS)
    first = "the first completed run: its {} are all new"
    assert rows(any_project) == [
        ("A", "first_run", "", first.format("2 keys")),
        ("B", "first_run", "", first.format("2 keys")),
        ("B", "discrepancy_opened", "X-1", "missing_in_A"),
        ("B", "discrepancy_opened", "CUST-2", "missing_from_system"),
        ("C", "first_run", "", first.format("2 keys")),
        ("D", "first_run", "", first.format("2 keys")),
        ("E", "first_run", "", first.format("1 key")),
        ("E", "discrepancy_opened", "CUST-1", "missing_from_system"),
        ("B", "master_key_proposed", "X-1", "X-1"),
    ]


def test_the_next_run_lists_keys_discrepancies_and_its_registry_decisions(any_project, write_systems):
    write_systems(A=A, B=["CUST-1", "X-1", "X-2"], C=A, D=A, E=A)
    any_project.invoke("run")
    # X-1 enters System A (deprecated: it is in A now); B loses CUST-1 and X-1, gains CUST-2 and Y-1 (proposed).
    write_systems(A=[*A, "X-1"], B=["CUST-2", "X-2", "Y-1"], C=[*A, "X-1"], D=[*A, "X-1"])
    any_project.invoke("run")
    assert rows(any_project) == [
        ("A", "key_added", "X-1", ""),
        ("B", "key_added", "CUST-2", ""),
        ("B", "key_added", "Y-1", ""),
        ("B", "key_removed", "CUST-1", ""),
        ("B", "key_removed", "X-1", ""),
        ("B", "discrepancy_opened", "Y-1", "missing_in_A"),
        ("B", "discrepancy_opened", "CUST-1", "missing_from_system"),
        ("B", "discrepancy_opened", "X-1", "missing_from_system"),
        ("B", "discrepancy_resolved", "X-1", "missing_in_A"),
        ("B", "discrepancy_resolved", "CUST-2", "missing_from_system"),
        ("C", "key_added", "X-1", ""),
        ("D", "key_added", "X-1", ""),
        ("E", "discrepancy_opened", "X-1", "missing_from_system"),
        ("B", "master_key_proposed", "Y-1", "Y-1"),
        ("B", "master_key_deprecated", "X-1", "key now exists in System A"),
    ]


def test_discrepancy_rows_agree_with_keysync_compare(any_project, write_systems):
    write_systems(A=A, B=["CUST-1", "X-1"], C=["CUST-1"], D=A, E=A)
    first = json.loads(any_project.invoke("run", "--json").stdout)["run_id"]
    write_systems(A=[*A, "CUST-3"], B=["CUST-3", "X-2"], C=A, E=["CUST-1", "x_9"])
    second = json.loads(any_project.invoke("run", "--json").stdout)["run_id"]
    compared = json.loads(any_project.invoke("compare", first, second, "--json").stdout)["changes"]
    expected = sorted((c["system"], f"discrepancy_{c['change']}", c["key"], c["kind"]) for c in compared)
    assert sorted(r for r in rows(any_project) if r[1].startswith("discrepancy_")) == expected


def test_a_system_unavailable_in_either_run_has_no_key_rows(any_project, write_systems):
    write_systems(A=A, B=["CUST-1"], C=A, D=A, E=A)
    any_project.invoke("run", "--json")
    (any_project.input / "D.csv").unlink()
    write_systems(B=A, E=["CUST-1", "Z-1"])
    any_project.invoke("run")
    assert {r[0] for r in rows(any_project)} == {"B", "E"}  # D: unavailable now
    write_systems(D=["CUST-1"])
    any_project.invoke("run")
    assert rows(any_project) == []  # D was unavailable before; nothing else changed


def test_a_dry_run_shows_its_changes_against_the_latest_stored_run(any_project, write_systems):
    write_systems(A=A, B=A, C=A, D=A, E=A)
    any_project.invoke("run")
    write_systems(C=["CUST-1", "N-1"])
    any_project.invoke("run", "--dry-run")
    found = any_project.report(CHANGES)
    assert [(r["system"], r["change"], r["key"]) for r in found] == [
        ("C", "key_added", "N-1"),
        ("C", "key_removed", "CUST-2"),
        ("C", "discrepancy_opened", "N-1"),
        ("C", "discrepancy_opened", "CUST-2"),
        ("C", "master_key_proposed", "N-1"),
    ]
    assert any_project.invoke("history", "--json").stdout.count('"run_id"') == 1  # nothing was stored


def test_a_process_that_runs_again_keeps_the_previous_runs_keys_in_memory(project, write_systems):
    """keysync schedule and replay-history run many times in one process: the previous run is never re-read."""
    write_systems(A=A, B=A, C=A, D=A, E=A)
    config = load_config(project.config)
    keysync = build(config)
    keysync.run(run_settings(config))
    read_back: list[str] = []
    from_log = keysync.projections._run_keys_from_log
    keysync.projections._run_keys_from_log = lambda run: read_back.append(run["run_id"]) or from_log(run)
    write_systems(B=["CUST-1", "N-1"])
    keysync.run(run_settings(config))
    assert keysync.approve([], all_proposed=True) == ["N-1"]  # the reports are rendered again
    assert read_back == []
    expected = [
        ("B", "key_added", "N-1"),
        ("B", "key_removed", "CUST-2"),
        ("B", "discrepancy_opened", "N-1"),
        ("B", "discrepancy_opened", "CUST-2"),
        ("B", "master_key_proposed", "N-1"),
    ]
    assert [(r["system"], r["change"], r["key"]) for r in project.report(CHANGES)] == expected
    # A new process has neither run in memory: it reads the previous one back from the log, once.
    fresh = build(config)
    from_log = fresh.projections._run_keys_from_log
    fresh.projections._run_keys_from_log = lambda run: read_back.append(run["run_id"]) or from_log(run)
    fresh.rebuild()
    assert len(read_back) == 1
    assert [(r["system"], r["change"], r["key"]) for r in project.report(CHANGES)] == expected


@pytest.mark.parametrize("stored", [True, False])
def test_a_full_run_after_incremental_ones_compares_with_the_rows_the_last_one_held(project, write_systems, stored):
    """The previous run was incremental: its keys are the ones the views stored after it, or, when they do not
    hold them, its systems' rows asked for by the runs holding them; the changes are the ones a full run sees."""
    write_systems(A=A, B=A, C=A, D=A, E=A)
    project.invoke("run")
    write_systems(B=["CUST-1", "N-1"])
    project.invoke("run", "-m", "incremental")
    write_systems(C=["CUST-1", "CUST-2", "N-2"])
    project.invoke("run", "-m", "incremental")
    config = load_config(project.config)
    fresh = build(config)
    asked = []
    resolve = fresh.store.rows_held
    fresh.store.rows_held = lambda holders: asked.append(holders) or resolve(holders)
    if not stored:
        fresh.projections.recorder.save_run_keys("", "", [])  # keys of no run
    write_systems(D=["CUST-1"])
    fresh.run(run_settings(config))
    assert asked == [] if stored else (len(asked) == 1 and set(asked[0]) == set("ABCDE"))
    assert rows(project) == [
        ("D", "key_removed", "CUST-2", ""),
        ("D", "discrepancy_opened", "CUST-2", "missing_from_system"),
    ]

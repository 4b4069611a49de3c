"""When a master key was last seen: a run records only what changed in what it saw, and `registry list --json`,
`registry list --as-of` and `keysync key` still answer it for every key, after a rebuild too."""

from __future__ import annotations

import json
import sqlite3

from keysync.domain.registry import DEPRECATED, PROPOSED, REASON_IN_AUTHORITY, REASON_RULES_CHANGED

A = [f"CUST-{i}" for i in range(1, 6)]


def run(project, *args: str) -> str:
    return json.loads(project.invoke("run", "--json", *args).stdout)["run_id"]


def last_seen(project, *args: str) -> dict[str, tuple[str, str]]:
    rows = json.loads(project.invoke("registry", "list", "--json", *args).stdout)
    return {r["master_key"]: (r["last_seen_run_id"], r["status"]) for r in rows}


def seen_event(project, run_id: str) -> dict:
    events = json.loads(project.invoke("audit", "--run", run_id, "--type", "MasterKeysSeen", "--json").stdout)
    [event] = events
    return json.loads(event["payload"])


def test_last_seen_follows_keys_that_stop_being_seen_vanish_return_and_enter_a(any_project, write_systems):
    write_systems(A=A, B=[*A, "X-1", "X-2"], C=A, D=[*A, "X-2", "X-3"], E=[*A, "X-4"])
    r1 = run(any_project)
    r2 = run(any_project, "--mode", "full")
    # Nothing changed: the run notes that it saw what the run before saw, and lists no key.
    assert seen_event(any_project, r2) == {"entries_count": 0, "run_id": r2, "unseen_count": 0}
    assert last_seen(any_project) == {k: (r2, PROPOSED) for k in ("X-1", "X-2", "X-3", "X-4")}

    (any_project.input / "D.csv").unlink()  # D unavailable: X-3, seen only there, is neither seen nor gone
    write_systems(E=A)  # X-4 vanished from the only system it was in
    r3 = run(any_project)
    assert seen_event(any_project, r3) == {"entries_count": 0, "run_id": r3, "unseen_count": 2}
    assert last_seen(any_project) == {
        "X-1": (r3, PROPOSED),
        "X-2": (r3, PROPOSED),  # still in B
        "X-3": (r2, PROPOSED),
        "X-4": (r2, DEPRECATED),
    }

    write_systems(D=[*A, "X-2", "X-3"])
    r4 = run(any_project)
    assert last_seen(any_project)["X-3"] == (r4, PROPOSED)
    assert last_seen(any_project)["X-4"] == (r2, DEPRECATED)

    write_systems(A=[*A, "X-1"], E=[*A, "X-4"])  # X-1 enters A; X-4 returns
    r5 = run(any_project)
    now = last_seen(any_project)
    assert now == {"X-1": (r4, DEPRECATED), "X-2": (r5, PROPOSED), "X-3": (r5, PROPOSED), "X-4": (r5, PROPOSED)}
    timeline = json.loads(any_project.invoke("key", "X-1", "--json").stdout)
    assert (timeline["last_seen_run_id"], timeline["status_reason"]) == (r4, REASON_IN_AUTHORITY)
    assert f"last seen by run {r5}" in any_project.invoke("key", "X-4").stdout

    # The registry as it stood after each run says when each key was last seen then.
    assert last_seen(any_project, "--as-of", r3)["X-3"] == (r2, PROPOSED)
    assert last_seen(any_project, "--as-of", r3)["X-2"] == (r3, PROPOSED)
    assert last_seen(any_project, "--as-of", r1) == {k: (r1, PROPOSED) for k in ("X-1", "X-2", "X-3", "X-4")}

    any_project.invoke("rebuild")
    assert last_seen(any_project) == now
    assert json.loads(any_project.invoke("doctor", "--json").stdout)["healthy"]


def test_a_dry_run_and_a_carried_over_run_leave_last_seen_alone(any_project, write_systems):
    write_systems(A=A, B=[*A, "X-1"], C=A, D=A, E=A)
    r1 = run(any_project)
    write_systems(B=A)
    any_project.invoke("run", "--dry-run")
    assert last_seen(any_project) == {"X-1": (r1, PROPOSED)}
    write_systems(B=[*A, "X-1"])
    r2 = run(any_project)
    run(any_project, "--mode", "incremental")  # nothing changed: the run carries r2's results over
    assert last_seen(any_project) == {"X-1": (r2, PROPOSED)}


def test_keys_named_otherwise_under_new_rules_keep_when_they_were_last_seen(any_project, write_systems):
    write_systems(A=A, B=[*A, "x_1"], C=A, D=A, E=A)
    r1 = run(any_project)
    any_project.write_config("normalize: {collapse_delims: _}\n")
    r2 = run(any_project)
    rows = json.loads(any_project.invoke("registry", "list", "--json").stdout)
    assert {r["master_key"]: (r["last_seen_run_id"], r["status_reason"]) for r in rows} == {
        "X-1": (r1, REASON_RULES_CHANGED),
        "X_1": (r2, ""),
    }
    any_project.write_config()
    r3 = run(any_project)
    assert last_seen(any_project) == {"X-1": (r3, PROPOSED), "X_1": (r2, DEPRECATED)}
    any_project.invoke("rebuild")
    assert last_seen(any_project) == {"X-1": (r3, PROPOSED), "X_1": (r2, DEPRECATED)}


def test_a_held_back_export_stands_in_for_what_its_system_saw(any_project, write_systems):
    write_systems(A=A, B=[*A, "X-1"], C=A, D=[*A, "X-3"], E=A)
    run(any_project)
    write_systems(D=[])  # suspect: the last accepted export stands in for it
    r2 = run(any_project)
    assert last_seen(any_project) == {"X-1": (r2, PROPOSED), "X-3": (r2, PROPOSED)}
    write_systems(D=A)
    r3 = run(any_project, "--accept-shrink", "D")  # taken as it is: X-3 is gone
    assert last_seen(any_project) == {"X-1": (r3, PROPOSED), "X-3": (r2, DEPRECATED)}


def test_a_run_over_the_same_exports_rewrites_no_registry_row(project, write_systems):
    write_systems(A=A, B=[*A, "X-1", "X-2"], C=A, D=[*A, "X-3"], E=A)

    def stored() -> list[tuple]:
        with sqlite3.connect(project.root / "data" / "keysync.sqlite") as db:
            return db.execute("SELECT * FROM registry_view ORDER BY master_key").fetchall()

    run(project)
    first = stored()
    second = run(project, "--mode", "full")
    assert stored() == first  # the rows the run saw again say so through the latest sighting, stored once
    assert set(last_seen(project).values()) == {(second, PROPOSED)}

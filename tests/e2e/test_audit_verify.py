"""keysync audit verify: runs seal the log; an event edited, deleted or moved in the store's own database is found
at the first broken link, named, and makes verify and doctor exit 1. A log without seals is not tampering."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from keysync.application.bootstrap import build
from keysync.domain.audit_chain import AUDIT_CHAIN_ID
from keysync.infrastructure.config import load_config
from tests.conftest import POSTGRES_DSN, Project

A = ["CUST-1", "CUST-2", "CUST-3"]
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "store_v1"


def verify(project: Project, *args: str, expect: int = 0) -> dict[str, Any]:
    return json.loads(project.invoke("audit", "verify", "--json", *args, expect=expect).stdout)


@pytest.fixture
def sealed(any_project, write_systems):
    """Two runs with an approval between them: two seals."""
    write_systems(A=A, B=[*A, "X-1", "X-2"], C=A, D=["CUST-1"], E=A)
    any_project.invoke("run")
    any_project.invoke("registry", "approve", "X-1")
    any_project.write_system("E", [*A, "E-9"])
    any_project.invoke("run")
    return any_project


def seals(project: Project) -> list[Any]:
    """The seals in the log, decoded, each with its own notification id."""
    store = build(load_config(project.config)).store
    return list(store.events.get(AUDIT_CHAIN_ID))[1:]


def stored(project: Project, where: str) -> list[int]:
    """Notification ids of the stored events whose topic ends with ``where``, in log order."""
    store = build(load_config(project.config)).store
    last = store.recorder.max_notification_id() or 0
    found = store.recorder.select_notifications(start=1, limit=last, stop=last)
    return [n.id for n in found if n.topic.endswith(where)]


def execute(project: Project, statement: str, *params: Any) -> None:
    """Run one SQL statement on the event table, behind KeySync's back. ``{table}`` and ``{id}`` stand for the
    table and its notification id column; ``?`` for parameters."""
    store = build(load_config(project.config)).store  # kept: the recorder's connections close with it
    recorder = store.recorder
    postgres = "postgres" in type(recorder).__module__
    if postgres:
        table = f'"{recorder.datastore.schema}"."{recorder.events_table_name}"'
        statement = statement.format(table=table, id="notification_id").replace("?", "%s")
    else:
        statement = statement.format(table=recorder.events_table_name, id="rowid")
    with recorder.datastore.transaction(commit=True) as cursor:
        cursor.execute(statement, params)


def test_runs_seal_the_log_and_it_verifies(sealed):
    report = verify(sealed)
    assert report["ok"] and report["broken"] is None and report["seals"] == 2
    assert report["events"] == report["events_verified"] + report["unsealed"]["count"]
    last = report["last_seal"]
    assert last["seal"] == 2 and last["covers"][1] < last["at_event"]
    # The second run's conclusion and its seal come after the last seal's range: sealed by the next one.
    assert report["unsealed"]["ids"] == [last["covers"][1] + 1, report["events"]]
    text = sealed.invoke("audit", "verify")
    assert "seals verified: 2\n" in text.stdout and f"last digest: {last['digest']}\n" in text.stdout
    assert text.stderr.startswith("OK: 2 seal(s) verify events 1-") and "--expect" in text.stderr


def test_audit_seal_seals_what_a_run_left_unsealed(sealed):
    before = verify(sealed)
    made = json.loads(sealed.invoke("audit", "seal", "--json").stdout)
    assert made["seals"] == 1 and made["covers"] == [before["last_seal"]["covers"][1] + 1, before["events"]]
    after = verify(sealed)
    assert after["seals"] == 3 and after["unsealed"]["count"] == 1  # the new seal itself
    assert "Nothing to seal" in sealed.invoke("audit", "seal").stderr
    assert verify(sealed, "--expect", made["digest"])["expected"] == {"digest": made["digest"], "found": True}
    assert verify(sealed, "--expect", before["last_seal"]["digest"].upper())["ok"]  # an older digest is still in it
    # The audit trail shows the seals, their lists of events counted, not copied.
    [seal] = json.loads(sealed.invoke("audit", "--type", "Sealed", "--json").stdout)[2:]
    assert json.loads(seal["payload"])["entries_count"] == made["events"]
    sealed.invoke("doctor")


def test_an_expected_digest_no_longer_in_the_chain_fails(sealed):
    report = verify(sealed, "--expect", "ab" * 32, expect=1)
    assert not report["ok"] and report["broken"] is None and report["expected"]["found"] is False
    refused = sealed.invoke("audit", "verify", "--expect", "ab" * 32, expect=1)
    assert "is not in the chain: the log was cut short or rewritten" in refused.stderr
    assert "64 hexadecimal digits" in sealed.invoke("audit", "verify", "--expect", "abc", expect=2).stderr


def test_an_edited_event_is_found(sealed):
    """A forgery that decodes: one run's SourceRead says another row count. Only the chain can tell."""
    first = seals(sealed)[0]
    target = next(i for i in stored(sealed, "SourceRead") if i <= first.last_id)
    store = build(load_config(sealed.config)).store
    [notification] = store.recorder.select_notifications(start=target, limit=1)
    event = store.mapper.to_domain_event(notification)
    event.__dict__["rows_read"] += 1000
    execute(sealed, "UPDATE {table} SET state = ? WHERE {id} = ?", store.mapper.to_stored_event(event).state, target)

    report = verify(sealed, expect=1)
    broken = report["broken"]
    assert (broken["seal"], broken["kind"], broken["ids"]) == (1, "changed", [target])
    assert broken["span"] == f"events 1-{first.last_id}"
    assert f"event {target} was changed (event {target} now holds SourceRead version" in broken["detail"]
    assert report["seals"] == 0  # nothing is vouched for past the first broken link
    result = sealed.invoke("audit", "verify", expect=1)
    assert result.stderr.startswith("The event log was tampered with: changed at seal 1 (at event ")
    problems = {c["name"]: c for c in json.loads(sealed.invoke("doctor", "--json", expect=1).stdout)["checks"]}
    assert not problems["audit chain"]["ok"] and f"event {target} was changed" in problems["audit chain"]["detail"]
    assert problems["event log"]["ok"]  # every aggregate still replays: the forgery is well-formed


# Deleting and moving rows: SQLite, where the test reaches into the file (the edit above runs on both backends).


def test_a_deleted_event_is_found(project, write_systems):
    write_systems(A=A, B=[*A, "X-1", "X-2"], C=A, D=["CUST-1"], E=A)
    project.invoke("run")
    project.invoke("run")
    second = seals(project)[1]
    target = next(i for i in stored(project, "RowsObserved") if second.first_id <= i <= second.last_id)
    execute(project, "DELETE FROM {table} WHERE {id} = ?", target)
    broken = verify(project, expect=1)["broken"]
    assert (broken["seal"], broken["kind"], broken["ids"]) == (2, "deleted", [target])
    assert f"event {target} is missing from the log (deleted)" in broken["detail"]


def test_swapped_events_are_found(project, write_systems):
    write_systems(A=A, B=[*A, "X-1", "X-2"], C=A, D=["CUST-1"], E=A)
    project.invoke("run")
    project.invoke("run")
    first = seals(project)[0]
    a, b = [i for i in stored(project, "RowsObserved") if i <= first.last_id][1:3]
    for statement, params in [("UPDATE {table} SET {id} = ? WHERE {id} = ?", (-1, a)),
                              ("UPDATE {table} SET {id} = ? WHERE {id} = ?", (a, b)),
                              ("UPDATE {table} SET {id} = ? WHERE {id} = ?", (b, -1))]:  # fmt: skip
        execute(project, statement, *params)
    broken = verify(project, expect=1)["broken"]
    assert (broken["seal"], broken["kind"], broken["ids"]) == (1, "reordered", [a, b])
    assert f"events {a}, {b} hold each other's events: the log was reordered" in broken["detail"]


def test_a_deleted_seal_is_found(project, write_systems):
    write_systems(A=A, B=A, C=A, D=A, E=A)
    for _ in range(3):
        project.invoke("run")
    execute(project, "DELETE FROM {table} WHERE {id} = ?", stored(project, "AuditChain.Sealed")[1])
    broken = verify(project, expect=1)["broken"]
    assert (broken["seal"], broken["kind"]) == (3, "seal missing")
    assert "seal 2 is missing from the log (this one follows seal 1)" in broken["detail"]


def test_the_first_versions_store_has_no_seals_and_is_not_tampered_with(project):
    shutil.copy(FIXTURE / "keysync.sqlite", project.root / "keysync.sqlite")
    project.config.write_text(
        project.config.read_text(encoding="utf-8").replace("./data/keysync.sqlite", "./keysync.sqlite"),
        encoding="utf-8",
    )
    report = verify(project)
    assert report["ok"] and report["seals"] == 0 and report["unsealed"]["count"] == report["events"] > 0
    assert "no seals yet: " in project.invoke("audit", "verify").stderr
    project.invoke("audit", "seal")
    report = verify(project)
    assert report["seals"] == 1 and report["unsealed"]["count"] == 2  # the chain's Created and Sealed


@pytest.mark.skipif(not POSTGRES_DSN, reason="needs KEYSYNC_TEST_POSTGRES_DSN (a PostgreSQL server)")
def test_a_sqlite_log_migrated_into_postgres_still_verifies(project, write_systems, tmp_path):
    import uuid

    import psycopg

    write_systems(A=A, B=[*A, "X-1"], C=A, D=A, E=A)
    project.invoke("run")
    project.invoke("run")
    before = verify(project)
    schema = f"keysync_test_{uuid.uuid4().hex[:12]}"
    dsn = f"{POSTGRES_DSN}{'&' if '?' in POSTGRES_DSN else '?'}schema={schema}"
    try:
        project.invoke("store", "migrate", "--to", dsn)
        project.store = f'{{backend: postgres, dsn: "{dsn}"}}'
        project.write_config()
        after = verify(project, "--expect", before["last_seal"]["digest"])
        assert after["ok"] and after["seals"] == 2 and after["events"] == before["events"]
    finally:
        with psycopg.connect(POSTGRES_DSN.split("?")[0], autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

"""What the stress, crash-loop and full-disk tests found, each pinned down by a small deterministic test."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import uuid

import psycopg
import pytest

from keysync.application.bootstrap import build
from keysync.infrastructure.config import load_config
from keysync.infrastructure.report_files import write_csv_atomic
from tests.conftest import POSTGRES_DSN, Project
from tests.e2e.reliability_support import clear_failure, keysync, temporaries

A = ["CUST-1", "CUST-2", "CUST-3"]


def test_a_sandbox_edit_brings_the_audit_trail_and_the_reports_up_to_date(project):
    # Found by the stress test: after a sandbox edit, keysync doctor found the views and the reports behind the log.
    project.invoke("sandbox", "init", "--keys", "5")
    project.invoke("run")
    project.invoke("sandbox", "add-key", "NEW-1", "--systems", "B")
    project.invoke("doctor")
    assert project.report("audit_log.csv")[-1]["event_type"] == "KeysAdded"


def test_a_store_file_that_sqlite_cannot_open_is_one_clear_line(project):
    # Found on a full disk: SQLite's error when the store cannot even be opened came through as a traceback.
    path = project.root / "data" / "keysync.sqlite"
    path.parent.mkdir()
    path.write_text("not a database\n" * 20, encoding="utf-8")
    line = clear_failure(keysync(project.config, "registry", "list"))
    assert line == f"Error: the event store ({path}) cannot be used: file is not a database"


def test_temporary_files_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    # Found by the crash loop: every kill in the middle of writing a report left its temporary file behind.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its process id now belongs to nobody (the system reuses ids only after a long wrap)
    host = socket.gethostname().replace("/", "_").replace(".", "_")
    target = tmp_path / "audit_log.csv"
    orphan = tmp_path / f".audit_log.csv.{host}.{dead.pid}.abc123.tmp"
    live = tmp_path / f".audit_log.csv.{host}.{os.getppid()}.def456.tmp"  # a writer still at work: not touched
    elsewhere = tmp_path / f".audit_log.csv.otherhost.{dead.pid}.ghi789.tmp"  # another host's: not known here
    other_report = tmp_path / f".trend_report.csv.{host}.{dead.pid}.jkl012.tmp"  # removed by that report's write
    for path in (orphan, live, elsewhere, other_report):
        path.write_text("half a report", encoding="utf-8")
    write_csv_atomic(target, {"event_id": [1]})
    assert set(temporaries(tmp_path)) == {live, elsewhere, other_report}
    assert target.read_text(encoding="utf-8") == "event_id\n1\n"


def test_saving_a_projection_position_waits_for_a_concurrent_writer(project, write_systems):
    write_systems(A=A, B=["X-1"], C=A, D=A, E=A)
    project.invoke("run")
    application = build(load_config(project.config))  # held: its connection pool closes with it
    views = application.projections.recorder
    read_position = views._max_tracking_id
    interfered = []

    def read_then_another_process_commits(name, cursor):
        position = read_position(name, cursor)
        if not interfered:  # once: between this transaction's read and its write, another connection commits
            interfered.append(True)
            other = sqlite3.connect(project.root / "data" / "keysync.sqlite", timeout=0.5)
            try:
                other.execute("CREATE TABLE IF NOT EXISTS other_writer (n INTEGER)")
                other.execute("INSERT INTO other_writer VALUES (1)")
                other.commit()
            except sqlite3.OperationalError:
                pass  # refused: this transaction holds the write lock already, which is the fix
            finally:
                other.close()
        return position

    following = views.position("views") + 1
    views._max_tracking_id = read_then_another_process_commits
    assert views.save_views("views", following, None, [], []) is True


@pytest.fixture
def postgres_project(tmp_path):
    if not POSTGRES_DSN:
        pytest.skip("needs KEYSYNC_TEST_POSTGRES_DSN (a PostgreSQL server)")
    schema = f"keysync_test_{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in POSTGRES_DSN else "?"
    project = Project(tmp_path, store=f'{{backend: postgres, dsn: "{POSTGRES_DSN}{separator}schema={schema}"}}')
    project.invoke("store", "init")
    try:
        yield project, schema
    finally:
        with psycopg.connect(POSTGRES_DSN.split("?")[0], autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_a_gap_in_postgres_notification_ids_does_not_hang_the_next_command(postgres_project):
    # Found by the stress test on PostgreSQL: a command hung, reading the same page of the log forever, when the id
    # after the views' position was missing (every rolled-back insert, e.g. a lost optimistic-concurrency race, uses
    # one up) and the first id after the gap was an event the command had just saved.
    project, schema = postgres_project
    for system, keys in {"A": A, "B": ["X-1"], "C": A, "D": A, "E": A}.items():
        project.write_system(system, keys)
    assert keysync(project.config, "run").returncode == 0
    with psycopg.connect(POSTGRES_DSN.split("?")[0], autocommit=True) as conn:  # what a rolled-back insert leaves
        conn.execute(f"SELECT nextval(pg_get_serial_sequence('\"{schema}\".keysync_events', 'notification_id'))")
    approved = keysync(project.config, "registry", "approve", "X-1", timeout=20)  # takes 1-2 s when it works
    assert approved.returncode == 0, approved.stderr
    assert json.loads(keysync(project.config, "registry", "list", "--json").stdout)[0]["status"] == "Active"


def test_reports_written_by_a_slower_process_do_not_replace_newer_ones(project, write_systems):
    write_systems(A=A, B=["X-1", "Y-1"], C=A, D=A, E=A)
    project.invoke("run")
    slower = build(load_config(project.config))  # this process: it catches up, slowly
    registry = slower.store.registry()
    registry.deprecate(["Y-1"], "merged", "test")
    slower.store.save(registry)
    write = slower.projections.write
    overtaken = []
    first = threading.Lock()  # reports are written on several threads: the other process comes in once

    def write_after_another_process_caught_up(path, columns):
        with first:
            if not overtaken:  # another process saves and catches up while this one is writing its first report
                overtaken.append(keysync(project.config, "registry", "approve", "X-1"))
                assert overtaken[0].returncode == 0, overtaken[0].stderr
        return write(path, columns)

    slower.projections.write = write_after_another_process_caught_up
    slower.projections.catch_up()
    statuses = {row["master_key"]: row["status"] for row in project.report("master_key_registry.csv")}
    assert statuses == {"X-1": "Active", "Y-1": "Deprecated"}  # what the log says

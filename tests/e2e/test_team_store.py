"""The team store: a SQLite log moved into PostgreSQL, and several processes sharing one PostgreSQL log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import psycopg
import pytest

from keysync.projections.reports import REPORTS
from tests.conftest import POSTGRES_DSN, Project

pytestmark = pytest.mark.skipif(not POSTGRES_DSN, reason="needs KEYSYNC_TEST_POSTGRES_DSN (a PostgreSQL server)")

A = ["CUST-1", "CUST-2", "CUST-3"]


@pytest.fixture
def schema_dsn():
    schema = f"keysync_test_{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in POSTGRES_DSN else "?"
    yield f"{POSTGRES_DSN}{separator}schema={schema}"
    with psycopg.connect(POSTGRES_DSN.split("?")[0], autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def reports(project: Project) -> dict[str, str]:
    return {name: (project.output / name).read_text(encoding="utf-8") for name in REPORTS}


def test_a_sqlite_log_migrates_into_postgres_with_order_ids_and_reports_kept(project, write_systems, schema_dsn):
    write_systems(A=A, B=["X-1", "cust 2"], C=A, D=["CUST-1"], E=A)
    project.invoke("run")
    project.invoke("registry", "approve", "X-1")
    project.write_system("B", ["Y-9"])
    project.invoke("run", "--auto-approve")
    before = reports(project)
    audit_before = json.loads(project.invoke("audit", "--json").stdout)

    project.invoke("store", "migrate", "--to", schema_dsn)
    project.store = f'{{backend: postgres, dsn: "{schema_dsn}"}}'
    project.write_config()
    for path in project.output.iterdir():
        path.unlink()
    project.invoke("reports")
    assert reports(project) == before
    audit_after = json.loads(project.invoke("audit", "--json").stdout)
    assert audit_after == audit_before  # same ids, order, types, payloads and timestamps
    error = project.invoke("store", "migrate", "--to", schema_dsn, expect=1)
    assert "already holds events" in error.stderr


def test_a_log_with_an_unfinished_run_is_not_migrated(project, write_systems, schema_dsn):
    write_systems(A=A, B=["X-1"], C=A, D=A, E=A)
    project.invoke("run")
    crashed = subprocess.run(
        [sys.executable, "-c", "from keysync.cli.main import main; main()", "run", "-c", str(project.config)],
        capture_output=True, text=True, env={**os.environ, "KEYSYNC_CRASH_AFTER_EVENTS": "2"},
    )  # fmt: skip
    assert crashed.returncode == -9

    refused = project.invoke("store", "migrate", "--to", schema_dsn, expect=1)

    assert "is unfinished: `keysync run` resumes it" in refused.stderr and "nothing was copied" in refused.stderr
    project.invoke("run")  # resumes it
    project.invoke("store", "migrate", "--to", schema_dsn)


def test_processes_sharing_one_postgres_log_lose_nothing(tmp_path, schema_dsn):
    project = Project(tmp_path, store=f'{{backend: postgres, dsn: "{schema_dsn}"}}')
    project.invoke("store", "init")
    for system in "ABCDE":
        project.write_system(system, [*A, *(f"{system}-{i}" for i in range(20) if system != "A")])
    script = (
        "import json, subprocess, sys\n"
        "config, worker = sys.argv[1], sys.argv[2]\n"
        "done = []\n"
        "for i in range(3):\n"
        "    for args in (['run', '--json'], ['registry', 'approve', '--all']):\n"
        "        p = subprocess.run([sys.executable, '-c', 'from keysync.cli.main import main; main()', *args,"
        " '-c', config], capture_output=True, text=True, timeout=180)\n"
        "        if p.returncode == 0:\n"
        "            done.append(json.loads(p.stdout)['run_id'] if args[0] == 'run' else 'approve')\n"
        "        elif 'another run is in progress' not in p.stderr and 'at the same moment' not in p.stderr:\n"
        "            sys.exit('unclear failure: ' + p.stderr)\n"
        "print(json.dumps(done))\n"
    )
    workers = [
        subprocess.Popen([sys.executable, "-c", script, str(project.config), str(n)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=os.environ.copy())
        for n in range(4)
    ]  # fmt: skip
    acknowledged = []
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
        acknowledged += [op for op in json.loads(out) if op != "approve"]
    assert acknowledged, "no run got through at all"
    history = {r["run_id"]: r["status"] for r in json.loads(project.invoke("history", "--json").stdout)}
    for run_id in acknowledged:
        assert history.get(run_id) == "completed", run_id  # every acknowledged run is in the log, once
    project.invoke("reports")
    caught_up = reports(project)
    project.invoke("rebuild")
    assert reports(project) == caught_up


def test_a_log_of_more_than_40000_events_migrates_in_bounded_batches(project, write_systems, schema_dsn):
    # One save of 40,000 or more events was seen to hang psycopg's pipeline: migration must batch its inserts.
    from keysync.application.bootstrap import build
    from keysync.domain.run import ReconciliationRun
    from keysync.infrastructure.config import load_config

    write_systems(A=A, B=A, C=A, D=A, E=A)
    project.invoke("run")
    source = build(load_config(project.config))
    noisy = ReconciliationRun(run_id="noisy", mode="full", options={}, actor="test")
    for start in range(0, 41_000, 5_000):
        for i in range(start, start + 5_000):
            noisy.mark_unavailable("B", "B.csv", f"timeout {i}")
        source.store.save(noisy)
    noisy.fail("noise, for the test")  # an unfinished run is not migrated
    source.store.save(noisy)
    total = source.store.recorder.max_notification_id()
    project.invoke("store", "migrate", "--to", schema_dsn)
    with psycopg.connect(POSTGRES_DSN.split("?")[0]) as conn:
        schema = schema_dsn.rsplit("schema=", 1)[1]
        copied = conn.execute(f'SELECT COUNT(*) FROM "{schema}".keysync_events').fetchone()[0]
    assert copied == total > 40_000


def test_a_second_run_on_postgres_says_which_run_is_in_progress(tmp_path, schema_dsn):
    from keysync.application.bootstrap import build
    from keysync.domain.run import ReconciliationRun
    from keysync.infrastructure.config import load_config

    project = Project(tmp_path, store=f'{{backend: postgres, dsn: "{schema_dsn}"}}')
    project.invoke("store", "init")
    for system in "ABCDE":
        project.write_system(system, A)
    holder = build(load_config(project.config))
    with holder.lock() as claim:
        run = ReconciliationRun(run_id="abc123def456", mode="full", options={}, actor="test")
        claim(run.run_id)
        holder.store.save(run)  # its Started event is stored; the run history has not folded it in yet

        refused = project.invoke("run", expect=1)

    assert "another run is in progress (run_id abc123def456, started " in refused.stderr


def test_a_run_killed_mid_way_resumes_on_postgres(tmp_path, schema_dsn):
    project = Project(tmp_path, store=f'{{backend: postgres, dsn: "{schema_dsn}"}}')
    project.invoke("store", "init")
    for system in "ABCDE":
        project.write_system(system, [*A, *(f"{system}-{i}" for i in range(5) if system != "A")])
    command = [sys.executable, "-c", "from keysync.cli.main import main; main()", "run", "-c", str(project.config)]
    crashed = subprocess.run(command, env={**os.environ, "KEYSYNC_CRASH_AFTER_EVENTS": "5"}, capture_output=True)
    assert crashed.returncode == -9
    resumed = subprocess.run(command, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resumed run" in resumed.stderr
    [run] = json.loads(project.invoke("history", "--json").stdout)
    assert run["status"] == "completed" and run["missing_in_A_count"] == 20


def test_many_registry_rows_reach_the_postgres_view_as_they_reach_sqlite(tmp_path, schema_dsn):
    """Over a thousand changed registry rows go into the PostgreSQL read model in one COPY: raw keys holding
    commas and quotes, and empty reasons, arrive as they do on SQLite, through proposals and deprecations."""
    fields = ("master_key", "source_systems", "source_key", "status", "status_reason")
    for name in ("sqlite", "postgres"):
        (tmp_path / name).mkdir()
    projects = [
        Project(tmp_path / "sqlite"),
        Project(tmp_path / "postgres", f'{{backend: postgres, dsn: "{schema_dsn}"}}'),
    ]
    found = [f'X,{i}"' if i % 3 == 0 else f"X-{i}" for i in range(1500)]
    held = [f"CUST-{i}" for i in range(1500)]  # B keeps A's keys: losing 1,300 others is no suspect shrink
    projects[1].invoke("store", "init")
    listed = []
    for project in projects:
        for system in "ACDE":
            project.write_system(system, held)
        project.write_system("B", held + found)
        project.invoke("run")
        project.invoke("registry", "approve", "X-1")
        project.write_system("B", held + found[:200])  # 1,300 keys vanish: deprecated
        project.invoke("run")
        rows = json.loads(project.invoke("registry", "list", "--json").stdout)
        listed.append([{f: row[f] for f in fields} for row in rows])
    assert listed[0] == listed[1]
    assert len(listed[0]) == 1500 and sum(row["status"] == "Deprecated" for row in listed[0]) == 1300
    assert any('"' in row["source_key"] and "," in row["source_key"] for row in listed[0])

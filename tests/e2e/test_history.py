"""history, audit and key: the event log made visible."""

from __future__ import annotations

import csv
import io
import json

A = ["CUST-1", "CUST-2"]


def test_history_lists_runs_newest_first_with_kpis(any_project, write_systems):
    write_systems(A=A, B=["X-1"], C=A, D=A, E=A)
    first = json.loads(any_project.invoke("run", "--json").stdout)["run_id"]
    any_project.write_system("B", A)
    second = json.loads(any_project.invoke("run", "--json").stdout)["run_id"]
    runs = json.loads(any_project.invoke("history", "--json").stdout)
    assert [r["run_id"] for r in runs] == [second, first]
    assert runs[1]["missing_in_A_count"] == 1 and runs[0]["missing_in_A_count"] == 0
    assert {r["status"] for r in runs} == {"completed"}
    rows = list(csv.DictReader(io.StringIO(any_project.invoke("history", "--csv", "--last", "1").stdout)))
    assert [r["run_id"] for r in rows] == [second]


def test_audit_filters_by_run_type_and_key(any_project, write_systems):
    write_systems(A=A, B=["X-1", "X-2"], C=A, D=A, E=A)
    run_id = json.loads(any_project.invoke("run", "--json").stdout)["run_id"]
    any_project.invoke("registry", "approve", "X-1")
    everything = json.loads(any_project.invoke("audit", "--json").stdout)
    assert [e["event_id"] for e in everything] == sorted(e["event_id"] for e in everything)
    of_run = json.loads(any_project.invoke("audit", "--run", run_id, "--json").stdout)
    assert of_run and {e["run_id"] for e in of_run} == {run_id}
    activated = json.loads(any_project.invoke("audit", "--type", "MasterKeysActivated", "--json").stdout)
    assert len(activated) == 1 and json.loads(activated[0]["payload"])["master_keys_count"] == 1
    about_x2 = json.loads(any_project.invoke("audit", "--key", "x_2", "--json").stdout)
    assert [e["event_type"] for e in about_x2] == ["RowsObserved", "MasterKeysProposed"]
    assert json.loads(any_project.invoke("audit", "--since", "2999-01-01", "--json").stdout) == []
    assert any_project.invoke("audit", "--since", "yesterday", expect=2).exit_code == 2


def test_key_timeline_shows_appearance_vanishing_and_registry_changes(any_project, write_systems):
    write_systems(A=A, B=["X-1"], C=A, D=A, E=A)
    any_project.invoke("run")
    any_project.write_system("B", A)
    any_project.write_system("D", ["x 1"])
    second = json.loads(any_project.invoke("run", "--json").stdout)["run_id"]
    timeline = json.loads(any_project.invoke("key", "x-1", "--json").stdout)
    changes = [(s["system"], s["change"]) for s in timeline["sightings"]]
    assert changes == [("B", "appeared"), ("B", "vanished"), ("D", "appeared")]
    assert timeline["present_in"] == ["D"]
    assert [e["event_type"] for e in timeline["registry"]] == ["MasterKeysProposed", "MasterKeysSeen"]
    shown = any_project.invoke("key", "X-1").stdout
    assert timeline["last_seen_run_id"] == second  # master_key_registry.csv no longer says it
    assert shown.startswith(f"X-1: Proposed\nnow in D\nlast seen by run {second}\n")
    assert "vanished from B" in shown and "appeared in D" in shown


def test_every_run_adds_its_systems_to_the_trend_report(any_project, write_systems):
    write_systems(A=A, B=["X-1"], C=A, D=A, E=A)
    any_project.invoke("run")
    any_project.write_system("B", A)
    any_project.invoke("run")
    trend = any_project.report("trend_report.csv")
    assert len(trend) == 10
    assert [r["missing_in_A"] for r in trend if r["system"] == "B"] == ["1", "0"]


def test_the_history_table_keeps_run_ids_whole_and_shows_why_a_run_failed(project, write_systems, monkeypatch):
    project.write_config("processing: {retries: 0}\n")  # a missing file is not waited for
    write_systems(A=["K-1"], B=["K-1", "K-2"])
    project.invoke("run")
    (project.input / "A.csv").unlink()
    project.invoke("run", expect=1)
    runs = json.loads(project.invoke("history", "--json").stdout)
    monkeypatch.setenv("COLUMNS", "80")

    shown = project.invoke("history").stdout

    assert all(len(line) <= 80 for line in shown.splitlines())
    assert all(r["run_id"] in shown for r in runs)  # not folded over two lines
    failed = next(r for r in runs if r["status"] == "failed")
    assert f"{failed['run_id']} failed: {failed['errors']}" in " ".join(shown.split())


def test_audit_refuses_an_unknown_event_type_or_run_and_key_says_when_nothing_is_known(project, write_systems):
    write_systems(A=["K-1"], B=["K-1", "K-2"])
    project.invoke("run")

    typo = project.invoke("audit", "--type", "Complete", expect=2)
    unknown_run = project.invoke("audit", "--run", "nope", expect=1)
    nothing = project.invoke("key", "NOPE")

    assert "'Complete' is not an event type" in typo.stderr and "Completed" in typo.stderr
    assert "no run 'nope' in the store" in unknown_run.stderr
    assert nothing.stdout.strip() == "NOPE: no run has seen it, and no master key is it"
    assert [r["event_type"] for r in json.loads(project.invoke("audit", "--type", "completed", "--json").stdout)] == [
        "Completed"
    ]

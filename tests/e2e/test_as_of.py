"""keysync show-as-of: the registry and the reports as they stood at a time or at the end of a run."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta

from keysync.application.as_of import registry_as_of
from keysync.application.bootstrap import build
from keysync.infrastructure.config import load_config
from keysync.projections.reports import REPORTS

A = ["CUST-1", "CUST-2"]


def files(folder) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in REPORTS}


def status(project) -> dict:
    return json.loads(project.invoke("store", "status", "--json").stdout)


def test_as_of_a_run_gives_back_the_reports_written_after_that_run(any_project, write_systems):
    write_systems(A=A, B=["CUST-1", "X-1"], C=A, D=A, E=A)
    first = json.loads(any_project.invoke("run", "--json").stdout)["run_id"]
    after_first = files(any_project.output)
    any_project.invoke("registry", "approve", "--all")
    write_systems(A=[*A, "X-1"], B=["CUST-2", "Y-1"])
    any_project.invoke("run")
    live, positions = files(any_project.output), status(any_project)["positions"]

    result = any_project.invoke("show-as-of", first)
    assert files(any_project.output / f"as-of-{first}") == after_first
    assert "X-1" in result.stdout and f"written to {any_project.output / f'as-of-{first}'}" in result.stderr
    # The live reports and read models are untouched.
    assert files(any_project.output) == live
    assert status(any_project)["positions"] == positions


def test_as_of_a_time_replays_the_events_stamped_until_then(any_project, write_systems):
    write_systems(A=A, B=["CUST-1", "X-1"], C=A, D=A, E=A)
    first = json.loads(any_project.invoke("run", "--json").stdout)["run_id"]
    any_project.invoke("registry", "approve", "X-1")
    write_systems(B=["CUST-1", "X-1", "X-2"])
    second = json.loads(any_project.invoke("run", "--json").stdout)["run_id"]
    [approval] = json.loads(any_project.invoke("audit", "--type", "MasterKeysActivated", "--json").stdout)
    approved_at = datetime.fromisoformat(approval["created_at"])

    def as_of(moment: datetime, folder: str) -> dict:
        return json.loads(any_project.invoke("show-as-of", moment.isoformat(), "-o", folder, "--json").stdout)

    before = as_of(approved_at - timedelta(microseconds=1), str(any_project.root / "before"))
    assert [(r["master_key"], r["status"]) for r in before["registry"]] == [("X-1", "Proposed")]
    at = as_of(approved_at, str(any_project.root / "at"))
    assert [(r["master_key"], r["status"]) for r in at["registry"]] == [("X-1", "Active")]
    assert at["latest_completed_run"] == first
    assert len(at["reports"]) == len(REPORTS) and all(p.startswith(str(any_project.root / "at")) for p in at["reports"])
    with (any_project.root / "at" / "master_key_registry.csv").open(encoding="utf-8", newline="") as handle:
        assert [(r["master_key"], r["status"]) for r in csv.DictReader(handle)] == [("X-1", "Active")]
    now = as_of(approved_at + timedelta(days=365), str(any_project.root / "now"))
    assert now["latest_completed_run"] == second
    assert {r["master_key"] for r in now["registry"]} == {"X-1", "X-2"}


def test_a_time_before_the_first_event_gives_empty_reports(any_project, write_systems):
    write_systems(A=A, B=A, C=A, D=A, E=A)
    any_project.invoke("run")
    result = json.loads(any_project.invoke("show-as-of", "2000-01-01", "--json").stdout)
    assert result["as_of"] == "20000101T000000Z" and result["latest_completed_run"] is None
    assert result["registry"] == []
    folder = any_project.output / "as-of-20000101T000000Z"
    for name in REPORTS:
        assert len((folder / name).read_text(encoding="utf-8").splitlines()) == 1, name  # the header alone


def test_as_of_a_failed_run_shows_the_run_before_it(any_project, write_systems):
    write_systems(A=A, B=A, C=A, D=A, E=A)
    first = json.loads(any_project.invoke("run", "--json").stdout)["run_id"]
    (any_project.input / "A.csv").unlink()
    any_project.invoke("run", expect=1)
    failed = json.loads(any_project.invoke("history", "--last", "1", "--json").stdout)[0]
    assert failed["status"] == "failed"
    result = json.loads(any_project.invoke("show-as-of", failed["run_id"], "--json").stdout)
    assert result["latest_completed_run"] == first
    folder = any_project.output / f"as-of-{failed['run_id']}"
    with (folder / "audit_log.csv").open(encoding="utf-8", newline="") as handle:
        assert list(csv.DictReader(handle))[-1]["event_type"] == "Failed"


def test_unknown_run_ids_unreadable_times_and_the_live_folder_are_clear_errors(any_project, write_systems):
    write_systems(A=A, B=A, C=A, D=A, E=A)
    any_project.invoke("run")
    for moment, expected in [
        ("abcdef123456", "Error: unknown run id 'abcdef123456' (see keysync history)\n"),
        ("yesterday", "Error: 'yesterday' is neither a run id nor an ISO 8601 time (e.g. 2026-01-02 or "
                      "2026-01-02T03:04:05+00:00)\n"),
    ]:  # fmt: skip
        result = any_project.invoke("show-as-of", moment, expect=1)
        assert result.stderr == expected and result.stdout == ""
    result = any_project.invoke("show-as-of", "2026-01-01", "-o", str(any_project.output), expect=1)
    assert "holds the live reports" in result.stderr
    assert not any(p.name.startswith("as-of-") for p in any_project.output.iterdir())


def test_the_registry_as_of_a_run_reads_only_the_registry(any_project, write_systems):
    write_systems(A=A, B=["CUST-1", "X-1"], C=A, D=A, E=A)
    first = json.loads(any_project.invoke("run", "--json").stdout)["run_id"]
    any_project.invoke("registry", "approve", "--all")
    write_systems(A=[*A, "X-1"], B=["Y-1"])
    second = json.loads(any_project.invoke("run", "--json").stdout)["run_id"]
    projections = build(load_config(any_project.config)).projections
    then = registry_as_of(projections, first)
    assert [(r["master_key"], r["status"], r["last_seen_run_id"]) for r in then] == [("X-1", "Proposed", first)]
    later = {r["master_key"]: r["status"] for r in registry_as_of(projections, second)}
    assert later == {"X-1": "Deprecated", "Y-1": "Proposed"}
    assert [r["master_key"] for r in registry_as_of(projections, second, "Proposed")] == ["Y-1"]
    assert registry_as_of(projections, "1999-12-31T23:59:59+00:00") == []


def test_registry_list_as_of_a_run_shows_the_keys_and_statuses_of_then(any_project, write_systems):
    write_systems(A=A, B=["CUST-1", "X-1"], C=A, D=A, E=A)
    first = json.loads(any_project.invoke("run", "--json").stdout)["run_id"]
    any_project.invoke("registry", "approve", "--all")
    write_systems(B=["CUST-1", "X-1", "Y-1"])
    any_project.invoke("run")
    then = json.loads(any_project.invoke("registry", "list", "--as-of", first, "--json").stdout)
    now = json.loads(any_project.invoke("registry", "list", "--json").stdout)
    assert [(r["master_key"], r["status"]) for r in then] == [("X-1", "Proposed")]
    assert [(r["master_key"], r["status"]) for r in now] == [("X-1", "Active"), ("Y-1", "Proposed")]
    unknown = any_project.invoke("registry", "list", "--as-of", "not-a-run", expect=1)
    assert "not-a-run" in unknown.stderr and "Traceback" not in unknown.stderr

"""Every version must still read the stores written by earlier ones, and rebuild the same reports from them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from keysync.application.store import KeySyncStore
from keysync.domain.run import ReconciliationRun
from keysync.projections.reports import REPORTS
from tests.unit.test_run_recordings import record_as_delta, rows

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# store_v1: the first version's; store_v2: the last before the columnar engine, holding every kind of event then.
STORES = ("store_v1", "store_v2")


def use_store(project, name: str) -> Path:
    fixture = FIXTURES / name
    shutil.copy(fixture / "keysync.sqlite", project.root / "keysync.sqlite")
    project.config.write_text(
        project.config.read_text(encoding="utf-8").replace("./data/keysync.sqlite", "./keysync.sqlite"),
        encoding="utf-8",
    )
    return fixture


@pytest.mark.parametrize("name", STORES)
def test_an_earlier_versions_store_rebuilds_to_the_same_reports(project, name):
    fixture = use_store(project, name)
    project.invoke("rebuild")
    for report in REPORTS:
        expected = (fixture / "expected" / report).read_text(encoding="utf-8")
        assert (project.output / report).read_text(encoding="utf-8") == expected, report


@pytest.mark.parametrize(("name", "completed"), [("store_v1", 3), ("store_v2", 7)])
def test_an_earlier_versions_store_takes_new_runs(project, write_systems, name, completed):
    use_store(project, name)
    write_systems(A=["CUST-1"], B=["CUST-1"], C=["CUST-1"], D=["CUST-1"], E=["CUST-1"])
    project.invoke("run", "--accept-shrink", "A,B,C,D,E")
    assert len(project.report("trend_report.csv")) == (completed + 1) * 5


def last_seen(project, *args: str) -> dict[str, str]:
    rows = json.loads(project.invoke("registry", "list", "--json", *args).stdout)
    return {row["master_key"]: row["last_seen_run_id"] for row in rows}


@pytest.mark.parametrize("name", STORES)
def test_an_earlier_versions_store_says_when_each_key_was_last_seen_as_that_version_did(project, write_systems, name):
    """That version recorded every key seen, every run; later ones record what changed. Both answer alike, on
    the read models that version folded, as of each run, after a rebuild, and after new runs."""
    fixture = use_store(project, name)
    # Written by that version's `registry list --json` (now, and --as-of each completed run).
    expected = json.loads((fixture / "expected" / "registry_last_seen.json").read_text(encoding="utf-8"))
    assert last_seen(project) == expected["now"]
    for run_id, then in expected["as_of"].items():
        assert last_seen(project, "--as-of", run_id) == then, run_id
    project.invoke("rebuild")
    assert last_seen(project) == expected["now"]

    kept = next(iter(expected["now"]))  # seen by the new runs; the others vanish, and keep when they were last seen
    write_systems(A=["CUST-1"], B=["CUST-1", kept], C=["CUST-1"], D=["CUST-1"], E=["CUST-1"])
    first = json.loads(project.invoke("run", "--json", "--accept-shrink", "A,B,C,D,E").stdout)["run_id"]
    assert last_seen(project) == {**expected["now"], kept: first}
    second = json.loads(project.invoke("run", "--json", "--mode", "full").stdout)["run_id"]
    assert last_seen(project) == {**expected["now"], kept: second}
    assert last_seen(project, "--as-of", first) == {**expected["now"], kept: first}
    project.invoke("rebuild")
    assert last_seen(project) == {**expected["now"], kept: second}


@pytest.mark.parametrize("name", STORES)
def test_an_earlier_versions_store_is_healthy(project, name):
    use_store(project, name)
    project.invoke("rebuild")
    assert project.invoke("doctor").exit_code == 0


def test_rows_an_earlier_version_recorded_as_a_delta_load_under_a_later_unchanged_recording():
    """A store's latest run may name, for an unchanged export, a run that recorded it as its delta from an older
    run: the rows are followed back through both."""
    store = KeySyncStore()  # in memory
    first, second, third = (ReconciliationRun(run_id=f"r{i}", mode="incremental", options={}, actor="t") for i in "123")
    whole, changed = rows(["K1", "K2", "K3", "K4"], 1), rows(["K1", "K2", "K5"], 2)
    first.observe(whole, batch_size=2)
    record_as_delta(second, changed, base=whole, base_run=str(first.id))
    third.observe_unchanged("B", "B.csv", changed.fingerprint, str(second.id), 1, len(changed))  # type: ignore[arg-type]
    store.save(first, second, third)
    snapshots, _ = store.run_snapshots(third.id)
    assert (snapshots["B"].keys.to_pylist(), snapshots["B"].lines.to_pylist()) == (
        changed.keys.to_pylist(),
        changed.lines.to_pylist(),
    )

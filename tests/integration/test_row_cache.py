"""The rows an incremental run keeps beside the store for the next command: the same rows the log holds, passed
over when they are another run's or cannot be read."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keysync.application.bootstrap import build, rows_folder
from keysync.domain.observations import Fingerprint, RejectedRow, SourceSnapshot
from keysync.infrastructure.config import load_config
from keysync.infrastructure.row_cache import RowFiles
from tests.conftest import Project
from tests.e2e.test_incremental import START, reports, twins, write_all

TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=12)


def snapshot(system: str, keys: list[str], *, fingerprint: Fingerprint | None = None) -> SourceSnapshot:
    rejected = [RejectedRow(system, "in/x.csv", 7, "error", "empty key", 'a,"b"\\r')]
    return SourceSnapshot(
        system, "in/x.csv", len(keys) + 1, keys, ["customer"] * len(keys), [""] * len(keys),
        ["2026-01-02T03:04:05+00:00"] * len(keys), list(range(2, len(keys) + 2)), rejected, fingerprint,
    )  # fmt: skip


@settings(max_examples=50, deadline=None)
@given(st.lists(TEXT, max_size=30), st.booleans())
def test_rows_come_back_as_they_were_kept(tmp_path_factory, keys, fingerprinted):
    rows = RowFiles(tmp_path_factory.mktemp("rows"))
    fingerprint = Fingerprint(123, 456, "ab" * 32) if fingerprinted else None
    kept = snapshot("B", keys, fingerprint=fingerprint)
    rows.save("run-1", kept)
    assert RowFiles(rows.folder).load("run-1", "B") == kept


def test_another_runs_rows_or_another_systems_are_passed_over(tmp_path):
    rows = RowFiles(tmp_path)
    rows.save("run-1", snapshot("B", ["K-1"]))
    assert rows.load("run-2", "B") is None
    assert rows.load("run-1", "C") is None
    rows.save("run-2", snapshot("B", ["K-2"]))  # the next run's rows replace the earlier ones
    assert rows.load("run-1", "B") is None
    assert rows.load("run-2", "B").keys == ["K-2"]


@pytest.mark.parametrize("damage", [b"", b"not an arrow file", None])
def test_a_damaged_file_is_passed_over(tmp_path, caplog, damage):
    rows = RowFiles(tmp_path)
    rows.save("run-1", snapshot("B", ["K-1", "K-2"]))
    path = tmp_path / "B.arrow"
    path.write_bytes(damage if damage is not None else path.read_bytes()[: path.stat().st_size // 2])
    with caplog.at_level(logging.DEBUG, logger="keysync"):
        assert RowFiles(tmp_path).load("run-1", "B") is None
    assert "B.arrow" in caplog.text


def test_a_folder_that_cannot_be_written_is_no_error(tmp_path):
    blocked = tmp_path / "rows"
    blocked.write_text("a file where the folder would be", encoding="utf-8")
    rows = RowFiles(blocked)
    rows.save("run-1", snapshot("B", ["K-1"]))
    assert rows.load("run-1", "B") is None


def _latest(project: Project) -> tuple[str, dict[str, str]]:
    """The latest run's originator id, and the run holding each system's rows."""
    application = build(load_config(project.config))
    latest = application.projections.recorder.latest_completed_run()
    assert latest is not None
    sources = json.loads(latest["kpis"])["sources"]
    return latest["originator_id"], {s: v["holder"] for s, v in sources.items()}


def _log_rows(project: Project) -> dict[str, SourceSnapshot]:
    """Every system's rows in the latest run, rebuilt from the event log alone."""
    application = build(load_config(project.config))
    application.store.row_keeper = None
    return application.store.run_snapshots(_latest(project)[0])[0]


def test_an_incremental_command_keeps_the_rows_the_log_holds_for_the_next_one(tmp_path):
    project = Project(tmp_path)
    write_all(project, START)
    project.invoke("run")
    assert not (tmp_path / "data" / "keysync.sqlite.rows").exists()  # a full run keeps nothing beside the log
    for step in range(3):
        project.write_system("B", [*START["B"], f"NEW-{step}"])
        project.invoke("run", "-m", "incremental")
        application = build(load_config(project.config))
        resolve = application.store.base_snapshots()
        sources = _latest(project)[1]
        kept = {s: RowFiles(tmp_path / "data" / "keysync.sqlite.rows").load(holder, s) for s, holder in sources.items()}
        assert kept["B"] is not None and kept["B"].keys[-1] == f"NEW-{step}"
        logged = _log_rows(project)
        for system, holder in sources.items():
            assert resolve(holder, system) == logged[system], system


def test_rows_kept_wrongly_or_lost_change_nothing_in_what_the_next_run_reports(tmp_path):
    incremental, full = twins(tmp_path)
    kept = tmp_path / "inc" / "data" / "keysync.sqlite.rows"
    for step, spoil in enumerate(["stale", "damaged", "deleted"]):
        for project in (incremental, full):
            project.write_system("C", [*START["C"], f"NEW-{step}"])
        incremental.invoke("run", "-m", "incremental")
        full.invoke("run")
        assert reports(incremental) == reports(full), spoil
        if spoil == "stale":  # rows of the same system, kept for an older run
            RowFiles(kept).save("0" * 32, snapshot("C", ["OLD"]))
        elif spoil == "damaged":
            (kept / "C.arrow").write_bytes(b"\0" * 64)
        else:
            for path in kept.glob("*.arrow"):
                path.unlink()
        for project in (incremental, full):
            project.write_system("C", [*START["C"], f"NEW-{step}", "LATER"])
        incremental.invoke("run", "-m", "incremental")
        full.invoke("run")
        assert reports(incremental) == reports(full), spoil


def test_the_rows_folder_is_beside_the_store(tmp_path: Path):
    project = Project(tmp_path, store="{backend: sqlite, path: ./elsewhere/ks.sqlite}")
    write_all(project, START)
    project.invoke("run")
    project.write_system("B", [*START["B"], "NEW"])
    project.invoke("run", "-m", "incremental")
    kept = sorted(p.name for p in (tmp_path / "elsewhere" / "ks.sqlite.rows").glob("*.arrow"))
    assert kept == [f"{s}.arrow" for s in "ABCDE"]


def test_each_store_keeps_its_rows_in_a_folder_of_its_own(tmp_path):
    """Two stores configured side by side (a SQLite file and PostgreSQL schemas) never read each other's rows."""
    folders = set()
    for store in (
        "{backend: sqlite, path: ./data/keysync.sqlite}",
        "{backend: sqlite, path: ./data/other.sqlite}",
        "{backend: postgres, dsn: 'postgresql://keysync@db.example:5432/keysync'}",
        "{backend: postgres, dsn: 'postgresql://keysync@db.example:5432/keysync?schema=team_b'}",
    ):
        (tmp_path / "keysync-config.yaml").write_text(f"store: {store}\n", encoding="utf-8")
        folders.add(rows_folder(load_config(tmp_path / "keysync-config.yaml")))
    assert len(folders) == 4
    assert all(folder.parent == tmp_path / "data" for folder in folders)

"""A process keeps the registry it last saved or loaded, and brings it up to date with what other processes stored
since: never a stale decision, never a change that was not saved."""

from __future__ import annotations

import sqlite3

import attrs

from keysync.application.bootstrap import build, run_settings
from keysync.application.service import KeySync
from keysync.application.store import KeySyncStore
from keysync.domain.reconciliation import out_of_authority_table
from keysync.domain.registry import ACTIVE, PROPOSED, REGISTRY_ID, Registry
from keysync.infrastructure.config import load_config
from tests.conftest import Project
from tests.e2e.test_incremental import START, write_all


def state(registry: Registry) -> tuple[dict, dict, dict, int]:
    return registry.status, registry.normalized, registry.systems, registry.version


def after_a_run(root) -> tuple[Project, KeySync]:
    """A project whose store holds one completed run, and the application that ran it."""
    project = Project(root)
    write_all(project, START)
    config = load_config(project.config)
    application = build(config, create_tables=True)
    application.run(run_settings(config))
    return project, application


def loaded(project: Project) -> Registry:
    application = build(load_config(project.config))
    return application.store.registry()


def test_the_kept_registry_takes_in_another_processs_approvals_and_runs_on_without_a_conflict(any_project):
    project = any_project
    write_all(project, START)
    config = load_config(project.config)
    scheduler = build(config)
    settings = attrs.evolve(run_settings(config), mode="incremental")
    scheduler.run(settings)
    assert state(scheduler.store.registry()) == state(loaded(project))
    proposed = [m for m, s in scheduler.store.registry().status.items() if s == PROPOSED]
    assert proposed

    other = build(config)
    other.approve(proposed[:1])
    assert scheduler.store.registry().status[proposed[0]] == ACTIVE

    project.write_system("C", [*START["C"], "NEW-1"])
    scheduler.run(settings)  # saves the registry on top of the other process's events
    assert state(scheduler.store.registry()) == state(loaded(project))
    assert scheduler.store.registry().status[proposed[0]] == ACTIVE
    assert scheduler.store.registry().status["NEW-1"] == PROPOSED


def test_a_change_that_was_not_saved_leaves_the_kept_registry_as_stored(tmp_path):
    project, application = after_a_run(tmp_path)
    before = state(application.store.registry())
    unsaved = application.store.registry()
    unsaved.approve_all("someone")  # never saved
    assert unsaved.status != before[0]
    assert state(application.store.registry()) == before == state(loaded(project))


def test_a_store_restored_under_a_running_process_is_read_again_not_written_over(tmp_path):
    """The store is put back to a backup while a process that runs again holds a later registry: the process
    notices that its registry's last event is not the stored one, and its next run builds on the store's."""
    project = Project(tmp_path)
    write_all(project, START)
    config = load_config(project.config)
    scheduler = build(config, create_tables=True)
    scheduler.run(run_settings(config))
    backup = tmp_path / "backup.sqlite"
    with sqlite3.connect(config.store.path) as live, sqlite3.connect(backup) as copy:
        live.backup(copy)
    project.write_system("B", [*START["B"], "LATER-1"])
    scheduler.run(run_settings(config))
    assert "LATER-1" in scheduler.store.registry().status
    with sqlite3.connect(backup) as copy, sqlite3.connect(config.store.path) as live:
        copy.backup(live)  # restored: the store has never seen LATER-1
    assert state(scheduler.store.registry()) == state(loaded(project))
    assert "LATER-1" not in scheduler.store.registry().status
    project.write_system("B", START["B"])
    scheduler.run(run_settings(config))
    assert state(scheduler.store.registry()) == state(loaded(project))
    assert "LATER-1" not in loaded(project).status


def test_what_the_latest_sighting_saw_survives_a_snapshot():
    store = KeySyncStore()  # in memory, a snapshot every 20 registry events
    for i in range(25):
        registry = store.registry()
        found = out_of_authority_table([[k, k, "B", k] for k in ("X-1", f"X-{2 + i % 2}")])
        registry.decide_run(f"r{i}", found, set(), set("ABCDE"), auto_approve=False, actor="me")
        store.save(registry)
    assert store.snapshots is not None and list(store.snapshots.get(REGISTRY_ID))
    loaded = store.repository.get(REGISTRY_ID)
    assert (loaded.seen, loaded.seen_by) == ({"X-1": None, "X-2": None}, "r24")


def test_a_change_to_the_saved_registry_after_its_save_is_not_taken_for_the_stored_one(tmp_path):
    project, application = after_a_run(tmp_path)
    saved = application.store.registry()
    proposed = sorted(m for m, s in saved.status.items() if s == PROPOSED)
    saved.approve(proposed[:1], "someone")
    application.store.save(saved)  # kept as it is, not copied
    saved.approve(proposed[1:2], "someone")  # changed afterwards, and never saved
    stored = application.store.registry()
    assert (stored.status[proposed[0]], stored.status[proposed[1]]) == (ACTIVE, PROPOSED)
    assert state(stored) == state(loaded(project))

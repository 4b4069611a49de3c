"""A run seals the events it stored as it stored them, not by reading them back; whatever another process stored
meanwhile is read from the log. Either way the seal is the one a reading of the whole log makes."""

from __future__ import annotations

from keysync.application.audit_chain import logged_events, stored_events
from keysync.application.bootstrap import build
from keysync.application.store import logged_event
from keysync.domain.run import ReconciliationRun
from keysync.infrastructure.config import load_config


def new_run(n: int) -> ReconciliationRun:
    return ReconciliationRun(run_id=f"run-{n}", mode="full", options={}, actor="tester")


def from_the_log(store, after: int) -> list:
    return [logged_event(n) for n in stored_events(store.recorder, after, store.recorder.max_notification_id())]


def test_the_events_a_process_stored_are_sealed_as_stored_and_the_rest_as_read(any_project):
    config = load_config(any_project.config)
    one, other = build(config, create_tables=True).store, build(config).store
    runs = [new_run(n) for n in range(5)]
    other.save(runs[0])
    one.save(runs[1])
    one.save(runs[2])
    kept = one.stored_run
    assert kept is not None and [e.originator_id for e in kept.events] == [str(runs[1].id), str(runs[2].id)]
    last = one.recorder.max_notification_id()
    assert logged_events(one, 0, last) == from_the_log(one, 0)  # the other's event read, one's own kept
    assert logged_events(one, kept.events[0].id, last) == from_the_log(one, kept.events[0].id)

    other.save(runs[3])  # stored after one's: one's kept events no longer reach the end of the log
    assert logged_events(one, 0, one.recorder.max_notification_id()) == from_the_log(one, 0)
    one.save(runs[4])  # and one's next save starts over after the other's event
    assert one.stored_run is not None and [e.originator_id for e in one.stored_run.events] == [str(runs[4].id)]
    assert logged_events(one, 0, one.recorder.max_notification_id()) == from_the_log(one, 0)


def test_a_kept_event_is_hashed_as_stored(project):
    """Were the kept hash not the stored bytes' hash, a run's seal would not verify: keysync audit verify reads
    the log and recomputes it."""
    store = build(load_config(project.config), create_tables=True).store
    store.save(new_run(1))
    assert store.stored_run is not None and store.stored_run.events == from_the_log(store, 0)

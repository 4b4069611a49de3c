"""Time travel through the log: the read models and the reports as they stood at an earlier moment.

A moment is a time (every event stamped at or before it) or the end of a run (every event up to its Completed or
Failed event, with the registry decisions saved together with it). The replay folds those events into
in-memory read models with the functions the live projections use (``apply_registry_event``,
``apply_run_event``, ``audit_row``), and the reports are rendered from them into a folder of their own. The live
read models and reports are neither read nor written.

The latest completed run's reconciliation is recomputed from its observations with the current normalization
rules, as ``keysync rebuild`` does. A full replay decodes every event up to the moment, so it costs about what
a rebuild costs; the registry alone decodes only the registry's events.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from eventsourcing.persistence import Notification
from eventsourcing.utils import get_topic

from keysync.domain.registry import Registry
from keysync.domain.run import ReconciliationRun
from keysync.projections.audit import audit_row
from keysync.projections.registry_view import RegistryRows, apply_registry_event
from keysync.projections.run_history import apply_run_event

if TYPE_CHECKING:
    from keysync.projections.runner import Projections

PAGE = 20  # notifications per read when observation batches are among them (large)
SMALL_PAGE = 500  # when only small events are selected


def _event_classes(aggregate: type) -> list[type]:
    return [c for c in vars(aggregate).values() if isinstance(c, type) and issubclass(c, aggregate.Event)]  # type: ignore[attr-defined]


REGISTRY_TOPICS = tuple(sorted(get_topic(c) for c in _event_classes(Registry)))
STARTED = get_topic(ReconciliationRun.Started)
ENDED = (get_topic(ReconciliationRun.Completed), get_topic(ReconciliationRun.Failed))
CREATED = get_topic(Registry.Created)


class UnfinishedRun(Exception):
    """The run has no end in the log yet: it is in progress, or was interrupted and not resumed."""


@attrs.frozen
class Moment:
    """How far to replay: the events stamped at or before ``time``, or those up to notification ``last_event``
    (a run's end). ``label`` names the moment in folder names and messages."""

    label: str
    time: datetime | None = None
    last_event: int | None = None


@attrs.define
class Replay:
    """The read models as they stood at a moment."""

    registry: RegistryRows = attrs.Factory(RegistryRows)
    runs: dict[str, dict[str, Any]] = attrs.Factory(dict)  # run originator id -> row
    audit: list[dict[str, Any]] = attrs.Factory(list)  # in log order

    def registry_rows(self, status: str | None = None) -> list[dict[str, str]]:
        """By master key, like the live registry view."""
        return self.registry.resolved(status).to_pylist()

    def run_rows(self) -> list[dict[str, Any]]:
        """Newest first, like the live run history."""
        return sorted(self.runs.values(), key=lambda row: row["started_at"], reverse=True)


@attrs.frozen
class AsOfReports:
    moment: Moment
    output_dir: Path
    reports: list[Path]
    registry_rows: list[dict[str, str]]
    latest_run_id: str | None  # the latest run completed at that moment, whose reconciliation the reports show


def run_end(projections: Projections, run_id: str) -> int | None:
    """The notification id where run ``run_id`` ends in the log, None if the log has no such run.

    The end is the run's Completed or Failed event, or the last of the registry events saved in the same
    transaction after it (stores written by the first version saved the run before the registry). Raises
    UnfinishedRun for a run that has neither yet. Only the runs' small Started/Completed/Failed events are read.
    """
    store = projections.store
    originator = None
    end = None
    for notification in _notifications(projections, topics=(STARTED, *ENDED), page=SMALL_PAGE):
        if originator is None:
            if notification.topic == STARTED and store.mapper.to_domain_event(notification).run_id == run_id:
                originator = notification.originator_id
        elif notification.originator_id == originator and notification.topic in ENDED:
            end = notification.id
            break
    if originator is None:
        return None
    if end is None:
        raise UnfinishedRun(run_id)
    for notification in _notifications(projections, start=end, page=PAGE):
        if notification.topic not in REGISTRY_TOPICS:
            break
        event = store.mapper.to_domain_event(notification)
        if notification.topic != CREATED and getattr(event, "run_id", "") != run_id:
            break
        end = notification.id
    return end


def replay(projections: Projections, moment: Moment, *, registry_only: bool = False) -> Replay:
    """Fold the events up to ``moment`` into in-memory read models. ``registry_only`` reads and decodes the
    registry's events alone (the run history and audit stay empty)."""
    state = Replay()
    last = projections.store.recorder.max_notification_id() or 0
    if moment.last_event is not None:
        last = min(last, moment.last_event)
    topics = REGISTRY_TOPICS if registry_only else ()
    for notification in _notifications(projections, stop=last, topics=topics, page=SMALL_PAGE if topics else PAGE):
        event = projections.store.mapper.to_domain_event(notification)
        if moment.time is not None and event.timestamp > moment.time:
            continue
        if isinstance(event, Registry.Event):
            apply_registry_event(state.registry, event)
            run_id = getattr(event, "run_id", "")
        else:
            key = str(event.originator_id)
            if key in state.runs or isinstance(event, ReconciliationRun.Started):
                apply_run_event(state.runs, event)
            run_id = state.runs[key]["run_id"] if key in state.runs else ""
        if not registry_only:
            state.audit.append(audit_row(notification.id, run_id, event))
    return state


def render_as_of(projections: Projections, moment: Moment, output_dir: Path) -> AsOfReports:
    """Replay up to ``moment`` and write every report, as it stood then, into ``output_dir``."""
    state = replay(projections, moment)
    registry = state.registry.resolved()
    runs = state.run_rows()
    reports = projections.render(output_dir, registry, state.audit, runs)
    latest = next((run["run_id"] for run in runs if run["status"] == "completed"), None)
    return AsOfReports(moment, output_dir, reports, registry.to_pylist(), latest)


def _notifications(
    projections: Projections, start: int = 0, stop: int | None = None, topics: Sequence[str] = (), page: int = PAGE
) -> Iterator[Notification]:
    """Stored events after position ``start`` up to ``stop`` (inclusive; None: the end), in order, only those of
    ``topics`` if given, still encoded."""
    recorder = projections.store.recorder
    position = start
    while stop is None or position < stop:
        found = recorder.select_notifications(
            start=position, limit=page, stop=stop, topics=topics, inclusive_of_start=False
        )
        if not found:
            return
        yield from found
        position = found[-1].id

"""Looking back through the event log: the audit trail and one key's timeline across runs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from keysync.domain.columns import Column, text_array, unpack_text
from keysync.domain.normalization import NormalizationRules, normalize_key, normalize_keys, rows_normalized_to
from keysync.domain.observations import SYSTEMS
from keysync.domain.registry import Registry

if TYPE_CHECKING:
    from keysync.projections.runner import Projections


@attrs.frozen
class AuditFilter:
    run_id: str | None = None
    key: str | None = None
    since: datetime | None = None
    event_type: str | None = None


def event_types() -> list[str]:
    """Every event type the log can hold, by the name audit shows."""
    from eventsourcing.domain import DomainEvent

    from keysync.domain.audit_chain import AuditChain
    from keysync.domain.registry import Registry
    from keysync.domain.run import ReconciliationRun
    from keysync.domain.sandbox import Sandbox

    return sorted(
        {
            name
            for aggregate in (ReconciliationRun, Registry, Sandbox, AuditChain)
            for name, value in vars(aggregate).items()
            if isinstance(value, type) and issubclass(value, DomainEvent) and name != "Event"
        }
    )


def audit_events(projections: Projections, rules: NormalizationRules, chosen: AuditFilter) -> Iterator[dict]:
    """Replay the event log in order and yield the matching events, summarised."""
    from keysync.projections.audit import audit_row

    projections.update_views()
    run_ids = {r["originator_id"]: r["run_id"] for r in projections.recorder.runs()}
    wanted_key = normalize_key(chosen.key, rules) if chosen.key else None
    last = projections.store.recorder.max_notification_id() or 0
    for event_id, event in projections.events(0, last):
        run_id = (
            getattr(event, "run_id", "")
            if isinstance(event, Registry.Event)
            else run_ids.get(str(event.originator_id), "")
        )
        if chosen.run_id and run_id != chosen.run_id:
            continue
        if chosen.event_type and type(event).__name__.lower() != chosen.event_type.lower():
            continue
        if chosen.since and event.timestamp < chosen.since:
            continue
        if wanted_key is not None and not _mentions(event, wanted_key, rules):
            continue
        yield audit_row(event_id, run_id, event)


def _mentions(event: Any, key: str, rules: NormalizationRules) -> bool:
    name = type(event).__name__
    if name in ("KeysObserved", "RowsAdded"):
        return len(_rows_holding(event.keys, key, rules)) > 0
    if name == "MasterKeysProposed":
        return any(key in (entry[0], entry[1]) for entry in event.entries)
    if name == "MasterKeysSeen":
        return any(key == entry[0] for entry in event.entries)
    if name in ("MasterKeysActivated", "MasterKeysDeprecated"):
        return key in event.master_keys
    return False


def _rows_holding(keys: Column, wanted: str, rules: NormalizationRules) -> np.ndarray:
    """The rows whose key normalizes to ``wanted``: through Arrow, with no Python string per row."""
    try:
        array = text_array(keys)
    except UnicodeEncodeError:  # a lone surrogate (from a JSON escape): not text Arrow holds
        normalized = normalize_keys(unpack_text(keys), rules)
        return np.array([i for i, k in enumerate(normalized) if k == wanted], dtype=np.int64)
    return rows_normalized_to(array, wanted, rules)


@attrs.frozen
class Sighting:
    run_id: str
    at: str
    system: str
    change: str  # appeared | vanished | seen
    last_seen_at: str = ""


def key_timeline(projections: Projections, rules: NormalizationRules, key: str) -> dict[str, Any]:
    """Where one key was seen run after run, when it appeared or vanished in each system, and its registry
    transitions."""
    projections.update_views()
    wanted = normalize_key(key, rules)
    runs = [r for r in reversed(projections.recorder.runs()) if r["status"] == "completed"]
    present: dict[str, bool] = dict.fromkeys(SYSTEMS, False)
    sightings: list[Sighting] = []
    for run in runs:
        snapshots, _unavailable = projections.store.run_snapshots(run["originator_id"])
        for system in SYSTEMS:
            snapshot = snapshots.get(system)
            if snapshot is None:
                continue  # an unavailable system says nothing about the key
            rows = _rows_holding(snapshot.keys, wanted, rules).tolist()
            seen = max((snapshot.last_seen_at[i] for i in rows), default="")
            if rows and not present[system]:
                sightings.append(Sighting(run["run_id"], run["finished_at"], system, "appeared", seen))
            elif not rows and present[system]:
                sightings.append(Sighting(run["run_id"], run["finished_at"], system, "vanished"))
            present[system] = bool(rows)
    registry = [
        row
        for row in audit_events(projections, rules, AuditFilter(key=wanted))
        if row["event_type"].startswith("MasterKeys")
    ]
    return {
        "key": key,
        "normalized_key": wanted,
        "present_in": [s for s, here in present.items() if here],
        "sightings": [attrs.asdict(s) for s in sightings],
        "registry": registry,
    }

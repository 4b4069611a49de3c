"""Looking back through the event log: the audit trail and one key's timeline across runs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

from keysync.application.key_events import PROPOSED, SEEN, meaning, rows_holding
from keysync.domain.normalization import NormalizationRules, normalize_key
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
        if wanted_key is None:
            yield audit_row(event_id, run_id, event)
            continue
        said = meaning(event, wanted_key, rules)
        if said is not None:
            # "for_key": what the event did to the key asked about (a batch's count says nothing of it).
            yield audit_row(event_id, run_id, event) | {"for_key": said}


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
            rows = rows_holding(snapshot.keys, wanted, rules).tolist()
            seen = max(snapshot.last_seen_at.to_numpy(zero_copy_only=False)[rows].tolist(), default="")
            if rows and not present[system]:
                sightings.append(Sighting(run["run_id"], run["finished_at"], system, "appeared", seen))
            elif not rows and present[system]:
                sightings.append(Sighting(run["run_id"], run["finished_at"], system, "vanished"))
            present[system] = bool(rows)
    events = list(audit_events(projections, rules, AuditFilter(key=wanted)))
    registry = [row for row in events if row["event_type"].startswith("MasterKeys")]
    master = _proposed_master(registry) or wanted
    row = next((r for r in projections.recorder.registry_rows() if r["master_key"] == master), None)
    return {
        "key": key,
        "normalized_key": wanted,
        "master_key": master if row else "",
        "status": row["status"] if row else "",
        "status_reason": row["status_reason"] if row else "",
        "last_seen_run_id": row["last_seen_run_id"] if row else "",  # the registry report no longer carries it
        "present_in": [s for s, here in present.items() if here],
        "sightings": [attrs.asdict(s) for s in sightings],
        "registry": registry,
        "timeline": _timeline(events, sightings),
    }


def _proposed_master(registry: list[dict[str, Any]]) -> str:
    """The master key a proposal made of the key (under the namespaced strategy it is not the key itself)."""
    for row in registry:
        said = row["for_key"]
        if said.startswith(PROPOSED):
            return said[len(PROPOSED) :].split(" (from ", 1)[0]
    return ""


def _timeline(events: list[dict[str, Any]], sightings: list[Sighting]) -> list[dict[str, str]]:
    """One line per thing that happened to the key, in time order: a run's sightings in several systems are one
    line ("seen in B, D"), an appearance or a vanishing is its own."""
    lines: list[dict[str, str]] = []
    for row in events:
        said, last = row["for_key"], lines[-1] if lines else None
        if (
            said.startswith(SEEN)
            and last is not None
            and last["run_id"] == row["run_id"]
            and last["what"].startswith(SEEN)
        ):
            systems = last["what"][len(SEEN) :].split(", ")
            last["what"] = SEEN + ", ".join(dict.fromkeys([*systems, said[len(SEEN) :]]))
            continue
        lines.append({"at": row["created_at"], "run_id": row["run_id"], "event_type": row["event_type"], "what": said})
    lines += [
        {
            "at": s.at,
            "run_id": s.run_id,
            "event_type": "",
            "what": f"{s.change} {'in' if s.change == 'appeared' else 'from'} {s.system}",
        }
        for s in sightings
    ]
    return sorted(lines, key=lambda line: line["at"])

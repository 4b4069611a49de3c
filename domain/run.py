"""A reconciliation run: what was read from each system, and how the run ended.

The raw rows live in the run's ``KeysObserved`` events, a batch of up to ``batch_size`` keys each, column-wise.
The aggregate itself keeps only counts: the keys are read back from the event log by the projections, so that a
change of normalization rules is a rebuild, not a re-import.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from eventsourcing.domain import Aggregate, event

from keysync.domain.columns import Column, pack_lines, pack_text, text_length, unpack_lines, unpack_text
from keysync.domain.observations import Fingerprint, RejectedRow, SourceSnapshot

RUNNING, COMPLETED, FAILED = "running", "completed", "failed"


class ReconciliationRun(Aggregate):
    @event("Started")
    def __init__(self, run_id: str, mode: str, options: dict[str, Any], actor: str) -> None:
        self.run_id = run_id
        self.mode = mode
        self.options = options
        self.actor = actor
        self.state = RUNNING
        self.observed: dict[str, int] = {}
        self.unavailable: dict[str, str] = {}
        self.kpis: dict[str, Any] = {}
        self.error = ""

    # Commands ------------------------------------------------------------------------------------------------

    def observe(self, snapshot: SourceSnapshot, batch_size: int) -> None:
        """Record one system's export: its file, its accepted rows in batches, its rejected rows."""
        fingerprint = snapshot.fingerprint
        self._read_source(
            snapshot.system,
            snapshot.file,
            snapshot.rows_read,
            None if fingerprint is None else [fingerprint.size, fingerprint.mtime_ns, fingerprint.sha256],
        )
        for start in range(0, len(snapshot), batch_size):
            stop = start + batch_size
            self._observe_keys(
                snapshot.system,
                pack_text(snapshot.keys[start:stop]),
                pack_text(snapshot.entity_types[start:stop]),
                pack_text(snapshot.location_refs[start:stop]),
                pack_text(snapshot.last_seen_at[start:stop]),
                pack_lines(snapshot.lines[start:stop]),
            )
        for start in range(0, len(snapshot.rejected), batch_size):
            rows = snapshot.rejected[start : start + batch_size]
            self._reject_rows(snapshot.system, [[r.line, r.severity, r.reason, r.raw] for r in rows])

    def mark_unavailable(self, system: str, file: str, reason: str) -> None:
        self._source_unavailable(system, file, reason)

    def complete(self, kpis: dict[str, Any]) -> None:
        self._complete(kpis)

    def fail(self, reason: str) -> None:
        if self.state == RUNNING:
            self._fail(reason)

    # Events ----------------------------------------------------------------------------------------------------

    @event("SourceRead")
    def _read_source(self, system: str, file: str, rows_read: int, fingerprint: list[Any] | None) -> None:
        self.observed[system] = 0

    @event("KeysObserved")
    def _observe_keys(
        self,
        system: str,
        keys: Column,
        entity_types: Column,
        location_refs: Column,
        last_seen_at: Column,
        lines: list[Any],
    ) -> None:
        self.observed[system] += text_length(keys)

    @event("RowsRejected")
    def _reject_rows(self, system: str, rows: list[list[Any]]) -> None:
        pass

    @event("SourceUnavailable")
    def _source_unavailable(self, system: str, file: str, reason: str) -> None:
        self.unavailable[system] = reason

    @event("Completed")
    def _complete(self, kpis: dict[str, Any]) -> None:
        self.state = COMPLETED
        self.kpis = kpis

    @event("Failed")
    def _fail(self, reason: str) -> None:
        self.state = FAILED
        self.error = reason


def snapshots_from_events(events: Iterable[Any]) -> tuple[dict[str, SourceSnapshot], dict[str, str]]:
    """Rebuild each system's SourceSnapshot, and the unavailable systems' reasons, from a run's events."""
    snapshots: dict[str, SourceSnapshot] = {}
    unavailable: dict[str, str] = {}
    for e in events:
        name = type(e).__name__
        if name == "SourceRead":
            fp = Fingerprint(*e.fingerprint) if e.fingerprint else None
            snapshots[e.system] = SourceSnapshot(e.system, e.file, e.rows_read, [], [], [], [], [], [], fp)
        elif name == "KeysObserved":
            s = snapshots[e.system]
            s.keys.extend(unpack_text(e.keys))
            s.entity_types.extend(unpack_text(e.entity_types))
            s.location_refs.extend(unpack_text(e.location_refs))
            s.last_seen_at.extend(unpack_text(e.last_seen_at))
            s.lines.extend(unpack_lines(e.lines))
        elif name == "RowsRejected":
            s = snapshots[e.system]
            s.rejected.extend(RejectedRow(e.system, s.file, *row) for row in e.rows)
        elif name == "SourceUnavailable":
            unavailable[e.system] = e.reason
    return snapshots, unavailable

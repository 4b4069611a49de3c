"""A reconciliation run: what was read from each system, and how the run ended.

The raw rows live in the run's ``RowsObserved`` events, a batch of up to ``batch_size`` rows each, as an Arrow
table (earlier versions recorded ``KeysObserved``, the same columns as joined text; those are still read).
The aggregate itself keeps only counts: the keys are read back from the event log by the projections, so that a
change of normalization rules is a rebuild, not a re-import.

An incremental run records less. A system whose export is unchanged since an earlier run gets one
``SourceUnchanged`` naming the run that holds its rows (its ``base``). A changed one is recorded as its delta on
the rows its base holds, when it has one (keysync.domain.row_delta): ``SourceChanged`` (with every row's line
number), then ``RowsSpliced`` batches of the base's row positions removed and of the rows added with their
positions; else it is recorded whole. The system's rows are then its base's rows with the delta applied
(``spliced``). Runs of 0.1.0 recorded a delta as ``RowsRemoved`` and ``RowsAdded``, with the columns as joined
text: those are still read. Either way ``snapshots_from_events`` asks for the base's snapshot.

A resumed run may find that a system it recorded before the interruption has changed since: it records
``SourceSuperseded`` and then records the system again. The log keeps both recordings; the newer one is the run's.
A suspect export (one whose valid rows fell too far, keysync.application.suspect) is held back: ``SourceHeldBack``
says what was read and why it was not taken, and names the run holding the system's last accepted rows, which
stand in for it in this run, as an unchanged export's do. It is a recording like the others: a resumed run may set
it aside too (its export changed, or the resumed run takes it as it is), and the system is then no longer suspect
unless its new recording holds it back again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from eventsourcing.domain import Aggregate, event

from keysync.domain.observations import Fingerprint, RejectedRow, SourceSnapshot, row_schema

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from keysync.domain.columns import Column
    from keysync.domain.row_delta import RowDelta

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
        self.held_back: dict[str, str] = {}  # system -> why its export was held back
        self.stand_ins: dict[str, dict[str, Any]] = {}  # held-back system -> its last accepted export
        self.kpis: dict[str, Any] = {}
        self.error = ""

    # Commands ------------------------------------------------------------------------------------------------

    def observe(self, snapshot: SourceSnapshot, batch_size: int) -> None:
        """Record one system's export: its file, its accepted rows in batches, its rejected rows."""
        self._read_source(snapshot.system, snapshot.file, snapshot.rows_read, _listed(snapshot.fingerprint))
        for start in range(0, len(snapshot), batch_size):
            self._observe_rows(snapshot.system, snapshot.rows.slice(start, batch_size))
        self._record_rejected(snapshot, batch_size)

    def observe_changes(
        self, snapshot: SourceSnapshot, base: str, depth: int, delta: RowDelta, batch_size: int
    ) -> None:
        """Record one system's export as ``delta`` on the rows run ``base`` (an originator id) holds for it, which
        are ``depth - 1`` deltas on rows recorded whole; then its rejected rows."""
        import pyarrow as pa

        from keysync.domain.columns import pack_lines

        lines = pack_lines(snapshot.lines.to_numpy(zero_copy_only=False))
        fingerprint = _listed(snapshot.fingerprint)
        self._source_changed(snapshot.system, snapshot.file, snapshot.rows_read, fingerprint, base, depth,
                             len(snapshot), lines)  # fmt: skip
        added = snapshot.rows.take(pa.array(delta.added_at))
        for start in range(0, max(len(delta.removed), len(delta.added_at)), batch_size):
            removed = pa.table({"row": delta.removed[start : start + batch_size]})
            at = pa.array(delta.added_at[start : start + batch_size], pa.int64())
            rows = added.slice(start, batch_size)
            self._splice_rows(snapshot.system, removed, rows.append_column("at", at))
        self._record_rejected(snapshot, batch_size)

    def observe_unchanged(
        self, system: str, file: str, fingerprint: Fingerprint, base: str, depth: int, rows: int
    ) -> None:
        """Record that a system's export is the one whose rows run ``base`` (an originator id) holds."""
        self._source_unchanged(system, file, _listed(fingerprint), base, depth, rows)

    def _record_rejected(self, snapshot: SourceSnapshot, batch_size: int) -> None:
        for start in range(0, len(snapshot.rejected), batch_size):
            rows = snapshot.rejected[start : start + batch_size]
            self._reject_rows(snapshot.system, [[r.line, r.severity, r.reason, r.raw] for r in rows])

    def hold_back(self, snapshot: SourceSnapshot, reason: str, accepted: dict[str, Any]) -> None:
        """Record that a system's export was read and held back (``reason``): the rows of its last accepted export,
        which ``accepted`` describes (its ``holder`` holds them), stand in for it in this run."""
        self._source_held_back(
            snapshot.system, snapshot.file, snapshot.rows_read, len(snapshot), _listed(snapshot.fingerprint), reason,
            accepted,
        )  # fmt: skip

    def mark_unavailable(self, system: str, file: str, reason: str) -> None:
        self._source_unavailable(system, file, reason)

    def supersede(self, system: str, file: str, why: str) -> None:
        """Set aside what this run recorded of ``system`` (``why``: its export changed since, say), to record it
        again; the event keeps the reason it had been unavailable or held back, if it was."""
        self._source_superseded(
            system, file, why, self.unavailable.get(system, ""), held_back=self.held_back.get(system, "")
        )

    def complete(self, kpis: dict[str, Any]) -> None:
        self._complete(kpis)

    def fail(self, reason: str) -> None:
        if self.state == RUNNING:
            self._fail(reason)

    # Events ----------------------------------------------------------------------------------------------------

    @event("SourceRead")
    def _read_source(self, system: str, file: str, rows_read: int, fingerprint: list[Any] | None) -> None:
        self._set_aside(system)
        self.observed[system] = 0

    @event("RowsObserved")
    def _observe_rows(self, system: str, rows: pa.Table) -> None:
        self.observed[system] += rows.num_rows

    # KeysObserved (the same columns, as text joined by line breaks) was recorded by earlier versions.
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
        from keysync.domain.columns import text_length  # numpy and pyarrow: loaded only if old events are read

        self.observed[system] += text_length(keys)

    @event("SourceUnchanged")
    def _source_unchanged(
        self, system: str, file: str, fingerprint: list[Any], base: str, depth: int, rows: int
    ) -> None:
        self._set_aside(system)
        self.observed[system] = rows

    @event("SourceChanged")
    def _source_changed(
        self,
        system: str,
        file: str,
        rows_read: int,
        fingerprint: list[Any] | None,
        base: str,
        depth: int,
        rows: int,
        lines: list[Any],
    ) -> None:
        self._set_aside(system)
        self.observed[system] = rows

    @event("RowsSpliced")
    def _splice_rows(self, system: str, removed: pa.Table, added: pa.Table) -> None:
        pass

    # RowsRemoved and RowsAdded (a delta's rows as lists and joined text) were recorded by 0.1.0: kept so that
    # its runs still load.
    @event("RowsRemoved")
    def _remove_rows(self, system: str, rows: list[Any]) -> None:
        pass

    @event("RowsAdded")
    def _add_rows(
        self,
        system: str,
        at: list[Any],
        keys: Column,
        entity_types: Column,
        location_refs: Column,
        last_seen_at: Column,
    ) -> None:
        pass

    @event("RowsRejected")
    def _reject_rows(self, system: str, rows: list[list[Any]]) -> None:
        pass

    @event("SourceHeldBack")
    def _source_held_back(
        self,
        system: str,
        file: str,
        rows_read: int,
        rows: int,
        fingerprint: list[Any] | None,
        reason: str,
        accepted: dict[str, Any],
    ) -> None:
        self._set_aside(system)
        self.observed[system] = accepted["rows"]
        self.held_back[system] = reason
        self.stand_ins[system] = accepted

    @event("SourceUnavailable")
    def _source_unavailable(self, system: str, file: str, reason: str) -> None:
        self._set_aside(system)
        self.unavailable[system] = reason

    @event("SourceSuperseded")
    def _source_superseded(self, system: str, file: str, why: str, unavailable: str, held_back: str = "") -> None:
        self._set_aside(system)

    def _set_aside(self, system: str) -> None:
        """Forget the system's older recording in this run: a newer one (or none yet, when superseded) is the
        run's."""
        for recorded in (self.observed, self.unavailable, self.held_back, self.stand_ins):
            recorded.pop(system, None)  # type: ignore[attr-defined]

    @event("Completed")
    def _complete(self, kpis: dict[str, Any]) -> None:
        self.state = COMPLETED
        self.kpis = kpis

    @event("Failed")
    def _fail(self, reason: str) -> None:
        self.state = FAILED
        self.error = reason


# The events that begin a system's recording in a run, and the one that sets a recording aside.
Run = ReconciliationRun
RECORDINGS = (
    Run.SourceRead, Run.SourceChanged, Run.SourceUnchanged, Run.SourceUnavailable, Run.SourceHeldBack,
    Run.SourceSuperseded,
)  # fmt: skip
MAX_DEPTH = 3  # deltas on a whole recording, at most: reading a system's rows back applies each of them
ROW_FIELDS = ("keys", "entity_types", "location_refs", "last_seen_at")  # a row's values, as old events name them
BaseSnapshot = Callable[[str, str], SourceSnapshot]  # (run originator id, system) -> that run's rows of the system


def snapshots_from_events(
    events: Iterable[Any], base_snapshot: BaseSnapshot | None = None, only: str = ""
) -> tuple[dict[str, SourceSnapshot], dict[str, str]]:
    """Rebuild each system's SourceSnapshot (or ``only`` that system's), and the unavailable systems' reasons,
    from a run's events. An incremental run's unchanged or changed systems need their base run's rows:
    ``base_snapshot`` gives them."""
    from keysync.domain.columns import line_array, unpack_lines

    snapshots: dict[str, SourceSnapshot] = {}
    batches: dict[str, list[pa.Table]] = {}  # system -> its rows, batch by batch
    unavailable: dict[str, str] = {}
    deltas: dict[str, tuple[Any, list[Any], list[pa.Table]]] = {}  # system -> (SourceChanged, removed, added)
    for e in events:
        if only and getattr(e, "system", only) != only:
            continue
        if isinstance(e, RECORDINGS):  # a system's newer recording (after a resume) sets aside its older one
            snapshots.pop(e.system, None)
            batches.pop(e.system, None)
            unavailable.pop(e.system, None)
            deltas.pop(e.system, None)
        match e:
            case Run.SourceRead():
                fp = Fingerprint(*e.fingerprint) if e.fingerprint else None
                snapshots[e.system] = SourceSnapshot(e.system, e.file, e.rows_read, _no_rows(), [], fp)
                batches[e.system] = []
            case Run.RowsObserved():
                batches[e.system].append(e.rows)
            case Run.KeysObserved():
                batches[e.system].append(_keys_observed(e))
            case Run.RowsRejected():
                s = snapshots[e.system]
                s.rejected.extend(RejectedRow(e.system, s.file, *row) for row in e.rows)
            case Run.SourceUnavailable():
                unavailable[e.system] = e.reason
            case Run.SourceUnchanged():
                snapshots[e.system] = _based_on(e.system, e.base, base_snapshot, e.fingerprint)
            case Run.SourceHeldBack():
                snapshots[e.system] = _based_on(e.system, e.accepted["holder"], base_snapshot)
            case Run.SourceChanged():
                fp = Fingerprint(*e.fingerprint) if e.fingerprint else None
                snapshots[e.system] = SourceSnapshot(e.system, e.file, e.rows_read, _no_rows(), [], fp)
                deltas[e.system] = (e, [], [])
            case Run.RowsSpliced():
                deltas[e.system][1].append(e.removed.column("row"))
                deltas[e.system][2].append(e.added)
            case Run.RowsRemoved():
                deltas[e.system][1].append(unpack_lines(e.rows))
            case Run.RowsAdded():
                deltas[e.system][2].append(_rows_added(e))
    import pyarrow as pa

    for system, tables in batches.items():
        if system in snapshots and tables:
            snapshots[system] = attrs.evolve(snapshots[system], rows=pa.concat_tables(tables))
    for system, (changed, removed, added) in deltas.items():
        base = _based_on(system, changed.base, base_snapshot)
        rows = spliced(base.rows, removed, added, line_array(changed.lines))
        if rows is None:
            raise ValueError(f"System {system}'s rows in run {changed.base} and their delta do not fit together")
        snapshots[system] = attrs.evolve(snapshots[system], rows=rows)
    return snapshots, unavailable


def _no_rows() -> pa.Table:
    return row_schema().empty_table()


def _rows_added(e: Any) -> pa.Table:
    """A 0.1.0 RowsAdded (positions as runs, columns as joined text) as a RowsSpliced table of added rows."""
    import pyarrow as pa

    from keysync.domain.columns import text_array, unpack_lines

    columns = [text_array(getattr(e, field)).cast(pa.string()) for field in ROW_FIELDS]
    at = pa.array(unpack_lines(e.at), pa.int64())
    return pa.table([*columns, pa.nulls(len(at), pa.int64()), at], names=[*row_schema().names, "at"])


def spliced(base: pa.Table, removed: Sequence[Any], added: Sequence[pa.Table], lines: Sequence[int]) -> pa.Table | None:
    """``base``'s rows without those at the ``removed`` positions, with the ``added`` rows (their column ``at``:
    where each stands in the result), and ``lines`` as their line numbers; None when the three do not fit together
    (a delta on other rows). Columnar: a take over the base and the added rows."""
    import numpy as np
    import pyarrow as pa

    gone = np.concatenate([np.asarray(r, dtype=np.int64) for r in removed]) if removed else np.zeros(0, np.int64)
    new = pa.concat_tables(added) if added else row_schema().empty_table().append_column("at", pa.array([], pa.int64()))
    at = new.column("at").to_numpy().astype(np.int64)
    taken = _splice_order(base.num_rows, gone, at)
    if taken is None or len(lines) != len(taken):
        return None
    fields = list(row_schema().names[:-1])
    values = pa.concat_tables([base.select(fields), new.select(fields)]).take(pa.array(taken))
    return values.append_column("line", pa.array(np.asarray(lines, dtype=np.int64)))


def spliced_column(base: pa.Array, removed: np.ndarray, added: pa.Array, at: np.ndarray) -> pa.Array:
    """One column spliced as ``spliced`` splices rows: ``base`` without the ``removed`` positions, ``added`` at
    the ``at`` positions of the result (e.g. the normalized keys of rows spliced so)."""
    import pyarrow as pa

    taken = _splice_order(len(base), removed, at)
    if taken is None:
        raise ValueError("the delta does not fit the column")
    return pa.chunked_array([base, added], base.type).take(pa.array(taken)).combine_chunks()


def _splice_order(size: int, gone: np.ndarray, at: np.ndarray) -> np.ndarray | None:
    """Where each row of the result comes from: base rows by position, added rows after them (``size + i``); None
    when the positions do not fit."""
    import numpy as np

    total = size - len(gone) + len(at)
    if not (_distinct(gone, size) and _distinct(at, total)):
        return None
    placed = np.zeros(total, dtype=bool)
    placed[at] = True
    kept = np.ones(size, dtype=bool)
    kept[gone] = False
    taken = np.empty(total, dtype=np.int64)
    taken[~placed] = np.flatnonzero(kept)
    taken[at] = size + np.arange(len(at))
    return taken


def _keys_observed(e: Any) -> pa.Table:
    """An earlier version's batch of rows (its columns joined by line breaks) as a table of ROW_COLUMNS."""
    import pyarrow as pa

    from keysync.domain.columns import text_array, unpack_lines

    columns = [text_array(getattr(e, field)) for field in ROW_FIELDS]
    lines = pa.array(unpack_lines(e.lines), pa.int64())
    return pa.table([*(c.cast(pa.string()) for c in columns), lines], schema=row_schema())


def _based_on(system: str, base: str, base_snapshot: BaseSnapshot | None, fingerprint: Any = None) -> SourceSnapshot:
    if base_snapshot is None:
        raise ValueError(f"System {system}'s rows are those of run {base}, and no base was given")
    snapshot = base_snapshot(base, system)
    if fingerprint is not None:
        snapshot = attrs.evolve(snapshot, fingerprint=Fingerprint(*fingerprint))
    return snapshot


def _listed(fingerprint: Fingerprint | None) -> list[Any] | None:
    return None if fingerprint is None else [fingerprint.size, fingerprint.mtime_ns, fingerprint.sha256]


def _distinct(positions: Any, size: int) -> bool:
    """Whether ``positions`` are distinct positions among ``size``."""
    import numpy as np

    return not len(positions) or (
        positions.min() >= 0 and positions.max() < size and len(np.unique(positions)) == len(positions)
    )

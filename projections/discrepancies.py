"""The reports of what the latest reconciliation found open: keys missing in A, keys missing from a system,
duplicate keys and rejected rows, each row since the run that first found it. A million keys per system make
them large: they are built column by column in Arrow, and handed to the writer as whole columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import pyarrow as pa
import pyarrow.compute as pc

from keysync.domain.reconciliation import Reconciliation, SystemResult
from keysync.projections import first_detected as kinds
from keysync.projections.changes import Columns as ChangeColumns
from keysync.projections.first_detected import FirstDetected
from keysync.projections.reports import (
    COUNTS,
    DUPLICATE_COLUMNS,
    DUPLICATES,
    MISSING_FROM_SYSTEM,
    MISSING_FROM_SYSTEM_COLUMNS,
    MISSING_IN_A,
    MISSING_IN_A_COLUMNS,
    REGISTRY,
    REGISTRY_REPORT_COLUMNS,
    REJECTED,
    REJECTED_COLUMNS,
    SUMMARY,
    SUMMARY_COLUMNS,
    Builder,
    Columns,
    RunInfo,
    Writer,
    empty_columns,
    run_level_reports,
    summary_columns,
    write_all,
    writers_for,
)


def render_reports(
    output_dir: Path,
    write: Writer,
    run: RunInfo | None,
    recon: Reconciliation | None,
    registry_rows: pa.Table,
    audit_rows: Sequence[Mapping[str, Any]],
    runs: Sequence[Mapping[str, Any]] = (),
    changes: ChangeColumns | None = None,
    detected: RunInfo | None = None,
    first_detected: FirstDetected | None = None,
    writers: int = 0,
) -> list[Path]:
    """Write every report, ``writers`` at a time (0: as many as suit the run's size). Without a completed run the
    run-level reports hold only their header. ``runs`` are the run-history rows, newest first, for the trend
    report; ``changes`` the columns of changes_since_last_run.csv (keysync.projections.changes.change_columns),
    None for none. ``first_detected``:
    when each open discrepancy, duplicate and rejected line was first found, as it stands after ``run``; a row
    it does not hold names ``detected``, the run that computed ``recon`` (``run`` itself unless it carried
    ``recon`` over unchanged).

    Reports are built column by column: at a million keys per system that is several times faster than
    building rows, and the writer hands whole columns to pyarrow."""
    registry = {c: registry_rows[c] for c in REGISTRY_REPORT_COLUMNS}
    empty = {
        SUMMARY: SUMMARY_COLUMNS,
        MISSING_IN_A: MISSING_IN_A_COLUMNS,
        MISSING_FROM_SYSTEM: MISSING_FROM_SYSTEM_COLUMNS,
        DUPLICATES: DUPLICATE_COLUMNS,
        REJECTED: REJECTED_COLUMNS,
    }
    reports: dict[str, Builder] = {n: partial(empty_columns, c) for n, c in empty.items()}
    if run is not None and recon is not None:
        found = detected or run
        since = first_detected or FirstDetected()
        columns = _FirstDetectedColumns(since, (found.run_id, found.finished_at))
        counts = {s: system_counts(r, run.held_back.get(s, "")) for s, r in recon.systems.items()}
        reports[SUMMARY] = partial(summary_columns, run, counts)
        reports[MISSING_IN_A] = lambda: _missing_in_a(columns, recon, _Statuses.of(registry))
        reports[MISSING_FROM_SYSTEM] = partial(_missing_from_system, columns, recon)
        reports[DUPLICATES] = partial(_duplicates, columns, recon)
        reports[REJECTED] = partial(_rejected, columns, recon)
    reports.update({REGISTRY: registry, **run_level_reports(audit_rows, runs, changes)})
    return write_all(output_dir, write, reports, writers or writers_for(recon))


def system_counts(r: SystemResult, held_back: str = "") -> dict[str, Any]:
    """One system's line of the summary, as the run's KPIs also record it. ``held_back``: why the run held the
    system's export back (its counts are then those of the rows that stood in for it)."""
    if r.snapshot is None:
        return {"status": "unavailable", "status_reason": r.unavailable_reason}
    values = [
        r.snapshot.rows_read, r.rows_rejected, r.unique_keys, r.matched, r.missing_in_a.num_rows,
        r.missing_from_system.num_rows, r.duplicates.num_rows,
    ]  # fmt: skip
    status = {"status": "suspect", "status_reason": held_back} if held_back else {"status": "ok"}
    return {**status, **dict(zip(COUNTS, values, strict=True))}


@attrs.frozen
class _FirstDetectedColumns:
    since: FirstDetected
    shown: tuple[str, str]  # (run_id, at) of the run showing the reconciliation

    def add(self, out: _Parts, kind: str, system: str, identities: pa.ChunkedArray) -> None:
        run_ids, ats = self.since.columns(kind, system, identities, self.shown)
        out.add("first_detected_run_id", run_ids)
        out.add("first_detected_at", ats)


class _Parts:
    """A report's columns gathered system by system as Arrow arrays, handed to the writer as chunked arrays."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.parts: dict[str, list[pa.Array]] = {c: [] for c in columns}

    def add(self, column: str, values: pa.Array | pa.ChunkedArray) -> None:
        self.parts[column].extend(values.chunks if isinstance(values, pa.ChunkedArray) else [values])

    def repeat(self, column: str, value: str, count: int) -> None:
        self.parts[column].append(pa.repeat(pa.scalar(value, pa.string()), count))

    def columns(self) -> dict[str, Any]:
        return {c: pa.chunked_array(chunks) if chunks else [] for c, chunks in self.parts.items()}


@attrs.frozen
class _Statuses:
    """The registry's status of each master key, looked up in C."""

    master_keys: pa.Array
    statuses: pa.Array

    @classmethod
    def of(cls, registry: Columns) -> _Statuses:
        return cls(registry["master_key"].combine_chunks(), registry["status"].combine_chunks())

    def of_keys(self, masters: pa.ChunkedArray) -> pa.ChunkedArray:
        """Each master key's status; "" for one the registry does not hold."""
        return pc.fill_null(self.statuses.take(pc.index_in(masters, value_set=self.master_keys)), "")


def _missing_in_a(first: _FirstDetectedColumns, recon: Reconciliation, statuses: _Statuses) -> Columns:
    out = _Parts(MISSING_IN_A_COLUMNS)
    shown = [r for r in recon.downstream if r.snapshot is not None and r.missing_in_a.num_rows]
    masters = {
        r.system: keys if recon.strategy == "mirror" else pc.binary_join_element_wise(f"A-{r.system}-", keys, "")
        for r in shown
        for keys in [r.missing_in_a["normalized_key"]]
    }
    # Looked up at once: the registry's hash table is built once, not once per system.
    every = pa.chunked_array([chunk for m in masters.values() for chunk in m.chunks], pa.string())
    found, start = statuses.of_keys(every), 0
    for r in shown:
        table, n = r.missing_in_a, r.missing_in_a.num_rows
        keys = table["normalized_key"]
        first.add(out, kinds.MISSING_IN_A, r.system, keys)
        out.repeat("system", r.system, n)
        out.add("source_key", table["source_key"])
        out.add("normalized_key", keys)
        out.add("proposed_master_key", masters[r.system])
        out.repeat("strategy", recon.strategy, n)
        out.add("registry_status", found.slice(start, n))
        out.add("entity_type", table["entity_type"])
        out.add("last_seen_at", table["last_seen_at"])
        start += n
    return out.columns()


def _missing_from_system(first: _FirstDetectedColumns, recon: Reconciliation) -> Columns:
    out = _Parts(MISSING_FROM_SYSTEM_COLUMNS)
    for r in recon.downstream:
        table = r.missing_from_system
        if not table.num_rows:
            continue
        first.add(out, kinds.MISSING_FROM_SYSTEM, r.system, table["normalized_key"])
        out.repeat("system", r.system, table.num_rows)
        out.add("master_key", table["normalized_key"])
        out.add("source_key_in_A", table["source_key"])
        out.add("entity_type", table["entity_type"])
        out.add("last_seen_in_A", table["last_seen_at"])
    return out.columns()


def _duplicates(first: _FirstDetectedColumns, recon: Reconciliation) -> Columns:
    out = _Parts(DUPLICATE_COLUMNS)
    for r in recon.systems.values():
        table = r.duplicates
        if not table.num_rows:
            continue
        first.add(out, kinds.DUPLICATE, r.system, table["normalized_key"])
        out.repeat("system", r.system, table.num_rows)
        for column in ("normalized_key", "occurrences", "source_keys"):
            out.add(column, table[column])
    return out.columns()


def _rejected(first: _FirstDetectedColumns, recon: Reconciliation) -> Columns:
    out = empty_columns(REJECTED_COLUMNS)
    for r in recon.systems.values():
        raws = pa.array([row.raw for row in r.rejected], pa.string())
        run_ids, ats = first.since.columns(kinds.REJECTED, r.system, raws, first.shown)
        out["first_detected_run_id"] += run_ids.to_pylist()
        out["first_detected_at"] += ats.to_pylist()
        for row in r.rejected:
            for column, value in zip(
                REJECTED_COLUMNS[2:], [row.system, row.file, row.line, row.severity, row.reason, row.raw], strict=True
            ):
                out[column].append(value)
    return out

"""The reports: the seven CSV files of the contract, the trend report and the changes since the last run, rendered
from the read models and the latest run's reconciliation."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from operator import itemgetter
from pathlib import Path
from typing import Any

import attrs
import pyarrow as pa
import pyarrow.compute as pc

from keysync.domain.observations import SYSTEMS
from keysync.domain.reconciliation import Reconciliation, SystemResult
from keysync.projections import first_detected as kinds
from keysync.projections.changes import CHANGE_COLUMNS, CHANGES_REPORT
from keysync.projections.changes import Columns as ChangeColumns
from keysync.projections.first_detected import FirstDetected
from keysync.projections.trends import TREND_COLUMNS, TREND_REPORT, trend_rows
from keysync.projections.views import AUDIT_COLUMNS, REGISTRY_COLUMNS

SUMMARY = "reconciliation_summary.csv"
MISSING_IN_A = "diff_missing_in_A.csv"
MISSING_FROM_SYSTEM = "diff_missing_from_system.csv"
REGISTRY = "master_key_registry.csv"
AUDIT = "audit_log.csv"
DUPLICATES = "duplicate_keys.csv"
REJECTED = "rejected_rows.csv"
TREND = TREND_REPORT
CHANGES = CHANGES_REPORT
REPORTS = (SUMMARY, MISSING_IN_A, MISSING_FROM_SYSTEM, REGISTRY, AUDIT, DUPLICATES, REJECTED, TREND, CHANGES)

SUMMARY_COLUMNS = (
    "run_id", "generated_at", "mode", "system", "status", "rows_read", "rows_rejected", "unique_keys",
    "matched_in_A", "missing_in_A", "missing_from_system", "duplicate_keys", "match_rate", "status_reason",
)  # fmt: skip
# The rows of the four reports below are what is open, each since the run that first found it (first_detected_*):
# a row that stays open stays the same, byte for byte, however many runs find it again.
FIRST_DETECTED_COLUMNS = ("first_detected_run_id", "first_detected_at")
MISSING_IN_A_COLUMNS = (
    *FIRST_DETECTED_COLUMNS, "system", "source_key", "normalized_key", "proposed_master_key", "strategy",
    "registry_status", "entity_type", "last_seen_at",
)  # fmt: skip
MISSING_FROM_SYSTEM_COLUMNS = (
    *FIRST_DETECTED_COLUMNS, "system", "master_key", "source_key_in_A", "entity_type", "last_seen_in_A",
)  # fmt: skip
DUPLICATE_COLUMNS = (*FIRST_DETECTED_COLUMNS, "system", "normalized_key", "occurrences", "source_keys")
REJECTED_COLUMNS = (*FIRST_DETECTED_COLUMNS, "system", "file", "line", "severity", "reason", "raw")
# The registry's read model keeps when each master key was last seen (keysync key, registry list --json); the
# report leaves it out, since every run would rewrite it in nearly every row.
REGISTRY_REPORT_COLUMNS = tuple(c for c in REGISTRY_COLUMNS if c != "last_seen_run_id")

Columns = dict[str, Any]  # name -> a list of values or an Arrow array
ReportColumns = Mapping[str, Sequence[Any]]
Builder = Callable[[], ReportColumns]  # a report's columns, built when it is written
Writer = Callable[[Path, Mapping[str, Sequence[Any]]], Path]


@attrs.frozen
class RunInfo:
    """The run whose reconciliation the reports show."""

    run_id: str
    finished_at: str
    mode: str
    dry_run: bool = False
    held_back: Mapping[str, str] = attrs.field(factory=dict)  # system whose export was held back -> why


def render_reports(
    output_dir: Path,
    write: Writer,
    run: RunInfo | None,
    recon: Reconciliation | None,
    registry_rows: Sequence[Mapping[str, str]],
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
    registry = _columns(registry_rows, REGISTRY_REPORT_COLUMNS)
    empty = {
        SUMMARY: SUMMARY_COLUMNS,
        MISSING_IN_A: MISSING_IN_A_COLUMNS,
        MISSING_FROM_SYSTEM: MISSING_FROM_SYSTEM_COLUMNS,
        DUPLICATES: DUPLICATE_COLUMNS,
        REJECTED: REJECTED_COLUMNS,
    }
    reports: dict[str, Builder] = {n: partial(_empty, c) for n, c in empty.items()}
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


def _built(columns: ReportColumns | Builder) -> ReportColumns:
    return columns() if callable(columns) else columns


# The reports by size at a million keys per system, largest first, so that the last one to start is a small one.
_BY_SIZE = (CHANGES, MISSING_IN_A, MISSING_FROM_SYSTEM, REGISTRY, DUPLICATES, REJECTED, AUDIT, SUMMARY, TREND)
WRITERS = 3  # two cores' worth of Arrow work, and one more to overlap the files' syncing to disk
# Discrepancy rows from which a run writes its reports one at a time: each large report's columns take several
# times its rows' bytes while it is built, so overlapping them would double or triple the run's peak memory.
LARGE = 2_000_000


def writers_for(recon: Reconciliation | None) -> int:
    """How many reports to write at once: WRITERS, or one for a large run."""
    if recon is None:
        return WRITERS
    totals = recon.totals()
    return 1 if totals["missing_in_A_count"] + totals["missing_from_system_count"] >= LARGE else WRITERS


def write_all(
    output_dir: Path, write: Writer, reports: Mapping[str, ReportColumns | Builder], writers: int = WRITERS
) -> list[Path]:
    """Build and write each of ``reports`` (name -> its columns, or their builder) on ``writers`` threads: the work
    is in Arrow and in syncing the files to disk, both outside the GIL, so the large reports overlap. Every report
    is attempted; the first failure is raised once all are done. Returns the paths in REPORTS order."""
    names = [n for n in _BY_SIZE if n in reports] + [n for n in reports if n not in _BY_SIZE]

    def written(name: str) -> Path:
        return write(output_dir / name, _built(reports[name]))

    with ThreadPoolExecutor(max_workers=max(1, min(writers, len(names)))) as pool:
        paths = dict(zip(names, pool.map(written, names), strict=True))
    return [paths[name] for name in REPORTS if name in paths]


def run_level_reports(
    audit_rows: Sequence[Mapping[str, Any]], runs: Sequence[Mapping[str, Any]], changes: ChangeColumns | None
) -> dict[str, Mapping[str, Sequence[Any]]]:
    """The audit log, the trend report and the changes since the last run."""
    trend = trend_rows(runs)
    return {
        AUDIT: _columns(audit_rows, AUDIT_COLUMNS),
        TREND: {c: [row[i] for row in trend] for i, c in enumerate(TREND_COLUMNS)},
        CHANGES: changes if changes is not None else _empty(CHANGE_COLUMNS),
    }


COUNTS = (
    "rows_read", "rows_rejected", "unique_keys", "matched_in_A", "missing_in_A", "missing_from_system",
    "duplicate_keys",
)  # fmt: skip


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


def _columns(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Columns:
    """Rows (mappings) as columns, each gathered in C."""
    return {c: list(map(itemgetter(c), rows)) for c in columns}


def _empty(columns: Sequence[str]) -> Columns:
    return {c: [] for c in columns}


def summary_columns(run: RunInfo, systems: Mapping[str, Mapping[str, Any]]) -> Columns:
    """reconciliation_summary.csv from each system's counts (``system_counts``, or a run's KPIs, which hold the
    same): the match rate is computed from the counts, so both give the same text. A suspect system's counts
    are those of the rows that stood in for its export; ``status_reason`` says why a system was suspect or
    unavailable."""
    out = _empty(SUMMARY_COLUMNS)
    mode = f"{run.mode} (dry-run)" if run.dry_run else run.mode
    for system in SYSTEMS:
        counts = systems[system]
        status, reason = counts["status"], counts.get("status_reason", "")
        if status not in ("ok", "suspect"):
            values = [run.run_id, run.finished_at, mode, system, "unavailable", *[""] * 8, reason]
        else:
            union = counts["unique_keys"] + counts["missing_from_system"]
            rate = counts["matched_in_A"] / union if union else 1.0
            numbers = [counts[c] for c in COUNTS]
            values = [run.run_id, run.finished_at, mode, system, status, *numbers, f"{rate:.4f}", reason]
        for column, value in zip(SUMMARY_COLUMNS, values, strict=True):
            out[column].append(value)
    return out


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
        return cls(pa.array(registry["master_key"], pa.string()), pa.array(registry["status"], pa.string()))

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
    out = _empty(REJECTED_COLUMNS)
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

"""The reports: the seven CSV files of the contract, the trend report and the changes since the last run, rendered
from the read models and the latest run's reconciliation.

Here: their names and columns, the run-level reports (the summary, the audit log, the trends and the changes) and
the writing of them all. The reports of what a reconciliation found open are built in Arrow by
keysync.projections.discrepancies, which a run that carries its reconciliation over never imports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from keysync.domain.observations import SYSTEMS
from keysync.projections.trends import TREND_COLUMNS, TREND_REPORT, trend_rows
from keysync.projections.views import AUDIT_COLUMNS, REGISTRY_COLUMNS

if TYPE_CHECKING:
    from keysync.domain.reconciliation import Reconciliation
    from keysync.projections.changes import Columns as ChangeColumns

SUMMARY = "reconciliation_summary.csv"
MISSING_IN_A = "diff_missing_in_A.csv"
MISSING_FROM_SYSTEM = "diff_missing_from_system.csv"
REGISTRY = "master_key_registry.csv"
AUDIT = "audit_log.csv"
DUPLICATES = "duplicate_keys.csv"
REJECTED = "rejected_rows.csv"
TREND = TREND_REPORT
CHANGES = "changes_since_last_run.csv"
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
CHANGE_COLUMNS = ("run_id", "system", "change", "key", "detail")  # keysync.projections.changes
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
        AUDIT: row_columns(audit_rows, AUDIT_COLUMNS),
        TREND: {c: [row[i] for row in trend] for i, c in enumerate(TREND_COLUMNS)},
        CHANGES: changes if changes is not None else empty_columns(CHANGE_COLUMNS),
    }


COUNTS = (
    "rows_read", "rows_rejected", "unique_keys", "matched_in_A", "missing_in_A", "missing_from_system",
    "duplicate_keys",
)  # fmt: skip


def row_columns(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Columns:
    """Rows (mappings) as columns, each gathered in C."""
    return {c: list(map(itemgetter(c), rows)) for c in columns}


def empty_columns(columns: Sequence[str]) -> Columns:
    return {c: [] for c in columns}


def summary_columns(run: RunInfo, systems: Mapping[str, Mapping[str, Any]]) -> Columns:
    """reconciliation_summary.csv from each system's counts (``system_counts``, or a run's KPIs, which hold the
    same): the match rate is computed from the counts, so both give the same text. A suspect system's counts
    are those of the rows that stood in for its export; ``status_reason`` says why a system was suspect or
    unavailable."""
    out = empty_columns(SUMMARY_COLUMNS)
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

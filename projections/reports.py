"""The seven CSV reports, rendered from the read models and the latest run's reconciliation."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from keysync.domain.observations import AUTHORITY, SYSTEMS
from keysync.domain.reconciliation import Reconciliation, master_key_for
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
REPORTS = (SUMMARY, MISSING_IN_A, MISSING_FROM_SYSTEM, REGISTRY, AUDIT, DUPLICATES, REJECTED, TREND)

SUMMARY_COLUMNS = (
    "run_id", "generated_at", "mode", "system", "status", "rows_read", "rows_rejected", "unique_keys",
    "matched_in_A", "missing_in_A", "missing_from_system", "duplicate_keys", "match_rate",
)  # fmt: skip
MISSING_IN_A_COLUMNS = (
    "run_id", "detected_at", "system", "source_key", "normalized_key", "proposed_master_key", "strategy",
    "registry_status", "entity_type", "last_seen_at",
)  # fmt: skip
MISSING_FROM_SYSTEM_COLUMNS = (
    "run_id", "detected_at", "system", "master_key", "source_key_in_A", "entity_type", "last_seen_in_A",
)  # fmt: skip
DUPLICATE_COLUMNS = ("run_id", "system", "normalized_key", "occurrences", "source_keys")
REJECTED_COLUMNS = ("run_id", "system", "file", "line", "severity", "reason", "raw")

Writer = Callable[[Path, Sequence[str], Any], Path]


@attrs.frozen
class RunInfo:
    """The run whose reconciliation the reports show."""

    run_id: str
    finished_at: str
    mode: str
    dry_run: bool = False


def render_reports(
    output_dir: Path,
    write: Writer,
    run: RunInfo | None,
    recon: Reconciliation | None,
    registry_rows: Sequence[Mapping[str, str]],
    audit_rows: Sequence[Mapping[str, Any]],
    runs: Sequence[Mapping[str, Any]] = (),
) -> list[Path]:
    """Write every report. Without a completed run the run-level reports hold only their header.
    ``runs`` are the run-history rows, newest first, for the trend report."""
    statuses = {row["master_key"]: row["status"] for row in registry_rows}
    written = []
    run_reports: dict[str, tuple[Sequence[str], Callable[[], Iterator[Sequence[Any]]]]] = {
        SUMMARY: (SUMMARY_COLUMNS, lambda: _summary(run, recon)),
        MISSING_IN_A: (MISSING_IN_A_COLUMNS, lambda: _missing_in_a(run, recon, statuses)),
        MISSING_FROM_SYSTEM: (MISSING_FROM_SYSTEM_COLUMNS, lambda: _missing_from_system(run, recon)),
        DUPLICATES: (DUPLICATE_COLUMNS, lambda: _duplicates(run, recon)),
        REJECTED: (REJECTED_COLUMNS, lambda: _rejected(run, recon)),
    }
    for name, (header, rows) in run_reports.items():
        written.append(write(output_dir / name, header, rows() if run and recon else iter(())))
    written.append(
        write(
            output_dir / REGISTRY,
            REGISTRY_COLUMNS,
            ([row[c] for c in REGISTRY_COLUMNS] for row in registry_rows),
        )
    )
    written.append(write(output_dir / AUDIT, AUDIT_COLUMNS, ([row[c] for c in AUDIT_COLUMNS] for row in audit_rows)))
    written.append(write(output_dir / TREND, TREND_COLUMNS, trend_rows(runs)))
    return written


def _summary(run: Any, recon: Any) -> Iterator[Sequence[Any]]:
    mode = f"{run.mode} (dry-run)" if run.dry_run else run.mode
    for system in SYSTEMS:
        r = recon.systems[system]
        if not r.available:
            yield [run.run_id, run.finished_at, mode, system, "unavailable", *[""] * 8]
            continue
        yield [
            run.run_id, run.finished_at, mode, system, "ok", r.snapshot.rows_read, r.rows_rejected,
            r.unique_keys, r.matched, len(r.missing_in_a), len(r.missing_from_system), len(r.duplicates),
            f"{r.match_rate:.4f}",
        ]  # fmt: skip


def _missing_in_a(run: Any, recon: Reconciliation, statuses: Mapping[str, str]) -> Iterator[Sequence[Any]]:
    for r in recon.downstream:
        for key in r.missing_in_a:
            master = master_key_for(r.system, key, recon.strategy)
            yield [
                run.run_id, run.finished_at, r.system, r.source_key(key), key, master, recon.strategy,
                statuses.get(master, ""), r.entity_type(key), r.last_seen_at(key),
            ]  # fmt: skip


def _missing_from_system(run: Any, recon: Reconciliation) -> Iterator[Sequence[Any]]:
    authority = recon.systems[AUTHORITY]
    for r in recon.downstream:
        for key in r.missing_from_system:
            yield [
                run.run_id, run.finished_at, r.system, key, authority.source_key(key),
                authority.entity_type(key), authority.last_seen_at(key),
            ]  # fmt: skip


def _duplicates(run: Any, recon: Reconciliation) -> Iterator[Sequence[Any]]:
    for r in recon.systems.values():
        for d in r.duplicates:
            yield [run.run_id, r.system, d.normalized_key, d.occurrences, "|".join(d.source_keys)]


def _rejected(run: Any, recon: Reconciliation) -> Iterator[Sequence[Any]]:
    for r in recon.systems.values():
        for row in r.rejected:
            yield [run.run_id, row.system, row.file, row.line, row.severity, row.reason, row.raw]

"""The read models' tables, kept in the event store's own database beside eventsourcing's tracking table.

A projection writes its rows and its position (a Tracking record) in one transaction, so a crash can never leave
a read model half-applied: it resumes from the position it recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.sqlite import SQLiteCursor, SQLiteTrackingRecorder

REGISTRY_COLUMNS = (
    "master_key",
    "source_systems",
    "source_key",
    "status",
    "created_at",
    "updated_at",
    "created_run_id",
    "last_seen_run_id",
    "status_reason",
)
RUN_COLUMNS = (
    "run_id",
    "originator_id",
    "started_at",
    "finished_at",
    "status",
    "mode",
    "duration_s",
    "errors",
    "kpis",
    "as_of",
)
AUDIT_COLUMNS = ("event_id", "run_id", "event_type", "payload", "created_at")


class ViewRecorder(SQLiteTrackingRecorder):
    """Tracking plus the registry, run-history and audit tables."""

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            "CREATE TABLE IF NOT EXISTS registry_view ("
            + ", ".join(f"{c} TEXT" for c in REGISTRY_COLUMNS)
            + ", PRIMARY KEY (master_key)) WITHOUT ROWID",
            "CREATE TABLE IF NOT EXISTS run_history ("
            "run_id TEXT PRIMARY KEY, originator_id TEXT, started_at TEXT, finished_at TEXT, status TEXT, "
            "mode TEXT, duration_s REAL, errors TEXT, kpis TEXT, as_of TEXT)",
            "CREATE TABLE IF NOT EXISTS audit_view ("
            "event_id INTEGER PRIMARY KEY, run_id TEXT, event_type TEXT, payload TEXT, created_at TEXT)",
        ]

    @contextmanager
    def writing(self, name: str, position: int) -> Iterator[SQLiteCursor]:
        """A transaction that also records ``position`` as projection ``name``'s new position."""
        with self.datastore.transaction(commit=True) as cursor:
            yield cursor
            if position > (self._max_tracking_id(name, cursor) or 0):
                self._insert_tracking(cursor, Tracking(name, position))

    def position(self, name: str) -> int:
        return self.max_tracking_id(name) or 0

    def reset(self, *names: str) -> None:
        """Forget the read models and the named positions, for a rebuild from the log."""
        with self.datastore.transaction(commit=True) as c:
            for table in ("registry_view", "run_history", "audit_view"):
                c.execute(f"DELETE FROM {table}")
            for name in names:
                c.execute("DELETE FROM tracking WHERE application_name = ?", (name,))

    # Reads ---------------------------------------------------------------------------------------------------

    def registry_rows(self, status: str | None = None) -> list[dict[str, str]]:
        query = f"SELECT {', '.join(REGISTRY_COLUMNS)} FROM registry_view"
        params: tuple[str, ...] = ()
        if status:
            query += " WHERE status = ?"
            params = (status,)
        return self._select(query + " ORDER BY master_key", params)

    def registry_statuses(self) -> dict[str, str]:
        return {
            row["master_key"]: row["status"] for row in self._select("SELECT master_key, status FROM registry_view", ())
        }

    def runs(self, limit: int | None = None) -> list[dict[str, Any]]:
        query = f"SELECT {', '.join(RUN_COLUMNS)} FROM run_history ORDER BY started_at DESC, rowid DESC"
        return self._select(query + (f" LIMIT {int(limit)}" if limit else ""), ())

    def latest_completed_run(self) -> dict[str, Any] | None:
        rows = [r for r in self.runs() if r["status"] == "completed"]
        return rows[0] if rows else None

    def run_id_of(self, originator_id: str) -> str:
        rows = self._select("SELECT run_id FROM run_history WHERE originator_id = ?", (originator_id,))
        return rows[0]["run_id"] if rows else ""

    def audit_rows(self) -> list[dict[str, Any]]:
        return self._select(f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit_view ORDER BY event_id", ())

    def _select(self, query: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(query, params)
            return [dict(row) for row in c.fetchall()]

"""The read models' tables, kept in the event store's own database beside eventsourcing's tracking table.

A projection writes its rows and its position (a Tracking record) in one transaction, so a crash can never leave
a read model half-applied: it resumes from the position it recorded. The same tables exist on SQLite and on
PostgreSQL; only the SQL dialect differs.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.sqlite import SQLiteTrackingRecorder

from keysync.projections.registry_view import (
    LAST_SEEN,
    REGISTRY_COLUMNS,
    SEEN_BY_LATEST,
    RegistryRows,
    registry_table,
    row_batches,
)

if TYPE_CHECKING:
    import pyarrow as pa

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
TABLES = ("registry_view", "run_history", "audit_view")
KEY_OF = {"registry_view": "master_key", "run_history": "run_id", "audit_view": "event_id"}
COLUMNS_OF = {"registry_view": REGISTRY_COLUMNS, "run_history": RUN_COLUMNS, "audit_view": AUDIT_COLUMNS}
# The open discrepancies, duplicates and rejected lines (keysync.projections.first_detected): one row per kind,
# system and the run that first found them, their identities packed into one text (a run opens 100,000s at once),
# and one row with an empty kind naming the run they stand after and the rules they were read under.
FIRST_DETECTED = "first_detected"
FIRST_DETECTED_COLUMNS = ("kind", "system", "run_id", "detected_at", "identities")
Opened = tuple[str, str, str, str, "pa.Array"]  # kind, system, run_id, detected_at, identities (strings)
# The latest rendered run's keys (keysync.projections.changes.RunKeys), for the next process's change report: one
# row per part (System A's keys, a downstream system's discrepancies of one kind), the keys packed into one text,
# and one row with an empty part naming the run and the rules the keys were normalized under.
RUN_KEYS = "run_keys"
RUN_KEYS_COLUMNS = ("part", "system", "run_id", "keys")
Part = tuple[str, str, "pa.Array"]  # part, system, keys (strings)
# The registry's latest sighting (keysync.projections.registry_view.RegistryRows): one row, the run whose id the
# registry rows marked SEEN_BY_LATEST stand for, and whether rows are marked ("1") or hold run ids ("").
REGISTRY_SIGHTING = "registry_sighting"
REGISTRY_SIGHTING_COLUMNS = ("run_id", "marked")
# The registry view's rows again, packed in one text (zstd Arrow IPC, base64), with the views' position they stand
# at: the next process loads them in one read, not a Python object per value. Moved on with every update of the
# views; at another position (a process of an earlier version moved the views) the rows are read from the table.
REGISTRY_COPY = "registry_copy"
REGISTRY_COPY_COLUMNS = ("position", "rows")


def columns_sql(table: str, integer_key: bool = False) -> str:
    columns = ", ".join(
        f"{c} {'BIGINT' if c == 'event_id' and integer_key else 'DOUBLE PRECISION' if c == 'duration_s' else 'TEXT'}"
        for c in COLUMNS_OF[table]
    )
    return f"{columns}, PRIMARY KEY ({KEY_OF[table]})"


class Views:
    """What the projections need of a database, whichever it is. Subclasses supply the dialect."""

    placeholder = "?"

    def qualified(self, table: str) -> str:
        return table

    def upsert_sql(self, table: str) -> str:
        raise NotImplementedError

    def save_views(
        self,
        name: str,
        position: int,
        registry_rows: pa.Table | None,
        run_rows: Sequence[Sequence[Any]],
        audit_rows: Sequence[Sequence[Any]],
        seen: Mapping[str, Sequence[str]] | None = None,
        sighting: tuple[str, bool] | None = None,
        registry: pa.Table | None = None,
    ) -> bool:
        """Write changed rows (``registry_rows``: a table of them, by master key) and move projection ``name`` to
        ``position``, in one transaction. ``seen``: a
        last_seen_run_id value -> the master keys whose only change is that value (one statement each);
        ``sighting``: the registry's latest sighting and whether rows are marked, when it changed; ``registry``:
        every registry row as the view now holds them, when any changed (kept packed beside it). Returns False,
        having written nothing, when another process had already moved the projection that far: its rows are at
        least as new as these."""
        self._create_side_tables()
        try:
            with self.datastore.transaction(commit=True) as c:  # type: ignore[attr-defined]
                self.claim_write(c)
                if position <= (self._max_tracking_id(name, c) or 0):  # type: ignore[attr-defined]
                    return False
                if registry_rows is not None and registry_rows.num_rows:
                    self.upsert_registry(c, registry_rows)
                for table, rows in zip(TABLES[1:], (run_rows, audit_rows), strict=True):
                    if rows:
                        c.executemany(self.upsert_sql(table), rows)
                for run_id, masters in (seen or {}).items():
                    c.execute(self.seen_sql(), (run_id, self.key_list(masters)))
                p = self.placeholder
                if sighting is not None:
                    table = self.qualified(REGISTRY_SIGHTING)
                    c.execute(f"DELETE FROM {table}")
                    c.execute(f"INSERT INTO {table} VALUES ({p}, {p})", (sighting[0], "1" if sighting[1] else ""))
                copy = self.qualified(REGISTRY_COPY)
                if registry is not None:
                    c.execute(f"DELETE FROM {copy}")
                    c.execute(f"INSERT INTO {copy} VALUES ({p}, {p})", (str(position), _pack_table(registry)))
                else:
                    c.execute(f"UPDATE {copy} SET position = {p}", (str(position),))
                # Refused (IntegrityError) if another process committed this position meanwhile.
                self._insert_tracking(c, Tracking(name, position))  # type: ignore[attr-defined]
        except IntegrityError:
            return False
        return True

    def upsert_registry(self, cursor: Any, rows: pa.Table) -> None:
        """Insert or replace these registry view rows (a table of REGISTRY_COLUMNS), in batches."""
        for batch in row_batches(rows):
            cursor.executemany(self.upsert_sql("registry_view"), batch)

    # First detections ------------------------------------------------------------------------------------------

    def first_detected(self) -> tuple[str, str, list[Opened]] | None:
        """The stored first detections: the run they stand after, the rules they were read under, and what each
        run still open opened; None when none are stored."""
        self._create_side_tables()
        columns = ", ".join(FIRST_DETECTED_COLUMNS)
        rows = self._select(f"SELECT {columns} FROM {self.qualified(FIRST_DETECTED)}", ())
        basis = next((row for row in rows if row["kind"] == ""), None)
        if basis is None:
            return None
        found = [
            (row["kind"], row["system"], row["run_id"], row["detected_at"], _unpack(row["identities"]))
            for row in rows
            if row["kind"] != ""
        ]
        return basis["run_id"], basis["identities"], found

    def save_first_detected(
        self,
        since: tuple[str, str] | None,
        basis: tuple[str, str],
        groups: Iterable[tuple[str, str]],
        rows: Iterable[Opened],
    ) -> bool:
        """Move the stored first detections from ``since`` (run_id, rules; None: replace whatever is stored) to
        ``basis``, replacing the rows of ``groups`` (kind, system) by ``rows``. Returns False, having written
        nothing, when what is stored no longer stands after ``since`` (another process moved it)."""
        self._create_side_tables()
        table, p = self.qualified(FIRST_DETECTED), self.placeholder
        with self.datastore.transaction(commit=True) as c:  # type: ignore[attr-defined]
            self.claim_write(c)
            if since is not None:
                c.execute(f"SELECT run_id, identities FROM {table} WHERE kind = {p}", ("",))
                stored = c.fetchone()
                if stored is None or (stored["run_id"], stored["identities"]) != since:
                    return False
                c.executemany(f"DELETE FROM {table} WHERE kind = {p} AND system = {p}", [("", ""), *groups])
            else:
                c.execute(f"DELETE FROM {table}")
            values = [(*row[:4], _pack(row[4])) for row in rows]
            values.append(("", "", basis[0], "", basis[1]))
            c.executemany(f"INSERT INTO {table} VALUES ({', '.join([p] * len(FIRST_DETECTED_COLUMNS))})", values)
        return True

    def _create_side_tables(self) -> None:
        # Created on first use: a store written before these tables existed gets them without `store init`.
        if getattr(self, "_side_tables_ready", False):
            return
        with self.datastore.transaction(commit=True) as c:  # type: ignore[attr-defined]
            for table, names in (
                (FIRST_DETECTED, FIRST_DETECTED_COLUMNS),
                (RUN_KEYS, RUN_KEYS_COLUMNS),
                (REGISTRY_SIGHTING, REGISTRY_SIGHTING_COLUMNS),
                (REGISTRY_COPY, REGISTRY_COPY_COLUMNS),
            ):
                columns = ", ".join(f"{name} TEXT" for name in names)
                c.execute(f"CREATE TABLE IF NOT EXISTS {self.qualified(table)} ({columns})")
        self._side_tables_ready = True

    # The latest run's keys -------------------------------------------------------------------------------------

    def run_keys(self) -> tuple[str, str, list[Part]] | None:
        """The stored run keys: the run they are of, the rules they were normalized under, and their parts; None
        when none are stored."""
        self._create_side_tables()
        rows = self._select(f"SELECT {', '.join(RUN_KEYS_COLUMNS)} FROM {self.qualified(RUN_KEYS)}", ())
        basis = next((row for row in rows if row["part"] == ""), None)
        if basis is None:
            return None
        parts = [(row["part"], row["system"], _unpack(row["keys"])) for row in rows if row["part"] != ""]
        return basis["run_id"], basis["keys"], parts

    def save_run_keys(self, run_id: str, rules: str, parts: Iterable[Part]) -> None:
        """Replace the stored run keys by ``run_id``'s, normalized under ``rules``."""
        self._create_side_tables()
        table, p = self.qualified(RUN_KEYS), self.placeholder
        values = [(part, system, run_id, _pack(keys)) for part, system, keys in parts]
        values.append(("", "", run_id, rules))
        with self.datastore.transaction(commit=True) as c:  # type: ignore[attr-defined]
            self.claim_write(c)
            c.execute(f"DELETE FROM {table}")
            c.executemany(f"INSERT INTO {table} VALUES ({', '.join([p] * len(RUN_KEYS_COLUMNS))})", values)

    def seen_sql(self) -> str:
        """Set last_seen_run_id (first parameter) on the registry rows whose master keys ``key_list`` gives."""
        raise NotImplementedError

    def key_list(self, keys: Sequence[str]) -> Any:
        return list(keys)

    def claim_write(self, cursor: Any) -> None:
        """Take the database's write lock before reading, where reading first would make a concurrent writer's
        commit fail this transaction instead of waiting for it."""

    def position(self, name: str) -> int:
        return self.max_tracking_id(name) or 0  # type: ignore[attr-defined]

    def reset(self, *names: str) -> None:
        """Forget the read models and the named positions, for a rebuild from the log."""
        self._create_side_tables()
        with self.datastore.transaction(commit=True) as c:  # type: ignore[attr-defined]
            for table in (*TABLES, FIRST_DETECTED, RUN_KEYS, REGISTRY_SIGHTING, REGISTRY_COPY):
                c.execute(f"DELETE FROM {self.qualified(table)}")
            for name in names:
                c.execute(self.forget_position_sql(), (name,))

    def forget_position_sql(self) -> str:
        raise NotImplementedError

    def size_bytes(self) -> int:
        raise NotImplementedError

    # Reads ---------------------------------------------------------------------------------------------------

    def registry_rows(self, status: str | None = None) -> list[dict[str, str]]:
        """The registry view by master key, each row's last_seen_run_id resolved (a mark stands for the latest
        sighting)."""
        self._create_side_tables()
        sighting = f"(SELECT run_id FROM {self.qualified(REGISTRY_SIGHTING)})"
        columns = ", ".join(
            f"CASE WHEN {c} = '{SEEN_BY_LATEST}' THEN {sighting} ELSE {c} END AS {c}" if c == LAST_SEEN else c
            for c in REGISTRY_COLUMNS
        )
        query = f"SELECT {columns} FROM {self.qualified('registry_view')}"
        params: tuple[str, ...] = ()
        if status:
            query += f" WHERE status = {self.placeholder}"
            params = (status,)
        return self._select(query + " ORDER BY master_key", params)

    def registry_state(self, position: int | None = None) -> RegistryRows:
        """The registry view as stored (marks unresolved) with its latest sighting, for folding events into: from
        its packed copy if that stands at ``position`` (the views' position), else from the table."""
        self._create_side_tables()
        copied = []
        if position is not None:  # the copy is only read when it can be used
            copied = self._select(f"SELECT position, rows FROM {self.qualified(REGISTRY_COPY)}", ())
        if copied and copied[0]["position"] == str(position):
            table = _unpack_table(copied[0]["rows"])
        else:
            query = f"SELECT {', '.join(REGISTRY_COLUMNS)} FROM {self.qualified('registry_view')}"
            table = self._select_table(query)
        found = self._select(f"SELECT run_id, marked FROM {self.qualified(REGISTRY_SIGHTING)}", ())
        if found:
            return RegistryRows(table, found[0]["run_id"], found[0]["marked"] == "1")
        if not table.num_rows:
            return RegistryRows(table)
        # Folded by a version before sightings were kept: every row holds the run that last saw it, and the latest
        # sighting is the latest of those runs.
        started = {run["run_id"]: run["started_at"] for run in self.runs()}
        last_seen = set(table[LAST_SEEN].unique().to_pylist())
        latest = max(last_seen, key=lambda run_id: started.get(run_id, ""), default="")
        return RegistryRows(table, latest, marked=False)

    def _select_table(self, query: str, batch: int = 50_000) -> pa.Table:
        """A query's rows (of REGISTRY_COLUMNS) as a table, fetched ``batch`` at a time: no Python object per value
        of every row at once."""
        import pyarrow as pa

        parts = []
        with self.datastore.transaction(commit=False) as c:  # type: ignore[attr-defined]
            c.execute(query, ())
            fetch = getattr(c, "fetchmany", None) or c.sqlite_cursor.fetchmany  # eventsourcing's SQLite cursor has none
            while rows := fetch(batch):
                parts.append(registry_table([tuple(row.values() if isinstance(row, dict) else row) for row in rows]))
        return pa.concat_tables(parts).combine_chunks() if parts else registry_table()

    def runs(self, limit: int | None = None) -> list[dict[str, Any]]:
        query = f"SELECT {', '.join(RUN_COLUMNS)} FROM {self.qualified('run_history')} ORDER BY started_at DESC"
        return self._select(query + (f" LIMIT {int(limit)}" if limit else ""), ())

    def latest_completed_run(self) -> dict[str, Any] | None:
        rows = [r for r in self.runs() if r["status"] == "completed"]
        return rows[0] if rows else None

    def audit_rows(self) -> list[dict[str, Any]]:
        return self._select(
            f"SELECT {', '.join(AUDIT_COLUMNS)} FROM {self.qualified('audit_view')} ORDER BY event_id", ()
        )

    def _select(self, query: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        with self.datastore.transaction(commit=False) as c:  # type: ignore[attr-defined]
            c.execute(query, params)
            return [dict(row) for row in c.fetchall()]


def _pack(identities: pa.Array | pa.ChunkedArray) -> str:
    """Identities as one text: "z" and the base64 of a zstd-compressed Arrow IPC stream. A run stores millions at
    once: compressed, sorted keys take a fifth of their text, and no Python string is made per key or for them all
    (joined text of 10M keys would be copied several times on its way into the database). (pyarrow is imported
    here and in ``_unpack``, by the tables of keys only: the run history and the audit need none of it.)"""
    import pyarrow as pa

    column = (pa.chunked_array([identities]) if isinstance(identities, pa.Array) else identities).cast(pa.string())
    return _pack_table(pa.Table.from_arrays([column], names=["identity"]))


def _pack_table(table: pa.Table) -> str:
    """A table as one text: "z" and the base64 of a zstd-compressed Arrow IPC stream."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema, options=ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write_table(table)
    return "z" + base64.b64encode(sink.getvalue()).decode("ascii")


def _unpack_table(text: str) -> pa.Table:
    import pyarrow as pa
    import pyarrow.ipc as ipc

    return ipc.open_stream(pa.py_buffer(base64.b64decode(text[1:]))).read_all()


def _unpack(text: str) -> pa.Array:
    import pyarrow as pa

    if text[0] == "z":
        column = _unpack_table(text).column(0)
        return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    # Stored by earlier versions: the identities joined by line breaks ("t"), or a JSON list ("j").
    from keysync.domain.columns import text_array

    return text_array(text[1:]).cast(pa.string()) if text[0] == "t" else pa.array(json.loads(text[1:]), pa.string())


class ViewRecorder(Views, SQLiteTrackingRecorder):
    """Tracking plus the registry, run-history and audit tables, in the SQLite store's file."""

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            *(f"CREATE TABLE IF NOT EXISTS {t} ({columns_sql(t, integer_key=True)})" for t in TABLES),
        ]

    def upsert_sql(self, table: str) -> str:
        return f"INSERT OR REPLACE INTO {table} VALUES ({', '.join('?' * len(COLUMNS_OF[table]))})"

    def seen_sql(self) -> str:
        return "UPDATE registry_view SET last_seen_run_id = ? WHERE master_key IN (SELECT value FROM json_each(?))"

    def key_list(self, keys: Sequence[str]) -> Any:
        return json.dumps(list(keys))  # one parameter, unpacked by SQLite's json_each

    def claim_write(self, cursor: Any) -> None:
        # SQLite: a transaction that has read and then writes after another connection committed is refused at
        # once ("database is locked"); one that writes first waits for the lock (the busy timeout), then reads.
        cursor.execute("UPDATE tracking SET notification_id = notification_id WHERE 0")

    def forget_position_sql(self) -> str:
        return "DELETE FROM tracking WHERE application_name = ?"

    def size_bytes(self) -> int:
        rows = self._select("SELECT page_count * page_size AS size FROM pragma_page_count(), pragma_page_size()", ())
        return int(rows[0]["size"])

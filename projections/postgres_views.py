"""The read models' tables on PostgreSQL (imported only when the store is PostgreSQL: psycopg loads slowly)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventsourcing.postgres import PostgresTrackingRecorder
from psycopg.sql import SQL

from keysync.projections.views import COLUMNS_OF, KEY_OF, REGISTRY_COLUMNS, TABLES, Views, columns_sql

if TYPE_CHECKING:
    import pyarrow as pa

COPIED = 1_000  # registry rows from which an upsert goes through COPY: one round trip, not one per row


class PostgresViewRecorder(Views, PostgresTrackingRecorder):
    """The same tables in the PostgreSQL store's schema."""

    placeholder = "%s"

    def __init__(self, datastore: Any, **kwargs: Any):
        super().__init__(datastore, **kwargs)
        for table in TABLES:
            self.sql_create_statements.append(
                SQL(f"CREATE TABLE IF NOT EXISTS {self.qualified(table)} ({columns_sql(table, integer_key=True)})")  # type: ignore[arg-type]
            )

    def qualified(self, table: str) -> str:
        return f'"{self.datastore.schema}".{table}'

    def upsert_sql(self, table: str) -> str:
        columns = COLUMNS_OF[table]
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != KEY_OF[table])
        return (
            f"INSERT INTO {self.qualified(table)} VALUES ({', '.join(['%s'] * len(columns))}) "
            f"ON CONFLICT ({KEY_OF[table]}) DO UPDATE SET {updates}"
        )

    def upsert_registry(self, cursor: Any, rows: pa.Table) -> None:
        """Many rows are copied as CSV written by pyarrow (COPY: one stream, no Python object per value): straight
        into the view when it is empty (a first run, a rebuild), else into a temporary table, then upserted from it
        in one statement."""
        if rows.num_rows < COPIED:
            super().upsert_registry(cursor, rows)
            return
        import pyarrow as pa
        import pyarrow.csv as csv

        columns = ", ".join(REGISTRY_COLUMNS)
        text = pa.BufferOutputStream()
        csv.write_csv(rows.select(list(REGISTRY_COLUMNS)), text, csv.WriteOptions(include_header=False))
        cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {self.qualified('registry_view')}) AS filled")
        if not cursor.fetchone()["filled"]:
            with cursor.copy(f"COPY {self.qualified('registry_view')} ({columns}) FROM STDIN (FORMAT csv)") as copy:
                copy.write(text.getvalue())
            return
        cursor.execute(f"CREATE TEMPORARY TABLE registry_rows ({columns_sql('registry_view')}) ON COMMIT DROP")
        with cursor.copy(f"COPY registry_rows ({columns}) FROM STDIN (FORMAT csv)") as copy:
            copy.write(text.getvalue())
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in REGISTRY_COLUMNS if c != "master_key")
        cursor.execute(
            f"INSERT INTO {self.qualified('registry_view')} ({columns}) SELECT {columns} FROM registry_rows "
            f"ON CONFLICT (master_key) DO UPDATE SET {updates}"
        )

    def seen_sql(self) -> str:
        return f"UPDATE {self.qualified('registry_view')} SET last_seen_run_id = %s WHERE master_key = ANY(%s)"

    def forget_position_sql(self) -> str:
        return f'DELETE FROM "{self.datastore.schema}".{self.tracking_table_name} WHERE application_name = %s'

    def size_bytes(self) -> int:
        rows = self._select(
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) AS size FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
            (self.datastore.schema,),
        )
        return int(rows[0]["size"])

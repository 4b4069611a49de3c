"""Pointing KeySync at a shared PostgreSQL database: eventsourcing's PostgreSQL store, from a DSN.

The DSN never carries a password (the config refuses one): libpq takes it from PGPASSWORD or ~/.pgpass.
An optional ``?schema=NAME`` keeps KeySync's tables in their own schema (the tests give each test one).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import attrs
import psycopg
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import get_topic
from psycopg.sql import SQL, Identifier, Literal

from keysync.application.ports import RunInProgress, StoreUnavailable

# A schema name KeySync will put in SQL: quoted there, and plain, so no quoting can go wrong.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


@attrs.frozen
class PostgresTarget:
    host: str
    port: str
    dbname: str
    user: str
    schema: str = "public"

    @classmethod
    def from_dsn(cls, dsn: str) -> PostgresTarget:
        parts = urlsplit(dsn)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError(f"store.dsn must look like postgresql://user@host:5432/dbname, not {_redacted(dsn)!r}")
        query = parse_qs(parts.query)
        schema = query.get("schema", ["public"])[0]
        if not _IDENTIFIER.fullmatch(schema):
            raise ValueError(
                f"store.dsn: schema {schema!r} is not a plain identifier (letters, digits and _, not first a digit, "
                "at most 63)"
            )
        return cls(
            host=parts.hostname or "localhost",
            port=str(parts.port or 5432),
            dbname=unquote(parts.path.lstrip("/")) or "keysync",
            user=unquote(parts.username or "") or os.environ.get("PGUSER", "") or _os_user(),
            schema=schema,
        )

    def env(self, *, create_tables: bool) -> dict[str, str]:
        """eventsourcing's settings. Tables are created only where asked (``keysync store init``), so that
        processes starting together do not race to create them."""
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": self.port,
            "POSTGRES_DBNAME": self.dbname,
            "POSTGRES_USER": self.user,
            # Empty: libpq then reads PGPASSWORD or ~/.pgpass itself.
            "POSTGRES_PASSWORD": os.environ.get("PGPASSWORD", ""),
            "POSTGRES_SCHEMA": self.schema,
            "CREATE_TABLE": "yes" if create_tables else "no",
            "POSTGRES_CONNECT_TIMEOUT": "5",
            # Insert through eventsourcing's database function (one statement) rather than psycopg's pipeline,
            # which was seen to hang on large saves: 40,000 small events, or a few observation batches of MBs.
            "POSTGRES_ENABLE_DB_FUNCTIONS": "yes",
            "APPLICATION_RECORDER_TOPIC": get_topic(EventRecorder),
        }

    def __str__(self) -> str:
        return f"PostgreSQL {self.user}@{self.host}:{self.port}/{self.dbname} (schema {self.schema})"

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(
                host=self.host, port=self.port, dbname=self.dbname, user=self.user, connect_timeout=10, **kwargs
            )
        except psycopg.OperationalError as error:
            raise StoreUnavailable(f"cannot connect to {self}: {first_line(error)}") from None

    def ensure_schema(self) -> None:
        with self.connect(autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')


class EventRecorder(PostgresApplicationRecorder):
    """eventsourcing's recorder, sending the events to insert in binary: in text (its way), each state is escaped
    byte by byte into the array's literal and parsed back by the server (storing a full run's observations at 1M
    keys per system took 16 s or more, against ~5 s so). The states are compressed already (ZstdCompressor, Arrow's
    IPC): the server is told not to try again (storage EXTERNAL, set with the tables)."""

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        schema, table = Identifier(self.datastore.schema), Identifier(self.events_table_name)
        self.sql_invoke_pg_function_insert_events = SQL("SELECT * FROM {schema}.{insert_events}((%b))").format(
            schema=schema, insert_events=Identifier(self.pg_function_name_insert_events)
        )
        # Done once (the lock it takes waits for running saves), and not at all where the tables are another
        # role's: it only saves time.
        self.sql_create_statements.append(
            SQL(
                "DO $$ BEGIN "
                "IF EXISTS (SELECT 1 FROM pg_attribute a JOIN pg_class c ON a.attrelid = c.oid "
                "JOIN pg_namespace n ON c.relnamespace = n.oid WHERE n.nspname = {schema_name} "
                "AND c.relname = {table_name} AND a.attname = 'state' AND a.attstorage <> 'e') THEN "
                "ALTER TABLE {schema}.{table} ALTER COLUMN state SET STORAGE EXTERNAL; "
                "END IF; "
                "EXCEPTION WHEN insufficient_privilege THEN NULL; "
                "END $$"
            ).format(
                schema=schema,
                table=table,
                schema_name=Literal(self.datastore.schema),
                table_name=Literal(self.events_table_name),
            )
        )


@contextmanager
def advisory_lock(target: PostgresTarget, holder: Callable[[], str]) -> Iterator[Callable[[str], None]]:
    """One run at a time per schema, across machines: a session-level advisory lock, which the server drops
    when the holder's connection ends, even if the holder was killed."""
    with target.connect(autocommit=True) as conn:
        key = f"keysync-run:{target.dbname}:{target.schema}"
        row = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (key,)).fetchone()
        if not row or not row[0]:
            raise RunInProgress(holder())
        try:
            yield lambda _run_id: None  # others see the holder through its Started event, once folded in
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))


def _os_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "postgres"


def _redacted(dsn: str) -> str:
    parts = urlsplit(dsn)
    if parts.password:
        return dsn.replace(f":{parts.password}@", ":***@")
    return dsn


def first_line(error: Exception) -> str:
    """An error's first line (libpq's messages run on over several)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__

"""keysync store: set up and inspect the event store."""

from __future__ import annotations

from pathlib import Path

import click

from keysync.application.bootstrap import build, postgres_target
from keysync.cli.options import config_option, error_line, json_option, load, message, print_json, user_errors


@click.group("store")
def store_group() -> None:
    """The event store: SQLite in one file (default) or a shared PostgreSQL database.

    Example: keysync store status --json
    """


@store_group.command("init")
@config_option
@user_errors
def init_command(config_path: Path | None) -> None:
    """Create the store's tables once (on PostgreSQL, before many processes start using it).

    Example: KEYSYNC_STORE_DSN=postgresql://me@db:5432/keysync keysync store init
    """
    config = load(config_path)
    if config.store.backend == "postgres":
        postgres_target(config).ensure_schema()
    build(config, create_tables=True)
    message(f"The {config.store.backend} store is ready.")


@store_group.command("status")
@config_option
@json_option
@user_errors
def status_command(config_path: Path | None, as_json: bool) -> None:
    """Print the backend, the number of stored events, the store's size and the projections' positions.

    Example: keysync store status --json
    """
    status = build(load(config_path)).store_status()
    if as_json:
        print_json(status)
        return
    for key, value in status.items():
        shown = ", ".join(f"{name} {at}" for name, at in value.items()) if isinstance(value, dict) else value
        click.echo(f"{key}: {shown}")


@store_group.command("migrate")
@config_option
@click.option("--to", "dsn", required=True, help="The PostgreSQL database to copy into (no password in it).")
@user_errors
def migrate_command(config_path: Path | None, dsn: str) -> None:
    """Copy this store's whole event log into an empty PostgreSQL store, keeping order, ids and timestamps.

    Example: keysync store migrate --to postgresql://me@db:5432/keysync
    """
    from keysync.infrastructure.config import override

    config = load(config_path)
    target_config = override(config, backend="postgres", dsn=dsn)
    into = postgres_target(target_config)
    into.ensure_schema()
    try:
        target = build(target_config, create_tables=True)
        copied = build(config).migrate_to(target, progress=lambda done, total: message(f"copied {done}/{total} events"))
    except Exception as error:  # the target's server failing half-way: name it, not this command's own store
        if config.store.backend != "sqlite" or not _from_postgres(error):  # only then is PostgreSQL the target's
            raise
        raise click.ClickException(f"migrating into {into} failed: {error_line(error)}") from error
    message(f"Copied {copied} events into {dsn}; its read models and reports are rebuilt. Point store.dsn at it.")


def _from_postgres(error: BaseException | None) -> bool:
    """Whether the error, or one it was raised from, is PostgreSQL's (the source store is SQLite)."""
    for _ in range(10):  # a chain of causes is short; a bound keeps a cyclic one from looping
        if error is None:
            return False
        if type(error).__module__.startswith("psycopg"):
            return True
        error = error.__cause__ or error.__context__
    return False

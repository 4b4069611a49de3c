"""The composition root: the one place that wires the event store, readers, projections and writers together.

Nothing is opened at import time, and nothing heavy is imported then either: every command imports this module,
so the store, the engine, pyarrow and the projections are imported by the functions below, when a command
builds the application.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import os
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keysync.application.ports import RunLock
    from keysync.application.reconcile import RunSettings
    from keysync.application.service import KeySync
    from keysync.domain.observations import SourceSnapshot
    from keysync.infrastructure.config import Config
    from keysync.infrastructure.postgres_store import PostgresTarget
    from keysync.projections.runner import Projections


def store_env(config: Config, *, create_tables: bool = False) -> dict[str, str]:
    """The eventsourcing settings for the configured store."""
    from eventsourcing.utils import get_topic

    from keysync.application.ports import StoreUnavailable
    from keysync.infrastructure.compression import ZstdCompressor

    encoding = {"COMPRESSOR_TOPIC": get_topic(ZstdCompressor)}

    if config.store.backend == "postgres":
        return {
            **postgres_target(config).env(create_tables=create_tables),
            **encoding,
        }
    path = config.store.path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StoreUnavailable(
            f"the event store ({path}) cannot be used: cannot create its folder {path.parent} "
            f"({error.strerror or error}{': ' + str(error.filename) if error.filename else ''})"
        ) from None
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(path),
        "SQLITE_LOCK_TIMEOUT": str(max(1, round(config.processing.lock_timeout_s))),
        **encoding,
    }


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "unknown")


def postgres_target(config: Config) -> PostgresTarget:
    from keysync.infrastructure.config import ConfigError
    from keysync.infrastructure.postgres_store import PostgresTarget

    try:
        return PostgresTarget.from_dsn(config.store.dsn)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def build(
    config: Config,
    *,
    actor: str | None = None,
    output_dir: Path | None = None,
    create_tables: bool = False,
) -> KeySync:
    """The application on ``config``'s store."""
    from keysync.application.service import KeySync
    from keysync.application.store import KeySyncStore
    from keysync.infrastructure import faults
    from keysync.infrastructure.export_cache import ExportCache
    from keysync.infrastructure.fingerprints import file_fingerprint
    from keysync.infrastructure.report_files import write_csv_atomic
    from keysync.infrastructure.report_lock import report_folder_lock
    from keysync.infrastructure.report_manifest import FolderManifest
    from keysync.infrastructure.spill import SpillingReader
    from keysync.projections.runner import Projections
    from keysync.projections.views import ViewRecorder, Views

    postgres = config.store.backend == "postgres"
    store = KeySyncStore(env=store_env(config, create_tables=create_tables))
    store.after_save = faults.after_saving
    if postgres:
        from keysync.projections.postgres_views import PostgresViewRecorder

        recorder: Views = store.factory.tracking_recorder(PostgresViewRecorder)
    else:
        recorder = store.factory.tracking_recorder(ViewRecorder)
    projections = Projections(
        store,
        recorder,
        output_dir or config.output_dir,
        config.normalize,
        config.provisioning.strategy,
        functools.partial(write_csv_atomic, escape_formulas=config.reports.escape_formulas),
        report_folder_lock,
        FolderManifest(),
        writing={"escape_formulas": config.reports.escape_formulas},
    )
    # Large exports' rows wait in files beside the store (for PostgreSQL too: beside where its file would be).
    reader = SpillingReader(
        functools.partial(_read_source, max_file_mb=config.processing.max_file_mb),
        config.store.path.parent / "spill",
        spill_rows=config.processing.spill_rows,
    )
    return KeySync(
        store,
        projections,
        reader,
        spill=reader,
        exports=ExportCache(config.store.path.parent / "exports", reader.files_of, reader.adopt),
        lock=_run_lock(config, projections),
        actor=actor or current_user(),
        fingerprint=file_fingerprint,
        generator=_generate,
        history_generator=_generate_history,
    )


# The readers and the mock data generators work in pyarrow: they are imported when first called, so that a run
# that reads no export (none changed) never loads it.
def _read_source(*args: Any, **kwargs: Any) -> SourceSnapshot:
    from keysync.infrastructure.sources import read_source

    return read_source(*args, **kwargs)


def _generate(*args: Any, **kwargs: Any) -> dict[str, Path]:
    from keysync.infrastructure.mockdata import generate

    return generate(*args, **kwargs)


def _generate_history(*args: Any, **kwargs: Any) -> dict[str, dict[str, Path]]:
    from keysync.infrastructure.mock_history import generate_history

    return generate_history(*args, **kwargs)


def _run_lock(config: Config, projections: Projections) -> RunLock:
    if config.store.backend == "postgres":
        from keysync.infrastructure.postgres_store import advisory_lock

        target = postgres_target(config)

        def holder() -> str:
            # The holder's Started event is in the log, maybe not yet in the run history: fold it in first.
            with contextlib.suppress(Exception):  # the message is worth a try, not a failure of its own
                projections.update_views()
            running = [r for r in projections.recorder.runs() if r["status"] == "running"]
            which = f"run_id {running[0]['run_id']}, started {running[0]['started_at']}" if running else "starting"
            return f"another run is in progress ({which}); try again when it has finished"

        return lambda: advisory_lock(target, holder)
    from keysync.infrastructure.run_lock import file_lock

    lock_path = config.store.path.with_name(config.store.path.name + ".lock")
    return lambda: file_lock(lock_path)


def run_settings(
    config: Config, *, dry_run: bool = False, actor: str | None = None, accept_shrink: Collection[str] = ()
) -> RunSettings:
    from keysync.application.reconcile import RunSettings, SourceSpec
    from keysync.application.retry import RetryPolicy

    return RunSettings(
        sources={s: SourceSpec(s, src.path, src.type) for s, src in config.sources.items()},
        rules=config.normalize,
        strategy=config.provisioning.strategy,
        mode=config.processing.mode,
        auto_approve=config.provisioning.auto_approve,
        dry_run=dry_run,
        batch_size=config.processing.batch_size,
        max_key_length=config.processing.max_key_length,
        max_file_mb=config.processing.max_file_mb,
        parallel=config.processing.parallel,
        retry=RetryPolicy(timeout_s=config.processing.timeout_s, retries=config.processing.retries),
        actor=actor or current_user(),
        max_shrink=config.processing.max_shrink,
        accept_shrink=frozenset(accept_shrink),
    )

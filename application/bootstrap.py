"""The composition root: the one place that wires the event store, readers, projections and writers together.

Nothing is opened at import time; ``build`` opens the store when a command needs it.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path

from eventsourcing.utils import get_topic

from keysync.application.reconcile import RunSettings, SourceSpec
from keysync.application.service import KeySync
from keysync.application.store import KeySyncStore
from keysync.infrastructure import faults
from keysync.infrastructure.compression import ZstdCompressor
from keysync.infrastructure.config import Config
from keysync.infrastructure.mock_history import generate_history
from keysync.infrastructure.mockdata import generate
from keysync.infrastructure.report_files import write_csv_atomic
from keysync.infrastructure.run_lock import file_lock
from keysync.infrastructure.sources import read_source
from keysync.projections.runner import Projections
from keysync.projections.views import ViewRecorder


def store_env(config: Config) -> dict[str, str]:
    """The eventsourcing settings for the configured store."""
    path = config.store.path
    path.parent.mkdir(parents=True, exist_ok=True)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(path),
        "SQLITE_LOCK_TIMEOUT": str(max(1, round(config.processing.lock_timeout_s))),
        "COMPRESSOR_TOPIC": get_topic(ZstdCompressor),
    }


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "unknown")


def build(config: Config, *, actor: str | None = None, output_dir: Path | None = None) -> KeySync:
    store = KeySyncStore(env=store_env(config))
    store.after_save = faults.after_saving
    recorder = store.factory.tracking_recorder(ViewRecorder)
    projections = Projections(
        store,
        recorder,
        output_dir or config.output_dir,
        config.normalize,
        config.provisioning.strategy,
        write_csv_atomic,
    )
    lock_path = config.store.path.with_name(config.store.path.name + ".lock")
    return KeySync(
        store,
        projections,
        read_source,
        lock=lambda: file_lock(lock_path),
        actor=actor or current_user(),
        generator=generate,
        history_generator=generate_history,
    )


def run_settings(config: Config, *, dry_run: bool = False, actor: str | None = None) -> RunSettings:
    return RunSettings(
        sources={s: SourceSpec(s, src.path, src.type) for s, src in config.sources.items()},
        rules=config.normalize,
        strategy=config.provisioning.strategy,
        mode=config.processing.mode,
        auto_approve=config.provisioning.auto_approve,
        dry_run=dry_run,
        batch_size=config.processing.batch_size,
        max_key_length=config.processing.max_key_length,
        parallel=config.processing.parallel,
        actor=actor or current_user(),
    )

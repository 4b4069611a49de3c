"""The sandbox's composition root: its service wired to the event store, its files, its states folder and its lock.

It builds on ``bootstrap.build`` (the same store and projections as every other command) and adds the sandbox's
own adapters; nothing is opened at import time. As in ``bootstrap``, the service and its adapters (which take
pyarrow) are imported by the functions that wire them: `keysync run` asks only whether the sandbox wrote the
exports it reads.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from keysync.application.bootstrap import build, current_user, run_settings
from keysync.application.reconcile import RunSettings, SourceSpec
from keysync.application.store import KeySyncStore
from keysync.domain.ids import SANDBOX_ID
from keysync.domain.observations import SYSTEMS
from keysync.domain.rules import NormalizationRules
from keysync.infrastructure.config import Config, ConfigError

if TYPE_CHECKING:
    from keysync.application.sandbox import SandboxService, SandboxSettings


def sandbox_files(config: Config) -> dict[str, Path]:
    """Where the sandbox writes each system's CSV: ``sandbox.input_dir``/S.csv, else the sources' own paths."""
    if config.sandbox.input_dir is not None:
        return {s: config.sandbox.input_dir / f"{s}.csv" for s in SYSTEMS}
    for system, source in config.sources.items():
        if source.type != "csv":
            raise ConfigError(
                f"{config.path or 'config'}: sources.{system}: the sandbox writes CSV, and this source is "
                f"{source.type}; set sandbox.input_dir (and point keysync run at it), or make the source csv",
                key=f"sources.{system}",
            )
    return {s: config.sources[s].path for s in SYSTEMS}


def sandbox_exports_read(config: Config, store: KeySyncStore) -> list[str]:
    """The systems whose export `keysync run` reads is a file the sandbox writes, once the sandbox has written A-E
    (its first edit): that run reconciles sandbox data."""
    try:
        files = sandbox_files(config)
    except ConfigError:  # a source the sandbox cannot write: it wrote none of them
        return []
    if not sandbox_written(store):
        return []
    return [s for s, source in config.sources.items() if files.get(s) == source.path]


def sandbox_written(store: KeySyncStore) -> bool:
    """Whether the sandbox in ``store`` has written A-E (saving or importing a state writes none)."""
    if not store.recorder.select_events(SANDBOX_ID, limit=1):
        return False
    return bool(store.repository.get(SANDBOX_ID).started)


def protected_files(config: Config) -> tuple[Path, ...]:
    """The files and folders no summary or copy of the sandbox's may replace or go into: the exports, the SQLite
    store and the files beside it, the reports and their record, the config, the saved states and the logs."""
    from keysync.infrastructure.report_manifest import NAME as MANIFEST
    from keysync.projections.reports import REPORTS

    store = config.store.path
    beside = (store, *(store.with_name(store.name + suffix) for suffix in ("-wal", "-shm", ".lock", ".sandbox.lock")))
    return (
        *(source.path for source in config.sources.values()),
        *(beside if config.store.backend == "sqlite" else ()),
        *(config.output_dir / name for name in (*REPORTS, MANIFEST)),
        *((config.path,) if config.path is not None else ()),
        config.sandbox.states_dir,
        config.logs_dir,
    )


def sandbox_settings(config: Config) -> SandboxSettings:
    from keysync.application.sandbox import SandboxSettings

    return SandboxSettings(
        files=sandbox_files(config),
        protected=protected_files(config),
        max_bulk_keys=config.sandbox.max_bulk_keys,
        max_key_length=config.processing.max_key_length,
        rules=config.normalize,
        strategy=config.provisioning.strategy,
        auto_approve=config.provisioning.auto_approve,
        max_shrink=config.processing.max_shrink,
    )


def build_sandbox(config: Config, *, actor: str | None = None) -> SandboxService:
    from keysync.application.sandbox import SandboxService
    from keysync.infrastructure.sandbox_files import stage_sources
    from keysync.infrastructure.sandbox_lock import sandbox_lock
    from keysync.infrastructure.sandbox_states import StateFolder

    keysync = build(config, actor=actor)
    lock_path = config.store.path.with_name(config.store.path.name + ".sandbox.lock")
    return SandboxService(
        keysync.store,
        sandbox_settings(config),
        stage_sources,
        StateFolder(config.sandbox.states_dir),
        lock=lambda: sandbox_lock(lock_path, config.processing.lock_timeout_s),
        actor=actor or current_user(),
        keysync=keysync,
    )


def sandbox_run_settings(
    config: Config, *, actor: str | None = None, accept_shrink: Collection[str] = ()
) -> RunSettings:
    """Settings for a run that reads the sandbox's files (the same as ``keysync run``'s unless sandbox.input_dir
    points elsewhere); the exports of ``accept_shrink`` are taken as they are, however small."""
    sources = {s: SourceSpec(s, path, "csv") for s, path in sandbox_files(config).items()}
    return attrs.evolve(run_settings(config, actor=actor, accept_shrink=accept_shrink), sources=sources)


def with_rules(config: Config, rules: NormalizationRules, strategy: str) -> Config:
    """The config with other normalization rules and strategy (a scenario's own): the sandbox's summaries and
    predictions, the run, what it records and the reports it writes then all follow them."""
    return attrs.evolve(config, normalize=rules, provisioning=attrs.evolve(config.provisioning, strategy=strategy))

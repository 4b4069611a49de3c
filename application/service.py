"""KeySync's use cases, one method each: the command line calls these and prints what they return."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from eventsourcing.persistence import IntegrityError, OperationalError

from keysync.application.history import AuditFilter, audit_events, key_timeline
from keysync.application.reconcile import (
    Progress,
    RunFailed,
    RunResult,
    RunSettings,
    SourceReader,
    execute_run,
)
from keysync.application.store import KeySyncStore

if TYPE_CHECKING:
    from keysync.projections.runner import Projections


log = logging.getLogger("keysync")


def _log_result(result: RunResult) -> None:
    kpis = result.run.kpis
    for system in kpis["systems_unavailable"]:
        log.warning("System %s unavailable: %s", system, result.reconciliation.systems[system].unavailable_reason)
    if result.proposed:
        log.info("proposed %d master key(s)", len(result.proposed),
                 extra={"fields": {"run_id": result.run_id, "sample": result.proposed[:10]}})  # fmt: skip
    log.info("run %s completed", result.run_id, extra={"fields": {"run_id": result.run_id, "kpis": kpis}})


class ConflictError(Exception):
    """Another process changed the store at the same moment; nothing of this command was saved."""


@attrs.frozen
class RunOutcome:
    result: RunResult
    reports: list[Path]
    dry_run: bool

    @property
    def run_id(self) -> str:
        return self.result.run_id


@attrs.define
class KeySync:
    store: KeySyncStore
    projections: Projections
    read_source: SourceReader
    actor: str = "keysync"
    generator: Callable[..., dict[str, Path]] | None = None

    def run(self, settings: RunSettings, progress: Progress | None = None) -> RunOutcome:
        """Reconcile once: record the observations and registry changes, then bring the reports up to date.
        A dry run computes and writes the reports but stores nothing."""
        say = progress or (lambda _phase: None)
        registry = self.store.registry()
        log.info("run starting", extra={"fields": {"mode": settings.mode, "dry_run": settings.dry_run}})
        try:
            result = execute_run(settings, registry, self.read_source, progress)
        except RunFailed as failure:
            log.error("run %s failed: %s", failure.run.run_id, failure.reason,
                      extra={"fields": {"run_id": failure.run.run_id}})  # fmt: skip
            if not settings.dry_run:
                self._save(failure.run)
                self.projections.catch_up()
            raise
        _log_result(result)
        if settings.dry_run:
            say("writing reports (dry run)")
            reports = self.projections.preview(result.run, result.registry, result.reconciliation)
            return RunOutcome(result, reports, dry_run=True)
        say("storing events")
        begun = time.perf_counter()
        self._save(result.run, result.registry)
        result.timings["store"] = result.timings.get("store", 0.0) + time.perf_counter() - begun
        say("writing reports")
        begun = time.perf_counter()
        reports = self.projections.catch_up(result.reconciliation, result.run_id)
        result.timings["reports"] = time.perf_counter() - begun
        return RunOutcome(result, reports, dry_run=False)

    def approve(self, keys: Iterable[str], *, all_proposed: bool = False) -> list[str]:
        """Activate Proposed master keys; an unknown or non-Proposed key refuses the whole command."""
        registry = self.store.registry()
        approved = registry.approve_all(self.actor) if all_proposed else registry.approve(keys, self.actor)
        self._save(registry)
        log.info("approved %d master key(s)", len(approved), extra={"fields": {"actor": self.actor, "keys": approved[:20]}})
        self.projections.catch_up()
        return approved

    def deprecate(self, keys: Iterable[str], reason: str) -> list[str]:
        registry = self.store.registry()
        deprecated = registry.deprecate(keys, reason, self.actor)
        self._save(registry)
        log.info("deprecated %d master key(s): %s", len(deprecated), reason,
                 extra={"fields": {"actor": self.actor, "keys": deprecated[:20]}})  # fmt: skip
        self.projections.catch_up()
        return deprecated

    def registry_rows(self, status: str | None = None) -> list[dict[str, str]]:
        self.projections.update_views()
        return self.projections.recorder.registry_rows(status)

    def runs(self, limit: int | None = None) -> list[dict[str, Any]]:
        self.projections.update_views()
        return self.projections.recorder.runs(limit)

    def audit(self, chosen: AuditFilter) -> list[dict[str, Any]]:
        return list(audit_events(self.projections, self.projections.rules, chosen))

    def key_timeline(self, key: str) -> dict[str, Any]:
        return key_timeline(self.projections, self.projections.rules, key)

    def rebuild(self) -> list[Path]:
        return self.projections.rebuild()

    def reports(self) -> list[Path]:
        return self.projections.catch_up()

    def generate(self, output_dir: Path, **options: Any) -> dict[str, Path]:
        assert self.generator is not None
        return self.generator(output_dir, **options)

    def _save(self, *aggregates: Any) -> None:
        try:
            self.store.save(*aggregates)
        except IntegrityError as error:
            raise ConflictError(
                "another KeySync process changed the registry at the same moment; nothing was saved, run again"
            ) from error
        except OperationalError as error:
            raise ConflictError(f"the event store is busy or unusable ({error}); nothing was saved") from error

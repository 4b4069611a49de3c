"""KeySync's use cases, one method each: the command line calls these and prints what they return."""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import attrs
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import StoredEvent

from keysync.application.audit_chain import sealed_chain
from keysync.application.bulk import collector_paused
from keysync.application.incremental import Baseline, Fingerprinter, Incremental
from keysync.application.ports import ExportKeeping, RowSpill, RunLock, SourceReader
from keysync.application.reconcile import (
    Observation,
    Progress,
    RunFailed,
    RunResult,
    RunSettings,
    SourceSpec,
    carry_over,
    conclude,
    new_run,
    observe,
    settle,
    timed,
)
from keysync.application.resume import recheck_recorded
from keysync.application.store import ConflictError, KeySyncStore
from keysync.application.suspect import ShrinkGuard, accepted_of
from keysync.domain.observations import SYSTEMS
from keysync.domain.registry import Registry
from keysync.domain.run import RUNNING, ReconciliationRun
from keysync.projections.registry_view import matching

if TYPE_CHECKING:
    from keysync.application.history import AuditFilter
    from keysync.projections.runner import Projections


log = logging.getLogger("keysync")


def _log_result(result: RunResult) -> None:
    kpis = result.run.kpis
    if "carried_from" in kpis:
        log.info("no export changed since run %s: its reconciliation carries over", kpis["carried_from"])
    for system in kpis["systems_unavailable"]:
        log.warning("System %s unavailable: %s", system, result.run.unavailable.get(system, ""))
    for system, reason in result.run.held_back.items():
        log.warning("System %s held back as suspect: %s", system, reason)
    if result.proposed:
        log.info("proposed %d master key(s)", len(result.proposed),
                 extra={"fields": {"run_id": result.run_id, "sample": result.proposed[:10]}})  # fmt: skip
    log.info("run %s completed", result.run_id, extra={"fields": {"run_id": result.run_id, "kpis": kpis}})


def _written(result: RunResult) -> RunResult:
    """A run's result once its reports are written, without its reconciliation and registry: whoever keeps the
    outcome (keysync schedule keeps every run's) would otherwise keep the run's rows, and the files beside the store
    holding them."""
    return attrs.evolve(result, reconciliation=None, registry=None)


def _rules_changed(settings: RunSettings, latest: tuple[dict[str, Any], dict[str, Any]] | None) -> bool:
    """Whether a run with ``settings`` normalizes or names keys otherwise than the latest completed run."""
    if latest is None:
        return False
    options = latest[1]
    return (options.get("rules"), options.get("strategy")) != (settings.rules.as_options(), settings.strategy)


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


class ReportsNotWritten(Exception):
    """A run completed and stored, whose reports could not be written (a full disk, say)."""

    def __init__(self, run_id: str, error: OSError):
        super().__init__(f"run {run_id} is stored; {error}")
        self.run_id = run_id


class HistoryError(Exception):
    """A snapshot history that cannot be replayed; the message says why."""


# Events per insert when migrating: bounded, as one very large insert was seen to hang psycopg's pipeline.
MIGRATION_BATCH = 5_000


class MigrationError(Exception):
    """A store migration that cannot go ahead; nothing was copied."""


@attrs.frozen
class Interruption:
    """Where an interrupted run stands in the store: ``state`` "running" (the next run resumes it), "completed"
    (only its reports lag behind), "" (nothing of it was stored) or "unknown" (the store could not say)."""

    run_id: str
    state: str
    recorded: list[str] = attrs.Factory(list)  # systems whose exports it has recorded
    unavailable: list[str] = attrs.Factory(list)  # systems it has recorded as unavailable


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run, with where the run stands; still a KeyboardInterrupt to whoever does not ask."""

    def __init__(self, where: Interruption | None):
        super().__init__()
        self.where = where


@attrs.frozen
class RunOutcome:
    result: RunResult
    reports: list[Path]
    dry_run: bool
    superseded: dict[str, str] = attrs.Factory(dict)  # resumed: system read again -> why

    @property
    def run_id(self) -> str:
        return self.result.run_id


@attrs.define
class KeySync:
    store: KeySyncStore
    projections: Projections
    read_source: SourceReader
    lock: RunLock
    actor: str = "keysync"
    fingerprint: Fingerprinter | None = None  # for incremental runs
    generator: Callable[..., dict[str, Path]] | None = None
    history_generator: Callable[..., dict[str, dict[str, Path]]] | None = None
    spill: RowSpill | None = None  # where read_source keeps large exports' rows, out of memory
    exports: ExportKeeping | None = None  # each system's latest recorded export: incremental runs read from it

    def run(self, settings: RunSettings, progress: Progress | None = None, *, resume: bool = True) -> RunOutcome:
        """Reconcile once: record the observations and registry changes, then bring the reports up to date.

        Holds the store's run lock throughout. An earlier run that was interrupted is resumed from its last
        checkpoint (unless ``resume`` is False, when it is marked failed and a new run starts). A dry run
        computes and writes the reports but stores nothing.
        """
        if settings.dry_run:
            with collector_paused():
                return self._dry_run(settings, progress)
        begun: list[ReconciliationRun] = []  # the run, once there is one: what an interruption reports on
        try:
            return self._run(settings, progress, resume, begun)
        except KeyboardInterrupt:
            raise RunInterrupted(self._interruption(begun[0] if begun else None)) from None

    def _run(
        self, settings: RunSettings, progress: Progress | None, resume: bool, begun: list[ReconciliationRun]
    ) -> RunOutcome:
        with self.lock() as claim, collector_paused(), self._kept_rows() as keep:
            observation = self._unfinished(resume)
            if observation is not None:
                settings = settings.resuming(observation.run)
                log.info(
                    "resuming run %s", observation.run.run_id, extra={"fields": {"run_id": observation.run.run_id}}
                )
            else:
                observation = Observation(new_run(settings))
            keep(observation)
            begun.append(observation.run)
            claim(observation.run.run_id)
            log.info("run %s starting", observation.run.run_id, extra={"fields": {"mode": settings.mode}})
            previous = self._latest_completed()
            observation.rules_changed = _rules_changed(settings, previous)
            observation.keep_lines = settings.mode == "incremental" or (
                previous is not None and previous[0]["mode"] == "incremental"
            )
            observation.guard = self._guard(settings, previous)
            incremental = self._incremental(settings, previous)
            try:
                if observation.resumed and self.fingerprint is not None:
                    self._recheck(settings, observation, self.fingerprint)
                observe(settings, observation, self.read_source, self._save, progress, incremental, self.exports)
                result = self._conclude(settings, observation, progress, incremental)
            except RunFailed as failure:
                log.error("run %s failed: %s", failure.run.run_id, failure.reason,
                          extra={"fields": {"run_id": failure.run.run_id}})  # fmt: skip
                self._save(failure.run)
                self.projections.catch_up()
                raise
            _log_result(result)
            (progress or (lambda _phase: None))("writing reports")
            with timed(result.timings, "reports"):
                try:
                    reports = self.projections.catch_up(result.reconciliation, result.run_id)
                except OSError as error:  # the run is stored whatever happens to its reports: say which run
                    raise ReportsNotWritten(result.run_id, error) from error
        return RunOutcome(_written(result), reports, dry_run=False, superseded=observation.superseded)

    def _recheck(self, settings: RunSettings, observation: Observation, fingerprint: Fingerprinter) -> None:
        """A resumed run reads again each system whose export changed since it was recorded."""
        for system, why in recheck_recorded(settings, observation, fingerprint, self._save).items():
            log.warning("run %s: System %s %s; reading it again", observation.run.run_id, system, why,
                        extra={"fields": {"run_id": observation.run.run_id, "system": system}})  # fmt: skip

    def _interruption(self, run: ReconciliationRun | None) -> Interruption | None:
        """What the store holds of ``run``, which was interrupted (None: interrupted before it had one, perhaps
        while taking up an earlier unfinished run, which the store then still holds). The store, not the aggregate
        in memory, says what the next run will find."""
        try:
            if run is None:
                self.projections.update_views()
                running = [r for r in self.projections.recorder.runs() if r["status"] == RUNNING]
                if not running:
                    return None
                run = self.store.run(UUID(running[0]["originator_id"]))
            stored = self.store.run(run.id)
        except AggregateNotFoundError:  # never saved: nothing of it to resume
            return Interruption(run.run_id, "") if run is not None else None
        except Exception:  # the store cannot say now (a connection cut by the interruption, say)
            return Interruption(run.run_id, "unknown") if run is not None else None
        if stored.state != RUNNING:
            return Interruption(run.run_id, stored.state)
        return Interruption(run.run_id, stored.state, sorted(stored.observed), sorted(stored.unavailable))

    def _dry_run(self, settings: RunSettings, progress: Progress | None) -> RunOutcome:
        self.projections.update_views()
        previous = self._latest_completed()
        incremental = self._incremental(settings, previous)
        observation = Observation(
            new_run(settings), rules_changed=_rules_changed(settings, previous), guard=self._guard(settings, previous)
        )
        with self._kept_rows() as keep:
            keep(observation)
            observe(settings, observation, self.read_source, lambda _run: None, progress, incremental, self.exports)
            result = conclude(settings, observation, self.store.registry(), progress, incremental, self.exports)
            (progress or (lambda _phase: None))("writing reports (dry run)")
            reports = self.projections.preview(result.run, result.registry, result.reconciliation)
        return RunOutcome(_written(result), reports, dry_run=True)

    @contextmanager
    def _kept_rows(self) -> Iterator[Callable[[Observation], None]]:
        """The run's rows kept out of memory, cleared before (an interrupted run's) and after the run; yields what
        hands an observation the spill's turns to read and its way to give memory back."""
        spill = self.spill
        if spill is None:
            yield lambda _observation: None
            return

        def keep(observation: Observation) -> None:
            observation.release, observation.turn = spill.release, spill.turn

        spill.clear()
        try:
            yield keep
        finally:
            spill.clear()

    def _latest_completed(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The latest completed run's history row and the options it ran with (from its Started event)."""
        latest = self.projections.recorder.latest_completed_run()
        if latest is None:
            return None
        started = next(iter(self.store.events.get(UUID(latest["originator_id"]), lte=1)))
        return latest, started.options

    def _guard(self, settings: RunSettings, latest: tuple[dict[str, Any], dict[str, Any]] | None) -> ShrinkGuard:
        """What holds back a suspect export: each system's last accepted export as of the latest completed run."""
        accepted = accepted_of(latest[0]) if latest is not None else {}
        return ShrinkGuard(accepted, self.store.base_snapshots(), settings.max_shrink, settings.accept_shrink)

    def _incremental(
        self, settings: RunSettings, latest: tuple[dict[str, Any], dict[str, Any]] | None = None
    ) -> Incremental | None:
        """What an incremental run needs of the latest completed run (``latest``, if already looked up); None for a
        full run, or when there is no completed run to build on (the run then reads every export whole)."""
        if settings.mode != "incremental" or self.fingerprint is None:
            return None
        latest = latest or self._latest_completed()
        if latest is None:
            return None
        return Incremental(
            Baseline.of(*latest),
            self.fingerprint,
            self.store.base_snapshots(),
            functools.cache(self.store.run_options),
        )

    def _conclude(
        self,
        settings: RunSettings,
        observation: Observation,
        progress: Progress | None,
        incremental: Incremental | None = None,
    ) -> RunResult:
        """Conclude and save. If someone changed the registry meanwhile (an approval), reload it and retry:
        the run's observations are already safe, only the registry decisions are redone."""
        carried = carry_over(settings, observation, incremental)
        if carried is not None:  # the registry is untouched
            with timed(carried.timings, "store"):
                self._save(*sealed_chain(self.store), carried.run)
            return carried
        result = conclude(settings, observation, self.store.registry(), progress, incremental, self.exports)
        for attempt in range(3):
            try:
                with timed(result.timings, "store"):
                    # Sealed in the same save, before the conclusion, so that the run's end (keysync show-as-of)
                    # includes its seal: see keysync.application.audit_chain.
                    self._save(*sealed_chain(self.store), result.registry, result.run)
                return result
            except ConflictError:
                if attempt == 2:
                    raise
                log.warning("the registry changed during run %s; retrying its registry update", result.run_id)
                observation.run = self.store.run(observation.run.id)
                result = settle(settings, observation, result.reconciliation, self.store.registry(), progress)
        raise AssertionError("unreachable")

    def _unfinished(self, resume: bool) -> Observation | None:
        """The run that a crash interrupted, if any (only one can exist: runs hold the run lock)."""
        self.projections.update_views()
        for row in self.projections.recorder.runs():
            if row["status"] != "running":
                continue
            run = self.store.run(UUID(row["originator_id"]))
            if resume:
                return Observation.resume(run, self.store.run_events(run.id), self.store.base_snapshots())
            run.fail("interrupted, and not resumed (--no-resume)")
            self._save(run)
        return None

    def replay_history(
        self, root: Path, settings: RunSettings, progress: Progress | None = None
    ) -> Iterator[tuple[str, RunOutcome | RunFailed]]:
        """Run one reconciliation per dated snapshot folder (root/YYYY-MM-DD/A.csv ...), oldest first, each
        stamped with its snapshot's date; yield each date with its outcome as it completes. A snapshot whose run
        fails (System A missing, say) is yielded with the failure, which is recorded, and the next one runs, as
        `keysync schedule` goes on after a failed run. Folders named like a date that is not one (2026-02-30) are
        refused before anything runs: the date would be stamped on the runs for good."""
        root = Path(os.path.abspath(root))  # the runs record their files as configured sources are: whole paths
        folders = sorted(p for p in root.iterdir() if p.is_dir() and _DATE.fullmatch(p.name)) if root.is_dir() else []
        if not folders:
            raise HistoryError(
                f"{root}: no snapshot folders named YYYY-MM-DD (write some with keysync generate --days N)"
            )
        impossible = [p.name for p in folders if not _is_date(p.name)]
        if impossible:
            raise HistoryError(
                f"{root}: {', '.join(impossible)} {'is not a date' if len(impossible) == 1 else 'are not dates'}; "
                "rename or remove such folders (nothing was replayed)"
            )
        for folder in folders:
            # Each system's export as the snapshot holds it: S.json, else S.csv (a missing one is unavailable).
            kinds = {s: "json" if (folder / f"{s}.json").exists() else "csv" for s in SYSTEMS}
            sources = {s: SourceSpec(s, folder / f"{s}.{kind}", kind) for s, kind in kinds.items()}
            dated = attrs.evolve(settings, sources=sources, as_of=f"{folder.name}T00:00:00+00:00")
            try:
                yield folder.name, self.run(dated, progress)
            except RunFailed as failure:
                yield folder.name, failure

    def approve(self, keys: Iterable[str], *, all_proposed: bool = False) -> list[str]:
        """Activate Proposed master keys; an unknown or non-Proposed key refuses the whole command."""
        if all_proposed:
            return self._decide("approved", lambda registry: registry.approve_all(self.actor))
        return self._decide("approved", lambda registry: registry.approve(keys, self.actor))

    def deprecate(self, keys: Iterable[str], reason: str) -> list[str]:
        return self._decide("deprecated", lambda registry: registry.deprecate(keys, reason, self.actor), reason)

    def reactivate(self, keys: Iterable[str], reason: str) -> list[str]:
        """Bring Deprecated master keys back to Active; an unknown or non-Deprecated key refuses the whole command."""
        return self._decide("reactivated", lambda registry: registry.reactivate(keys, reason, self.actor), reason)

    def _decide(self, verb: str, decide: Callable[[Registry], list[str]], reason: str = "") -> list[str]:
        """One person's registry decision: carried out on the registry, saved, logged, and shown in the reports."""
        registry = self.store.registry()
        keys = decide(registry)
        self._save(registry)
        log.info("%s %d master key(s)%s", verb, len(keys), f": {reason}" if reason else "",
                 extra={"fields": {"actor": self.actor, "keys": keys[:20]}})  # fmt: skip
        self.projections.catch_up()
        return keys

    def registry_rows(
        self, status: str | None = None, as_of: str = "", *, system: str | None = None, search: str | None = None
    ) -> list[dict[str, str]]:
        """The registry now, or as it stood at the moment ``as_of`` names (a run id or an ISO 8601 time); only
        the master keys seen in ``system`` and holding ``search``, when given."""
        self.projections.update_views()
        if as_of:
            from keysync.application.as_of import registry_as_of  # replaying the log takes pyarrow: only when asked

            rows = registry_as_of(self.projections, as_of, status)
        else:
            rows = self.projections.recorder.registry_rows(status)
        return matching(rows, system, search)

    def runs(self, limit: int | None = None) -> list[dict[str, Any]]:
        self.projections.update_views()
        return self.projections.recorder.runs(limit)

    def audit(self, chosen: AuditFilter) -> list[dict[str, Any]]:
        """The events that match ``chosen``, in log order; an unknown run is an error, not an empty answer."""
        if chosen.run_id is not None and chosen.run_id not in {r["run_id"] for r in self.runs()}:
            raise HistoryError(f"no run {chosen.run_id!r} in the store: `keysync history` lists the runs")
        from keysync.application.history import audit_events  # reads key columns (pyarrow): only when asked

        return list(audit_events(self.projections, self.projections.rules, chosen))

    def key_timeline(self, key: str) -> dict[str, Any]:
        from keysync.application.history import key_timeline  # reads key columns (pyarrow): only when asked

        return key_timeline(self.projections, self.projections.rules, key)

    def store_status(self) -> dict[str, Any]:
        """Backend, stored events, size on disk and each projection's position."""
        return self.projections.status()

    def migrate_to(self, target: KeySync, progress: Callable[[int, int], None] | None = None) -> int:
        """Copy every stored event, in order and unchanged (ids, versions, timestamps, payloads), into the empty
        store of ``target``, then build its read models and reports from them. Returns the number copied."""
        if target.store.recorder.max_notification_id():
            raise MigrationError("the target store already holds events; migrate into an empty one")
        # Under the run lock, and never half-way through a run: a run going on would be copied unfinished.
        with self.lock() as claim:
            claim("(keysync store migrate)")
            self.projections.update_views()
            running = [r for r in self.projections.recorder.runs() if r["status"] == "running"]
            if running:
                raise MigrationError(
                    f"run {running[0]['run_id']} is unfinished: `keysync run` resumes it; migrate once it has "
                    "completed (nothing was copied)"
                )
            position = copied = 0
            # To the log's end as it is when each page is read: an approval made meanwhile is copied too.
            while position < (last := self.store.recorder.max_notification_id() or 0):
                page = self.store.recorder.select_notifications(
                    start=position, limit=MIGRATION_BATCH, stop=last, inclusive_of_start=False
                )
                if not page:
                    break
                target.store.recorder.insert_events(
                    [StoredEvent(n.originator_id, n.originator_version, n.topic, n.state) for n in page]
                )
                copied += len(page)
                position = page[-1].id
                if progress:
                    progress(copied, last)
        target.projections.rebuild()
        if (self.store.recorder.max_notification_id() or 0) > position:  # an approval or a sandbox edit just now
            raise MigrationError(
                f"events were stored here while copying ended ({copied} copied): the target misses them; drop its "
                "tables or schema and migrate again, with no command running"
            )
        return copied

    def rebuild(self) -> list[Path]:
        return self.projections.rebuild()

    def reports(self) -> list[Path]:
        return self.projections.catch_up()

    def generate(self, output_dir: Path, **options: Any) -> dict[str, Path]:
        """Write mock exports of A-E into ``output_dir``."""
        assert self.generator is not None
        return self.generator(output_dir, **options)

    def generate_history(self, root: Path, **options: Any) -> dict[str, dict[str, Path]]:
        """Write one dated mock snapshot per day under ``root`` (see keysync.infrastructure.mock_history)."""
        assert self.history_generator is not None
        return self.history_generator(root, **options)

    def _save(self, *aggregates: Any) -> None:
        conflict = "another KeySync process changed the registry at the same moment; nothing was saved, run again"
        self.projections.remember(self.store.save_or_conflict(*aggregates, conflict=conflict))

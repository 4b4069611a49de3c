"""Keeps the read models and the report files up to date with the event log.

Two projections, each with its own tracked position:
- "views": the registry, run-history and audit tables, folded event by event;
- "reports": the CSV files, re-rendered whenever the log has moved past what they show.

changes_since_last_run.csv compares the latest completed run with the one before: each run's keys are kept here
(``RunKeys``: A's keys and the discrepancies) for the last two runs rendered, so a process that runs again
(keysync schedule, replay-history) never recomputes the previous run from the log; a new process does, once.

The views and the run-level reports are plain Python. The work on a reconciliation's keys (recomputing one, the
changes between two runs, the first detections, the reports of what is open) is Arrow: the methods doing it import
those modules, so that a run that carries its reconciliation over (no export changed) never loads pyarrow.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

import attrs

from keysync.application.store import KeySyncStore
from keysync.domain.registry import Registry
from keysync.domain.rules import NormalizationRules
from keysync.domain.run import ReconciliationRun
from keysync.projections.audit import audit_row
from keysync.projections.registry_view import LAST_SEEN, RegistryRows, apply_registry_event
from keysync.projections.reports import (
    CHANGE_COLUMNS,
    CHANGES,
    REPORTS,
    SUMMARY,
    RunInfo,
    Writer,
    run_level_reports,
    summary_columns,
    write_all,
    writers_for,
)
from keysync.projections.run_history import apply_run_event
from keysync.projections.views import AUDIT_COLUMNS, RUN_COLUMNS, Views

if TYPE_CHECKING:
    import pyarrow as pa

    from keysync.domain.reconciliation import Reconciliation
    from keysync.projections.changes import RunKeys
    from keysync.projections.first_detected import FirstDetected

VIEWS, REPORTS_POSITION = "views", "reports"
PAGE = 20  # notifications per read: observation batches are large, so pages stay small
KEPT_RUN_KEYS = 2  # runs whose keys stay in memory: the latest and the previous


FolderLock = Callable[[Path], AbstractContextManager[bool]]


@contextmanager
def _unlocked(_folder: Path) -> Iterator[bool]:
    yield True


class Manifest(Protocol):
    """What a report folder shows (keysync.infrastructure.report_manifest keeps it in the folder)."""

    def read(self, folder: Path) -> dict[str, Any] | None: ...
    def write(self, folder: Path, shown: dict[str, Any]) -> None: ...
    def forget(self, folder: Path) -> None: ...


class _MemoryManifest:
    def __init__(self) -> None:
        self._shown: dict[Path, dict[str, Any]] = {}

    def read(self, folder: Path) -> dict[str, Any] | None:
        return self._shown.get(folder)

    def write(self, folder: Path, shown: dict[str, Any]) -> None:
        self._shown[folder] = shown

    def forget(self, folder: Path) -> None:
        self._shown.pop(folder, None)


def _at_once(work: Callable[[], object]) -> object:
    return work()


def _submitted(pool: ThreadPoolExecutor, futures: list[Future[Any]], work: Callable[[], object]) -> None:
    futures.append(pool.submit(work))


class Projections:
    def __init__(
        self,
        store: KeySyncStore,
        recorder: Views,
        output_dir: Path,
        rules: NormalizationRules,
        strategy: str,
        write: Writer,
        lock: FolderLock = _unlocked,
        manifest: Manifest | None = None,
        writing: Mapping[str, Any] | None = None,
    ):
        self.store = store
        self.recorder = recorder
        self.output_dir = output_dir
        self.rules = rules
        self.strategy = strategy
        # How ``write`` writes (e.g. escape_formulas): part of what a folder shows, as the rules are.
        self.writing = dict(writing or {})
        self.write = write
        self.lock = lock  # one writer of a report folder at a time
        self.manifest = manifest or _MemoryManifest()  # what each report folder shows
        # Events this process has just saved, by notification id: folding them needs no decoding.
        self._recorded: dict[int, Any] = {}
        # The whole registry table, when the last update of the views had to load it anyway.
        self._registry: RegistryRows | None = None
        self._registry_at = 0  # the views' position the loaded registry is the one of
        # The keys of the last runs rendered, by run_id, oldest first (for changes_since_last_run.csv).
        self._run_keys: dict[str, RunKeys] = {}

    def remember(self, recordings: list[Any]) -> None:
        """Note events just saved in this process (eventsourcing Recordings), so catching up need not read
        and decode them back from the store."""
        for recording in recordings:
            self._recorded[recording.notification.id] = recording.domain_event

    # Views -------------------------------------------------------------------------------------------------

    def update_views(self) -> int:
        """Fold every event past the views' position into the tables; return the new position."""
        start = self.recorder.position(VIEWS)
        last = self.store.recorder.max_notification_id() or 0
        if last <= start:
            if start != self._registry_at:
                self._registry = None  # another process moved the views: the loaded registry is behind them
            return start
        # The registry this process loaded or kept up to date last time, if the views are still where it left them.
        warm = self._registry if self._registry_at == start else None
        self._registry = None
        registry: RegistryRows | None = None
        before: pa.Table | None = None  # the registry's rows as loaded
        registry_changed: list[pa.Array] = []  # master keys whose rows changed other than in last_seen_run_id
        runs: dict[str, dict[str, Any]] = {}
        sighting: tuple[str, bool] | None = None  # the registry's latest sighting as loaded
        runs_changed: set[str] = set()
        audit: list[dict[str, Any]] = []
        for event_id, event in self.events(start, last):
            if isinstance(event, Registry.Event):
                if registry is None:
                    registry = warm if warm is not None else self.recorder.registry_state(start)
                    before, sighting = registry.table, (registry.sighting, registry.marked)
                changed_now = apply_registry_event(registry, event)
                if changed_now is not None:
                    registry_changed.append(changed_now)
                run_id = getattr(event, "run_id", "")
            else:
                key = str(event.originator_id)
                if key not in runs:
                    runs.update(self._stored_run(key))
                changed = apply_run_event(runs, event)
                if changed:
                    runs_changed.add(changed)
                run_id = runs[key]["run_id"] if key in runs else ""
            audit.append(audit_row(event_id, run_id, event))
        rows, seen = _registry_changes(before, registry.table, registry_changed) if registry else (None, {})
        saved = self.recorder.save_views(
            VIEWS,
            last,
            rows,
            [[runs[k][col] for col in RUN_COLUMNS] for k in runs_changed],
            [[a[col] for col in AUDIT_COLUMNS] for a in audit],
            seen,
            (registry.sighting, registry.marked)
            if registry is not None and (registry.sighting, registry.marked) != sighting
            else None,
            registry.table if registry is not None else None,
        )
        # Keep the loaded registry for the reports only if these rows are the ones stored.
        self._registry = (registry if registry is not None else warm) if saved else None
        self._registry_at = last
        return last

    def registry_rows(self) -> pa.Table:
        """The registry read model for the reports, ordered by master key (from memory when the views just had it
        loaded, with last_seen_run_id as stored: the reports do not show it)."""
        import pyarrow.compute as pc

        registry = self._registry
        if registry is None:
            registry = self.recorder.registry_state(self.recorder.position(VIEWS))
        return registry.table.take(pc.sort_indices(registry.table["master_key"]))

    def events(self, start: int, stop: int) -> Any:
        """Every stored event after position ``start`` up to ``stop``, in order, with its notification id."""
        position = start
        while position < stop:
            if position + 1 in self._recorded:
                position += 1
                yield position, self._recorded.pop(position)
                continue
            page = self.store.recorder.select_notifications(
                start=position, limit=PAGE, stop=stop, inclusive_of_start=False
            )
            if not page:
                break
            for notification in page:
                if notification.id in self._recorded:
                    position = notification.id - 1  # the rest is in memory (ids can have gaps: PostgreSQL's do)
                    break
                yield notification.id, self.store.mapper.to_domain_event(notification)
                position = notification.id

    def _stored_run(self, originator_id: str) -> dict[str, dict[str, Any]]:
        found = [r for r in self.recorder.runs() if r["originator_id"] == originator_id]
        if not found:
            return {}
        return {originator_id: found[0]}

    # Reports -----------------------------------------------------------------------------------------------

    def catch_up(self, fresh: Reconciliation | None = None, fresh_run_id: str = "") -> list[Path]:
        """Bring views and reports up to date. ``fresh`` is the reconciliation the caller just computed for
        run ``fresh_run_id``; passing it saves recomputing it from the log."""
        position = self.update_views()
        paths = [self.output_dir / name for name in REPORTS]
        if self._current(position):
            return paths
        with self.lock(self.output_dir) as held:
            # Not held: another process is writing the reports, and writes them again if the log moved meanwhile.
            while held:
                if self._current(position):
                    break  # another process wrote them while this one waited
                self._render(fresh, fresh_run_id, position)
                self.recorder.save_views(REPORTS_POSITION, position, None, [], [])  # for store status
                latest = self.update_views()
                if latest <= position:
                    break
                position, fresh = latest, None  # the log moved while writing: write what it says now
        return paths

    def _current(self, position: int) -> bool:
        """Whether the report folder already shows the log up to ``position``, rendered with these rules."""
        shown = self.manifest.read(self.output_dir)
        return (
            shown is not None
            and shown.get("rules") == self._rules_shown()
            and shown.get("position", -1) >= position
            and self._reports_present()
        )

    def _rules_shown(self) -> str:
        return json.dumps([self.rules.as_options(), self.strategy, self.writing], sort_keys=True)

    def status(self) -> dict[str, Any]:
        last = self.store.recorder.max_notification_id() or 0
        return {
            "backend": "postgres" if "postgres" in type(self.store.recorder).__module__ else "sqlite",
            "events": last,
            "size_bytes": self.recorder.size_bytes(),
            "positions": {name: self.recorder.position(name) for name in (VIEWS, REPORTS_POSITION)},
            "behind": {name: last - self.recorder.position(name) for name in (VIEWS, REPORTS_POSITION)},
        }

    def rebuild(self) -> list[Path]:
        """Forget every read model and rebuild it, and the reports, from the event log alone."""
        self.recorder.reset(VIEWS, REPORTS_POSITION)
        self._registry = None
        self.manifest.forget(self.output_dir)
        return self.catch_up()

    def preview(self, run: ReconciliationRun, registry: Registry, recon: Reconciliation) -> list[Path]:
        """Render the reports as they would be after saving ``run`` and ``registry``, without saving them."""
        from keysync.projections.changes import RunKeys, change_columns
        from keysync.projections.discrepancies import render_reports

        state = self.recorder.registry_state(self.update_views())
        audit = self.recorder.audit_rows()
        for event in [*run.collect_events(), *registry.collect_events()]:
            if isinstance(event, Registry.Event):
                apply_registry_event(state, event)
            audit.append(audit_row(0, run.run_id, event) | {"event_id": "", "run_id": f"{run.run_id} (dry-run)"})
        registry_rows = state.resolved()
        runs = self.recorder.runs()
        completed = [r for r in runs if r["status"] == "completed"]
        previous = self.run_keys(completed[0]) if completed else None
        changes = change_columns(
            RunKeys.of(run.run_id, recon), previous, registry_rows, audit, audit_run_id=f"{run.run_id} (dry-run)"
        )
        info = RunInfo(run.run_id, run.modified_on.isoformat(), run.mode, dry_run=True, held_back=run.held_back)
        first_detected = self.first_detected(completed, live=True).copy()
        first_detected.advance(info.run_id, info.finished_at, recon, set(run.held_back))
        self.manifest.forget(self.output_dir)  # the folder will show what the log does not hold
        return render_reports(
            self.output_dir, self.write, info, recon, registry_rows, audit, runs, changes, first_detected=first_detected
        )

    def _render(self, fresh: Reconciliation | None, fresh_run_id: str, position: int) -> list[Path]:
        """Render the reports up to ``position``. When the folder already shows the latest reconciliation (a run
        that found no export changed carries it over), with these rules, and the registry has not moved since,
        only the run-level reports are written again."""
        audit, runs = self.recorder.audit_rows(), self.recorder.runs()
        completed = [r for r in runs if r["status"] == "completed"]
        basis_event = _basis_event(_basis(completed), audit) if completed else 0
        shown = self.manifest.read(self.output_dir) or {}
        rendered = shown.get("position", 0)
        if (
            basis_event
            and shown.get("basis_event") == basis_event
            and shown.get("rules") == self._rules_shown()
            and self._reports_present()
            and not any(a["event_id"] > rendered and a["event_type"].startswith("MasterKeys") for a in audit)
        ):
            written = self._render_run_level(completed[0], audit, runs)
        else:
            self.manifest.forget(self.output_dir)  # until every file is written
            written = self.render(self.output_dir, self.registry_rows(), audit, runs, fresh, fresh_run_id, live=True)
        self.manifest.write(
            self.output_dir, {"position": position, "basis_event": basis_event, "rules": self._rules_shown()}
        )
        return written

    def _render_run_level(
        self, latest: dict[str, Any], audit: list[dict[str, Any]], runs: list[dict[str, Any]]
    ) -> list[Path]:
        """Write the summary, the audit log and the trend report (and, after a carried-over run, its empty
        changes), leaving the other files, which already say what they would say."""
        kpis = json.loads(latest["kpis"])
        info = RunInfo(latest["run_id"], latest["finished_at"], latest["mode"])
        carried = "carried_from" in kpis
        reports = {SUMMARY: summary_columns(info, kpis["systems"])}
        reports |= run_level_reports(audit, runs, {c: [] for c in CHANGE_COLUMNS} if carried else None)
        if not carried:
            del reports[CHANGES]  # the same latest run as the files show: its changes are written already
        write_all(self.output_dir, self.write, reports)
        return [self.output_dir / name for name in REPORTS]

    def render(
        self,
        output_dir: Path,
        registry_rows: pa.Table,
        audit_rows: list[dict[str, Any]],
        runs: list[dict[str, Any]],
        fresh: Reconciliation | None = None,
        fresh_run_id: str = "",
        *,
        live: bool = False,
    ) -> list[Path]:
        """Write every report into ``output_dir`` from these read models (the registry's table by master key, audit
        rows in log order, runs newest first): the live ones (``live``), or a replay's (keysync show-as-of)."""
        from keysync.projections.changes import change_columns
        from keysync.projections.discrepancies import render_reports

        completed = [r for r in runs if r["status"] == "completed"]
        recon = info = changes = detected = first_detected = None
        if completed:
            latest, basis = completed[0], _basis(completed)
            info = RunInfo(latest["run_id"], latest["finished_at"], latest["mode"], held_back=_held_back(latest))
            if basis is not latest:
                detected = RunInfo(basis["run_id"], basis["finished_at"], basis["mode"])
            if fresh is not None and fresh_run_id == latest["run_id"]:
                recon = fresh
            else:
                recon = self.reconciliation_of(basis["originator_id"])
            previous = self.run_keys(completed[1]) if len(completed) > 1 else None
            keys = self.run_keys(latest, recon)
            changes = change_columns(keys, previous, registry_rows, audit_rows)
        # The first detections are stored while the reports are written: the two are independent. A large run does
        # one thing at a time, to bound its memory.
        writers = writers_for(recon)
        with ThreadPoolExecutor(max_workers=1) as background:
            saving: list[Future[Any]] = []
            if completed:
                save = partial(_submitted, background, saving) if writers > 1 else _at_once
                first_detected = self.first_detected(completed, recon, live=live, save=save)
                if live:  # the next process compares its run with these keys
                    save(partial(self._save_run_keys, keys))
            written = render_reports(
                output_dir,
                self.write,
                info,
                recon,
                registry_rows,
                audit_rows,
                runs,
                changes,
                detected=detected,
                first_detected=first_detected,
                writers=writers,
            )
            for future in saving:
                future.result()
        return written

    def first_detected(
        self,
        completed: list[dict[str, Any]],
        basis_recon: Reconciliation | None = None,
        *,
        live: bool = False,
        save: Callable[[Callable[[], object]], object] = _at_once,
    ) -> FirstDetected:
        """When each open discrepancy, duplicate and rejected line was first found, as it stands after the latest
        of ``completed`` (completed runs' history rows, newest first). ``basis_recon``: the reconciliation the
        latest run's results are, if at hand. ``live``: these are the live run history's runs; the folding starts
        from what is stored and what it adds is stored (by ``save``, which runs the storing). Otherwise (a replay)
        every run is folded again."""
        from keysync.projections.first_detected import FirstDetected, held_back_systems

        rules = self._rules_normalized()
        oldest_first = completed[::-1]
        state, since = FirstDetected(), None
        stored = self.recorder.first_detected() if live else None
        if stored is not None:
            run_id, stored_rules, rows = stored
            # Read under other rules, or standing after a run the history does not hold: fold every run again.
            if stored_rules == rules and any(r["run_id"] == run_id for r in oldest_first):
                state, since = FirstDetected.from_rows(run_id, rows), (run_id, rules)
        done = next((i + 1 for i, r in enumerate(oldest_first) if r["run_id"] == state.run_id), 0)
        pending = oldest_first[done:]
        if not pending:
            return state
        basis_id = _basis(completed)["run_id"]
        touched: set[tuple[str, str]] = set()
        for run in pending:
            kpis = json.loads(run["kpis"]) if run["kpis"] else {}
            if "carried_from" in kpis:
                state.run_id = run["run_id"]  # the same reconciliation as the run it carried over: nothing changes
                continue
            if run["run_id"] == basis_id and basis_recon is not None:
                recon = basis_recon
            else:
                recon = self.reconciliation_of(run["originator_id"])
            touched |= state.advance(run["run_id"], run["finished_at"], recon, held_back_systems(kpis))
        if live:  # the groups a run changed are written again; the first time, all of them
            groups = touched if since is not None else None
            basis = (state.run_id, rules)
            save(partial(self.recorder.save_first_detected, since, basis, groups or (), state.rows(groups)))
        return state

    def reconciliation_of(
        self, originator_id: str, rules: NormalizationRules | None = None, strategy: str | None = None
    ) -> Reconciliation:
        """Recompute a stored run's reconciliation from its raw observations, with the current rules unless
        ``rules`` and ``strategy`` are given."""
        from keysync.domain.reconciliation import reconcile

        snapshots, reasons = self.store.run_snapshots(originator_id)
        rules, strategy = rules or self.rules, strategy or self.strategy
        return reconcile(snapshots, rules, strategy, unavailable_reasons=reasons)

    def run_keys(self, run: dict[str, Any], recon: Reconciliation | None = None) -> RunKeys:
        """A stored run's normalized keys (``run`` is its run-history row): from ``recon`` (its reconciliation)
        when given, else from memory when this process has them, else from the log, with the current rules. The
        last two runs' keys are kept in memory, without their downstream systems' whole key sets."""
        from keysync.projections.changes import RunKeys

        run_id = run["run_id"]
        keys = self._run_keys.pop(run_id, None)
        carried = json.loads(run["kpis"]).get("carried_from") if run["kpis"] else None
        if keys is None and recon is None and carried in self._run_keys:
            keys = attrs.evolve(self._run_keys[carried], run_id=run_id)  # the same keys as the run it carried
        if recon is not None:
            keys = RunKeys.of(run_id, recon)  # costs nothing, and knows the export order a first run shows
        elif keys is None:
            keys = self._stored_run_keys(run_id, carried) or self._run_keys_from_log(run)
        self._run_keys[run_id] = keys  # newest last
        while len(self._run_keys) > KEPT_RUN_KEYS:
            del self._run_keys[next(iter(self._run_keys))]
        return keys

    def _save_run_keys(self, keys: RunKeys) -> None:
        from keysync.projections.changes import key_array

        parts = [(AUTHORITY_PART, "", key_array(keys.authority))]
        for part, found in ((MISSING_IN_A_PART, keys.missing_in_a), (GAPS_PART, keys.missing_from_system)):
            parts += [(part, system, key_array(found[system])) for system in sorted(found)]
        self.recorder.save_run_keys(keys.run_id, self._rules_normalized(), parts)

    def _stored_run_keys(self, run_id: str, carried: str | None) -> RunKeys | None:
        """The keys of run ``run_id`` (or of the run it carried over) as the views store them after the latest
        rendering, if they are that run's under the current rules: a new process then need not read them from the
        log."""
        from keysync.projections.changes import RunKeys

        stored = self.recorder.run_keys()
        if stored is None or stored[1] != self._rules_normalized() or stored[0] not in (run_id, carried):
            return None
        parts = stored[2]
        authority = next((keys for part, _, keys in parts if part == AUTHORITY_PART), None)
        if authority is None:
            return None
        found = {
            kind: {system: keys for part, system, keys in parts if part == kind}
            for kind in (MISSING_IN_A_PART, GAPS_PART)
        }
        return RunKeys(run_id, authority, found[MISSING_IN_A_PART], found[GAPS_PART])

    def _rules_normalized(self) -> str:
        return json.dumps(self.rules.as_options(), sort_keys=True)

    def _run_keys_from_log(self, run: dict[str, Any]) -> RunKeys:
        """Only the key column of each observation batch is used, one event at a time, and only the sets of
        normalized keys are kept: less than half the cost of recomputing the reconciliation, and a fraction of
        its memory."""
        from keysync.domain.columns import text_array
        from keysync.domain.normalization import normalize_array
        from keysync.projections.changes import RunKeys

        kpis = json.loads(run["kpis"]) if run["kpis"] else {}
        sources = kpis.get("sources", {})
        if any(s["holder"] != run["originator_id"] or s["depth"] for s in sources.values()):
            # An incremental run: its systems' rows are partly other runs'. Each system's rows are read from the
            # run holding them.
            systems = kpis.get("systems", {}).items()
            available = {s for s, found in systems if found.get("status") in ("ok", "suspect")}
            if available and available == set(sources):
                snapshots = self.store.rows_held({s: state["holder"] for s, state in sources.items()})
            else:  # a store written before every run listed its sources
                snapshots, _ = self.store.run_snapshots(run["originator_id"])
            found = {
                s: set(normalize_array(snapshot.keys, self.rules).to_pylist()) for s, snapshot in snapshots.items()
            }
            for found_keys in found.values():
                found_keys.discard("")
            return RunKeys.from_keys(run["run_id"], found)
        keys: dict[str, set[str]] = {}
        for event in self.store.events.get(UUID(run["originator_id"])):
            if isinstance(event, ReconciliationRun.SourceRead):
                keys[event.system] = set()
            elif isinstance(event, ReconciliationRun.RowsObserved | ReconciliationRun.KeysObserved):
                observed = isinstance(event, ReconciliationRun.RowsObserved)
                column = event.rows.column("key") if observed else text_array(event.keys)
                keys[event.system].update(normalize_array(column, self.rules).to_pylist())
        for found in keys.values():
            found.discard("")  # a key that normalizes to nothing is a rejected row, not a key
        return RunKeys.from_keys(run["run_id"], keys)

    def dry_run_shown(self) -> str:
        """The run id of the dry run whose preview the report folder holds ("" if its summary is not a dry run's)."""
        try:
            with (self.output_dir / SUMMARY).open(encoding="utf-8", newline="") as handle:
                first = next(csv.DictReader(handle), None)
        except (OSError, UnicodeDecodeError, csv.Error):
            return ""
        return first["run_id"] if first and (first.get("mode") or "").endswith("(dry-run)") else ""

    def _reports_present(self) -> bool:
        return all((self.output_dir / name).exists() for name in REPORTS)


# The parts of a run's stored keys (Views.save_run_keys).
AUTHORITY_PART, MISSING_IN_A_PART, GAPS_PART = "authority", "missing_in_a", "missing_from_system"


def _registry_changes(
    before: pa.Table | None, after: pa.Table, changed: list[pa.Array]
) -> tuple[pa.Table, dict[str, list[str]]]:
    """What folding events turned the registry rows ``before`` into ``after``: the rows changed (``changed``: their
    master keys, and every row added), by master key, and the master keys whose last_seen_run_id alone changed, by
    its new value (one bulk update each; in key order, as B-tree updates in order are faster)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    count = before.num_rows if before is not None else 0
    if before is None or not after.slice(0, count)["master_key"].equals(before["master_key"]):
        rows, seen = after, None  # rows moved (a key proposed again): every row is written
    else:
        masters = pa.chunked_array(changed, pa.string()).unique()
        kept = after.slice(0, count)
        whole = pc.is_in(kept["master_key"], value_set=masters)
        rows = pa.concat_tables([kept.filter(whole), after.slice(count)])  # changed, and added
        moved = pc.and_(pc.not_equal(kept[LAST_SEEN], before[LAST_SEEN]), pc.invert(whole))
        seen = kept.filter(moved).select(["master_key", LAST_SEEN])
    rows = rows.take(pc.sort_indices(rows["master_key"]))
    grouped: dict[str, list[str]] = {}
    if seen is not None and seen.num_rows:
        seen = seen.take(pc.sort_indices(seen["master_key"]))
        for master, value in zip(seen["master_key"].to_pylist(), seen[LAST_SEEN].to_pylist(), strict=True):
            grouped.setdefault(value, []).append(master)
    return rows, grouped


def _held_back(run: dict[str, Any]) -> dict[str, str]:
    """The systems whose export a completed run held back as suspect, and why (its history row's KPIs)."""
    kpis = json.loads(run["kpis"]) if run["kpis"] else {}
    return {
        system: found.get("status_reason", "")
        for system, found in kpis.get("systems", {}).items()
        if found.get("status") == "suspect"
    }


def _basis(completed: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose reconciliation the latest completed run's results are: itself, or the run it carried over
    (``completed`` is the completed runs' history rows, newest first)."""
    latest = completed[0]
    carried = json.loads(latest["kpis"]).get("carried_from") if latest["kpis"] else None
    return next((r for r in completed if r["run_id"] == carried), latest) if carried else latest


def _basis_event(basis: dict[str, Any], audit: list[dict[str, Any]]) -> int:
    """The notification id of the basis run's Completed event (0 if the audit view does not hold it)."""
    return next(
        (
            int(a["event_id"])
            for a in reversed(audit)
            if a["run_id"] == basis["run_id"] and a["event_type"] == "Completed"
        ),
        0,
    )

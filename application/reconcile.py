"""The reconciliation use case, in two stages.

1. observe: read every system and record what was seen on the run aggregate, one checkpoint (save) per system,
   so that a run killed half-way resumes with the systems it had already recorded;
2. conclude: classify the keys, update the registry and complete the run, in one final save.

An incremental run (keysync.application.incremental) fingerprints each export first: an unchanged one is not
read (``SourceUnchanged`` names the run that holds its rows), and a changed one is read whole and recorded as its
delta on the rows of the run that held them (keysync.domain.row_delta), or whole when a delta would not be smaller
or cannot say it (rows reordered). When no export changed and the rules are the same, the run carries the last
reconciliation over instead of redoing it.

Either way an export whose valid rows fell too far is held back as suspect, and the rows of the
system's last accepted export stand in for it (keysync.application.suspect).
"""

from __future__ import annotations

import functools
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from keysync.application.incremental import BaseSnapshot, Incremental, SourceState
from keysync.application.ports import ExportKeeping, ReadTurn, SourceReader
from keysync.application.retry import GaveUp, RetryPolicy, call_with_retries
from keysync.application.suspect import MAX_SHRINK, Accepted, ShrinkGuard, valid_rows
from keysync.domain.observations import AUTHORITY, SYSTEMS, Fingerprint, SourceSnapshot
from keysync.domain.registry import Registry, RunDecisions
from keysync.domain.rules import NormalizationRules
from keysync.domain.run import MAX_DEPTH, RECORDINGS, ReconciliationRun, snapshots_from_events
from keysync.domain.run import ReconciliationRun as Run

if TYPE_CHECKING:  # the comparison (numpy, pyarrow) is loaded by the runs that compare
    from keysync.domain.reconciliation import PreparedKeys, Reconciliation, SystemResult


@attrs.frozen
class SourceSpec:
    system: str
    path: Path
    kind: str = "csv"


@attrs.frozen
class RunSettings:
    """Everything a run needs to know, resolved from the config file and the command line."""

    sources: Mapping[str, SourceSpec]
    rules: NormalizationRules
    strategy: str = "mirror"
    mode: str = "full"
    auto_approve: bool = False
    dry_run: bool = False
    batch_size: int = 100_000
    max_key_length: int = 256
    max_file_mb: int = 2048  # recorded with the run: rows read under other limits are not reused
    parallel: bool = True
    actor: str = "keysync"
    as_of: str = ""  # the moment the data describes, when it is not now (a replayed snapshot's date)
    retry: RetryPolicy = attrs.Factory(RetryPolicy)  # each system's read: time limit, retries, backoff
    max_shrink: float = MAX_SHRINK  # the share of its valid rows an export may lose before it is held back
    accept_shrink: frozenset[str] = frozenset()  # systems whose new export is taken as it is, however small

    def resuming(self, run: ReconciliationRun) -> RunSettings:
        """These settings with the decisions an interrupted run had already made (rules, strategy...)."""
        options = run.options
        return attrs.evolve(
            self,
            rules=NormalizationRules(**options["rules"]),
            strategy=options["strategy"],
            auto_approve=options["auto_approve"],
            mode=run.mode,
        )


class RunFailed(Exception):
    """The run could not reconcile (System A unusable); the failure is recorded unless it was a dry run."""

    def __init__(self, run: ReconciliationRun, reason: str):
        super().__init__(reason)
        self.run = run
        self.reason = reason


@attrs.frozen
class HeldExport:
    """What a run read of an export it held back as suspect (keysync.application.suspect): a resumed run reads it
    again when the export changed since, or when the resumed run would take it."""

    file: str
    fingerprint: Fingerprint | None  # None: read by a reader that gives none (nothing to compare with)
    rows: int  # its valid rows

    def unchanged(self, now: Fingerprint) -> bool:
        return self.fingerprint is not None and self.fingerprint.same_content(now)


@attrs.define
class Observation:
    """A run's observations so far: a new run has none, a resumed one has what it had recorded."""

    run: ReconciliationRun
    snapshots: dict[str, SourceSnapshot] = attrs.Factory(dict)
    reasons: dict[str, str] = attrs.Factory(dict)  # unavailable system -> why
    timings: dict[str, float] = attrs.Factory(dict)
    resumed: bool = False
    began: float = attrs.Factory(time.perf_counter)
    states: dict[str, SourceState] = attrs.Factory(dict)  # where each observed system's rows now are
    rules_changed: bool = False  # the rules or strategy differ from the last completed run's
    # Hash the lines of the exports read, for the next incremental run: only where one is expected (an incremental
    # run, or a full run after one), as hashing costs a full run a tenth of its time and memory.
    keep_lines: bool = False
    unchanged: set[str] = attrs.Factory(set)  # systems whose export had not changed (incremental runs)
    superseded: dict[str, str] = attrs.Factory(dict)  # resumed: system read again -> why (application.resume)
    guard: ShrinkGuard | None = None  # holds back suspect exports (None: every export is taken as it is)
    held: dict[str, HeldExport] = attrs.Factory(dict)  # held-back system -> the export read and held back
    comparison: Future[Reconciliation] | None = None  # the snapshots' reconciliation, begun once they were known
    prepared: dict[str, PreparedKeys] = attrs.Factory(dict)  # keys of snapshots read now, prepared as each was read
    normalized: dict[str, Any] = attrs.Factory(dict)  # the keys normalized of each system read now, to keep
    release: Callable[[], None] = lambda: None  # gives back the memory a phase touched of rows kept out of it
    turn: ReadTurn = lambda _path: nullcontext()  # waits until an export may be read beside the others

    @classmethod
    def resume(cls, run: ReconciliationRun, events: list[Any], base_snapshot: BaseSnapshot) -> Observation:
        snapshots, reasons = snapshots_from_events(events, base_snapshot)
        observation = cls(run, snapshots, reasons, resumed=True)
        holder = str(run.id)
        recorded: dict[str, tuple[str, Fingerprint, str, int]] = {}  # a system's latest recording wins
        for e in events:
            if isinstance(e, RECORDINGS):
                recorded.pop(e.system, None)
                observation.unchanged.discard(e.system)
                observation.held.pop(e.system, None)
            match e:
                case Run.SourceHeldBack():
                    fingerprint = Fingerprint(*e.fingerprint) if e.fingerprint else None
                    observation.held[e.system] = HeldExport(e.file, fingerprint, e.rows)
                case Run.SourceRead() if e.fingerprint:
                    recorded[e.system] = (e.file, Fingerprint(*e.fingerprint), holder, 0)
                case Run.SourceChanged() if e.fingerprint:  # recorded as its delta on the base's rows
                    recorded[e.system] = (e.file, Fingerprint(*e.fingerprint), holder, e.depth)
                case Run.SourceUnchanged() if e.fingerprint:
                    recorded[e.system] = (e.file, Fingerprint(*e.fingerprint), e.base, e.depth)
                    observation.unchanged.add(e.system)
        for system, (file, fingerprint, at, depth) in recorded.items():
            observation.states[system] = SourceState(file, fingerprint, at, depth, len(snapshots[system]))
        return observation

    @property
    def held_back(self) -> dict[str, str]:
        """The systems whose export was held back as suspect, and why (kept on the run: a resumed run has them)."""
        return self.run.held_back

    @property
    def pending(self) -> list[str]:
        return [s for s in SYSTEMS if s not in self.snapshots and s not in self.reasons and s not in self.unchanged]


@attrs.frozen
class RunResult:
    run: ReconciliationRun
    registry: Registry | None  # None, as the reconciliation, when the run carried the last one over
    reconciliation: Reconciliation | None
    proposed: list[str]
    timings: dict[str, float]
    resumed: bool = False
    decisions: RunDecisions | None = None  # the run's registry decisions (None when it carried the last over)

    @property
    def run_id(self) -> str:
        return self.run.run_id


Progress = Callable[[str], None]
Checkpoint = Callable[[ReconciliationRun], None]


def new_run(settings: RunSettings) -> ReconciliationRun:
    return ReconciliationRun(
        run_id=uuid.uuid4().hex[:12],
        mode=settings.mode,
        options={
            "rules": settings.rules.as_options(),
            "strategy": settings.strategy,
            "auto_approve": settings.auto_approve,
            "dry_run": settings.dry_run,
            "reading": {"max_key_length": settings.max_key_length, "max_file_mb": settings.max_file_mb},
            **({"as_of": settings.as_of} if settings.as_of else {}),
        },
        actor=settings.actor,
    )


def observe(
    settings: RunSettings,
    observation: Observation,
    read_source: SourceReader,
    checkpoint: Checkpoint,
    progress: Progress | None = None,
    incremental: Incremental | None = None,
    exports: ExportKeeping | None = None,
) -> Observation:
    """Read the systems not yet observed and record each one, with a checkpoint after each. An incremental run
    first records the unchanged exports as such, and reads only the others: as what changed since the export
    before, when ``exports`` kept that one. What each system's recording holds is kept there for the next run."""
    say = progress or (lambda _phase: None)
    run, timings = observation.run, observation.timings
    if not observation.resumed:
        checkpoint(run)
    if incremental is not None:
        say("checking sources for changes")
        with timed(timings, "read"):
            _skip_unchanged(settings, observation, incremental, checkpoint)
    pending = observation.pending
    if not pending:
        return observation
    say("reading sources")
    with timed(timings, "read"):
        since = _since(settings, observation, incremental, exports)
        keep_lines = exports is not None and observation.keep_lines and not settings.dry_run
        stage = None
        if exports is not None and not settings.dry_run:  # each system's keys normalized, kept out of memory
            stage = functools.partial(exports.stage, rules=_rules_key(settings))
        outcomes = _read_all(settings, read_source, pending, observation.turn, observation.prepared, since,
                             keep_lines=keep_lines, release=observation.release, stage=stage)  # fmt: skip
        observation.normalized = {s: k.normalized for s, k in observation.prepared.items()}  # to keep
        suspicions = _suspicions(settings, observation, outcomes)
        _take(observation, outcomes, suspicions)
    # What the run will compare is known now: compare it while the observations are being recorded (mostly
    # encoding and writing, so the two share the cores well).
    observation.comparison = _compare_meanwhile(settings, observation, incremental, exports)
    for system in pending:
        with timed(timings, "store"):
            outcome, recorded = outcomes[system], None
            if system in suspicions:
                assert isinstance(outcome, SourceSnapshot) and observation.guard is not None
                _hold_back(observation, observation.guard, outcome, suspicions[system])
            elif isinstance(outcome, SourceSnapshot):
                _record(settings, observation, outcome, incremental)
                recorded = outcome
            else:
                run.mark_unavailable(system, str(settings.sources[system].path), outcome)
            checkpoint(run)
            normalized = observation.normalized.pop(system, None)
            if recorded is not None and exports is not None and not settings.dry_run:
                # What the system's rows are now, and their keys normalized, for the next run.
                keys = (_rules_key(settings), normalized) if normalized is not None else None
                exports.keep(str(run.id), recorded, keys)
            observation.release()  # recording read every column of the system's rows
    return observation


def _since(
    settings: RunSettings, observation: Observation, incremental: Incremental | None, exports: ExportKeeping | None
) -> dict[str, Since]:
    """For each system to read, the export before it as kept beside the store (with its keys normalized under the
    run's rules, if kept so), if it was read as this run reads: then only what changed since is parsed and
    normalized."""
    if incremental is None or exports is None or not incremental.baseline.reads_like(observation.run.options):
        return {}
    found = {}
    for system in observation.pending:
        base = incremental.baseline.sources.get(system)
        if base is None or base.file != str(settings.sources[system].path):
            continue
        if incremental.holder_reads_like(base.holder, observation.run.options):
            kept = exports.kept(base.holder, system, base.fingerprint)
            if kept is not None:
                found[system] = Since(kept, exports.normalized(base.holder, system, _rules_key(settings)))
    return found


@attrs.frozen
class Since:
    """An earlier export of a system as kept beside the store, and its keys normalized (None: not kept so)."""

    snapshot: SourceSnapshot
    normalized: Any


def _rules_key(settings: RunSettings) -> str:
    return json.dumps(settings.rules.as_options(), sort_keys=True)


def _suspicions(
    settings: RunSettings, observation: Observation, outcomes: Mapping[str, SourceSnapshot | str]
) -> dict[str, str]:
    """The systems whose export read now is held back as suspect, and why."""
    guard, found = observation.guard, {}
    for system, outcome in outcomes.items():
        if guard is not None and isinstance(outcome, SourceSnapshot) and guard.guards(system):
            suspicion = guard.suspicion(system, valid_rows(outcome, settings.rules))
            if suspicion:
                found[system] = suspicion
    return found


def _take(
    observation: Observation, outcomes: Mapping[str, SourceSnapshot | str], suspicions: Mapping[str, str]
) -> None:
    """Note what the run will compare for each system read now: its export, the rows of its last accepted export
    when this one is held back, or why it is unavailable."""
    for system, outcome in outcomes.items():
        if system in suspicions:
            assert observation.guard is not None
            observation.prepared.pop(system, None)  # its keys were prepared for rows that are not compared
            accepted = observation.guard.accepted[system]
            observation.snapshots[system] = observation.guard.rows_of(accepted.holder, system)
        elif isinstance(outcome, SourceSnapshot):
            observation.snapshots[system] = outcome
        else:
            observation.reasons[system] = outcome


def _compare_meanwhile(
    settings: RunSettings, observation: Observation, incremental: Incremental | None, exports: ExportKeeping | None
) -> Future[Reconciliation] | None:
    """Start comparing the run's snapshots in a thread; None when there is nothing to compare (System A
    unavailable: the run fails)."""
    if AUTHORITY in observation.reasons:
        return None
    _unchanged_rows(settings, observation, incremental, exports)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="compare")
    try:
        snapshots = dict(observation.snapshots)
        prepared = {s: k for s, k in observation.prepared.items() if s in snapshots}
        observation.prepared = {}  # the comparison takes them over
        return pool.submit(_compare, settings, snapshots, dict(observation.reasons), observation.release, prepared)
    finally:
        pool.shutdown(wait=False)


def _compare(
    settings: RunSettings,
    snapshots: Mapping[str, SourceSnapshot],
    reasons: Mapping[str, str],
    release: Callable[[], None] = lambda: None,
    prepared: dict[str, PreparedKeys] | None = None,
) -> Reconciliation:
    from keysync.domain.reconciliation import reconcile

    return reconcile(
        snapshots,
        settings.rules,
        settings.strategy,
        unavailable_reasons=reasons,
        between_steps=release,
        prepared=prepared,
    )


def _unchanged_rows(
    settings: RunSettings, observation: Observation, incremental: Incremental | None, exports: ExportKeeping | None
) -> None:
    """The rows of each system whose export had not changed: those of the run holding them, as kept beside the
    store (with their keys normalized, if kept under these rules), else from the log."""
    if incremental is not None:
        for system in observation.unchanged - set(observation.snapshots):
            state = observation.states[system]
            kept = exports.kept(state.holder, system, state.fingerprint) if exports is not None else None
            observation.snapshots[system] = kept or incremental.base_snapshot(state.holder, system)
            normalized = exports.normalized(state.holder, system, _rules_key(settings)) if kept else None
            if normalized is not None and system not in observation.prepared:
                from keysync.domain.normalization import letter_loss_candidates
                from keysync.domain.reconciliation import PreparedKeys

                unusual = letter_loss_candidates(kept.keys) if settings.rules.drops_letters else None
                observation.prepared[system] = PreparedKeys(normalized, unusual)


def _skip_unchanged(
    settings: RunSettings, observation: Observation, incremental: Incremental, checkpoint: Checkpoint
) -> None:
    """Record every export that has not changed since the baseline, with one checkpoint for them all. Rows read
    under other limits (max_key_length, max_file_mb) are not reused: every export is read again."""
    if not incremental.baseline.reads_like(observation.run.options):
        return
    for system in observation.pending:
        state = incremental.baseline.sources.get(system)
        path = settings.sources[system].path
        if state is None or str(path) != state.file:
            continue
        if not incremental.holder_reads_like(state.holder, observation.run.options):
            continue
        now = incremental.fingerprint(path, state.fingerprint)
        if now is None or not state.unchanged(now):
            continue
        observation.run.observe_unchanged(system, state.file, now, state.holder, state.depth, state.rows)
        observation.unchanged.add(system)
        observation.states[system] = attrs.evolve(state, fingerprint=now)
    if observation.unchanged:
        checkpoint(observation.run)


def _record(
    settings: RunSettings, observation: Observation, snapshot: SourceSnapshot, incremental: Incremental | None = None
) -> None:
    """Record a system's export: this run's events hold its rows from now on, whole, or as their delta on the rows
    of the run that held them before (when it was read as what changed since, and the delta is the smaller)."""
    run, depth = observation.run, 0
    base = incremental.baseline.sources.get(snapshot.system) if incremental is not None else None
    delta = snapshot.delta
    if delta is None or base is None or base.depth >= MAX_DEPTH or 2 * delta.size >= len(snapshot):
        run.observe(snapshot, settings.batch_size)
    else:
        depth = base.depth + 1
        run.observe_changes(snapshot, base.holder, depth, delta, settings.batch_size)
    if snapshot.fingerprint is not None:
        observation.states[snapshot.system] = SourceState(
            snapshot.file, snapshot.fingerprint, str(run.id), depth, len(snapshot)
        )


def _hold_back(observation: Observation, guard: ShrinkGuard, snapshot: SourceSnapshot, reason: str) -> None:
    """Record a suspect export as held back: the rows of the system's last accepted export stand in for it."""
    system = snapshot.system
    accepted = guard.accepted[system]
    observation.run.hold_back(snapshot, reason, accepted.as_json())
    observation.held[system] = HeldExport(snapshot.file, snapshot.fingerprint, len(snapshot))
    state = accepted.state()
    if state is not None:  # the next incremental run compares the export with the accepted one
        observation.states[system] = state


def carry_over(settings: RunSettings, observation: Observation, incremental: Incremental | None) -> RunResult | None:
    """Complete an incremental run that found no export changed, with the same rules as its baseline: the
    reconciliation is the baseline's and there is no registry decision to make. None if the run must reconcile."""
    if incremental is None or settings.dry_run or observation.unchanged != set(SYSTEMS):
        return None
    baseline, run = incremental.baseline, observation.run
    if not baseline.decides_like(run.options):
        return None
    if any(counts.get("status") == "suspect" for counts in baseline.kpis.get("systems", {}).values()):
        return None  # the held-back export is gone again: this run's summary is not that run's
    kpis = {**baseline.kpis, **_decided(RunDecisions(), auto_approve=False), "carried_from": baseline.basis}
    kpis.update(duration_s=round(time.perf_counter() - observation.began, 3), sources=_sources(observation))
    kpis["recorded"] = _recorded(observation)
    run.complete(kpis)
    return RunResult(run, None, None, [], observation.timings, observation.resumed)


def conclude(
    settings: RunSettings,
    observation: Observation,
    registry: Registry,
    progress: Progress | None = None,
    incremental: Incremental | None = None,
    exports: ExportKeeping | None = None,
) -> RunResult:
    """Classify, update the registry and complete the run. The caller saves the run and the registry together."""
    say = progress or (lambda _phase: None)
    run, timings = observation.run, observation.timings
    if AUTHORITY in observation.reasons:
        reason = f"System A is the authority and could not be read: {observation.reasons[AUTHORITY]}"
        run.fail(reason)
        raise RunFailed(run, reason)
    _unchanged_rows(settings, observation, incremental, exports)
    say("normalizing and comparing")
    with timed(timings, "compare"):
        if observation.comparison is not None:
            recon = observation.comparison.result()
        else:
            recon = _compare(settings, observation.snapshots, observation.reasons, observation.release,
                             observation.prepared)  # fmt: skip
    if not recon.authority.unique_keys:
        authority = recon.authority
        rejected = authority.rejected[:3]
        examples = "; ".join(f"line {r.line}: {r.reason}" for r in rejected)
        reason = (
            f"System A ({observation.snapshots[AUTHORITY].file}) has no valid keys: nothing to reconcile against "
            f"({authority.snapshot.rows_read if authority.snapshot is not None else 0} rows read, "
            f"{authority.rows_rejected} rejected{': ' + examples if examples else ''})"
        )
        run.fail(reason)
        raise RunFailed(run, reason)
    return settle(settings, observation, recon, registry, progress=say)


def settle(
    settings: RunSettings,
    observation: Observation,
    recon: Reconciliation,
    registry: Registry,
    progress: Progress | None = None,
) -> RunResult:
    """Record the run's findings in the registry and complete the run (no I/O: safe to retry on a conflict)."""
    (progress or (lambda _phase: None))("updating the registry")
    run = observation.run
    decided = registry.decide_run(
        run.run_id,
        recon.out_of_authority(),
        recon.authority.key_array(),
        recon.available_systems,
        auto_approve=settings.auto_approve,
        actor=settings.actor,
        rules_changed=observation.rules_changed,
    )
    kpis = _kpis(recon, decided, settings.auto_approve, time.perf_counter() - observation.began, run.held_back)
    if settings.mode == "incremental":
        kpis["recorded"] = _recorded(observation)
    kpis.update(sources=_sources(observation), accepted=_accepted(observation))
    run.complete(kpis)
    return RunResult(
        run, registry, recon, decided.proposed, observation.timings, observation.resumed, decisions=decided
    )


def _read_all(
    settings: RunSettings,
    read_source: SourceReader,
    systems: list[str],
    turn: ReadTurn = lambda _path: nullcontext(),
    prepared: dict[str, PreparedKeys] | None = None,
    since: dict[str, Since] | None = None,
    *,
    keep_lines: bool = False,
    release: Callable[[], None] = lambda: None,
    stage: Callable[[str, Any], Any] | None = None,
) -> dict[str, SourceSnapshot | str]:
    """Each system's snapshot, or why it is unavailable for this run. Each read gets ``settings.retry``: a time
    limit per attempt and retries with backoff (keysync.application.retry); a system whose every attempt failed is
    unavailable, with a reason naming the attempts ("input/B.csv: timed out after 300 s, 3 attempts"). A read
    waits for its ``turn`` before its time starts, and gives it back when it is done or given up on. With
    ``prepared``, each export's keys are prepared for comparing there as soon as it is read, beside the reading
    of the others (the next export's included: its turn comes once this one's rows are read). ``since`` and
    ``keep_lines`` go to the reader (keysync.application.ports.SourceReader); ``since`` is taken over, each
    system's entry let go once read (at ten million rows, each holds hundreds of megabytes), and ``release`` gives
    back the pages read of the files they are in. ``stage`` keeps a large export's keys normalized out of memory."""
    earlier = since if since is not None else {}

    def read(system: str) -> SourceSnapshot | str:
        spec = settings.sources[system]

        def attempt() -> SourceSnapshot:
            before = earlier.get(system)
            return read_source(system, spec.path, spec.kind, max_key_length=settings.max_key_length,
                               keep_lines=keep_lines, since=before.snapshot if before else None)  # fmt: skip

        try:
            with turn(spec.path):  # the turn bounds the memory of parsing: the next export's may start after it
                snapshot = call_with_retries(attempt, settings.retry, what=f"reading System {system}")
        except GaveUp as error:  # a reader's own reasons name the file; a time limit's does not
            earlier.pop(system, None)
            return str(error) if str(spec.path) in str(error) else f"{spec.path}: {error}"
        before = earlier.pop(system, None)
        if prepared is not None:
            from keysync.domain.reconciliation import prepare

            keys = prepare(snapshot, settings.rules, before.normalized if before else None)
            if stage is not None and len(snapshot) >= STAGED_ROWS:
                keys = attrs.evolve(keys, normalized=stage(system, normalized=keys.normalized))
            prepared[system] = keys
        del before
        release()  # the pages of the earlier rows and keys read from their files
        return snapshot

    if settings.parallel and len(systems) > 1:
        # Exports read as their changed lines work in numpy and pandas more than in the parser, holding the GIL at
        # times: more of them at once than there are processors adds memory, not speed.
        workers = min(len(systems), os.cpu_count() or 1) if earlier else len(systems)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return dict(zip(systems, pool.map(read, systems), strict=True))
    return {system: read(system) for system in systems}


STAGED_ROWS = 200_000  # an export's keys normalized are kept in a file (until kept for the next run) from this size
FIRST_FEW = 5  # master keys a run's KPIs name, of each kind of decision


def _kpis(
    recon: Reconciliation, decided: RunDecisions, auto_approve: bool, duration: float, held_back: Mapping[str, str]
) -> dict[str, Any]:
    per_system = {r.system: _system_kpis(r, held_back.get(r.system, "")) for r in recon.systems.values()}
    return {
        **recon.totals(),
        **_letters_lost(recon),
        **_decided(decided, auto_approve=auto_approve),
        "systems_unavailable": sorted(set(SYSTEMS) - recon.available_systems),
        "systems_suspect": sorted(held_back),
        "duration_s": round(duration, 3),
        "systems": per_system,
    }


def _letters_lost(recon: Reconciliation, examples: int = 3) -> dict[str, Any]:
    """How many distinct raw keys lost letters to strip_non_alnum, and a few of them with what they became."""
    from keysync.domain.normalization import normalize_key

    lost = recon.keys_that_lost_letters()
    shown = [[key, normalize_key(key, recon.rules)] for key in lost[:examples]]
    return {"letters_lost_count": len(lost), "letters_lost_examples": shown}


def _system_kpis(r: SystemResult, held_back: str) -> dict[str, Any]:
    """One system's counts; a held-back system's are those of the rows standing in for its export."""
    if held_back:
        status = {"status": "suspect", "status_reason": held_back}
    elif r.available:
        status = {"status": "ok"}
    else:
        status = {"status": "unavailable", "status_reason": r.unavailable_reason}
    return {
        **status,
        "rows_read": r.snapshot.rows_read if r.snapshot is not None else 0,
        "rows_rejected": r.rows_rejected,
        "unique_keys": r.unique_keys,
        "matched_in_A": r.matched,
        "missing_in_A": len(r.missing_in_a),
        "missing_from_system": len(r.missing_from_system),
        "duplicate_keys": len(r.duplicates),
        "match_rate": round(r.match_rate, 6),
    }


def _decided(decided: RunDecisions, *, auto_approve: bool) -> dict[str, Any]:
    """How many master keys a run proposed, deprecated and returned, with the first few of each and why."""
    proposed = decided.proposed
    return {
        "proposed_count": len(proposed),
        "proposed_first": proposed[:FIRST_FEW],
        "auto_approval_rate": (1.0 if proposed else 0.0) if auto_approve else 0.0,
        "deprecated_count": sum(map(len, decided.deprecated.values())),
        "deprecated": [
            {"reason": reason, "count": len(keys), "first": keys[:FIRST_FEW]}
            for reason, keys in decided.deprecated.items()
        ],
        "returned_count": sum(map(len, decided.returned.values())),
        "returned": [
            {"status": status, "count": len(keys), "first": keys[:FIRST_FEW]}
            for status, keys in decided.returned.items()
        ],
    }


def _accepted(observation: Observation) -> dict[str, Any]:
    """Each system's last accepted export after this run: the one read now, unless it was held back; the one
    before for a held-back or unavailable system (keysync.application.suspect)."""
    run, before = observation.run, observation.guard.accepted if observation.guard is not None else {}
    found: dict[str, Any] = {}
    for system in SYSTEMS:
        if system in run.stand_ins:
            found[system] = run.stand_ins[system]
        elif system in observation.snapshots and system not in observation.reasons:
            snapshot, state = observation.snapshots[system], observation.states.get(system)
            if state is not None:
                accepted = Accepted(run.run_id, state.holder, state.depth, state.rows, state.file,
                                    list(attrs.astuple(state.fingerprint)))  # fmt: skip
            else:
                accepted = Accepted(run.run_id, str(run.id), 0, len(snapshot), snapshot.file)
            found[system] = accepted.as_json()
        elif system in before:
            found[system] = before[system].as_json()
    return found


def _recorded(observation: Observation) -> dict[str, Any]:
    """How an incremental run recorded each system's export: "unchanged", "changes" (its delta on the rows
    recorded before), "whole" or "suspect" (held back)."""
    run_id, found = str(observation.run.id), {}
    for system, state in sorted(_states(observation).items()):
        if system in observation.held_back:
            found[system] = "suspect"
        elif state.holder != run_id:
            found[system] = "unchanged"
        else:
            found[system] = "whole" if state.depth == 0 else "changes"
    return found


def _sources(observation: Observation) -> dict[str, Any]:
    return {system: state.as_json() for system, state in sorted(_states(observation).items())}


def _states(observation: Observation) -> dict[str, SourceState]:
    """Where each observed system's rows are: a held-back system's are its accepted export's (also after a
    resume, which finds them on the run)."""
    states = dict(observation.states)
    for system, accepted in observation.run.stand_ins.items():
        state = Accepted.from_json(accepted).state()
        if state is not None:
            states[system] = state
    return states


@contextmanager
def timed(timings: dict[str, float], phase: str) -> Iterator[None]:
    begun = time.perf_counter()
    try:
        yield
    finally:
        timings[phase] = timings.get(phase, 0.0) + time.perf_counter() - begun

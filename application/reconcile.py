"""The reconciliation use case: read every system, record what was seen, classify, update the registry."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import attrs

from keysync.domain.normalization import NormalizationRules, normalize_keys
from keysync.domain.observations import AUTHORITY, SYSTEMS, SourceSnapshot, SourceUnavailable
from keysync.domain.reconciliation import Reconciliation, reconcile
from keysync.domain.registry import Registry
from keysync.domain.run import ReconciliationRun


class SourceReader(Protocol):
    def __call__(self, system: str, path: Path, kind: str, *, max_key_length: int) -> SourceSnapshot: ...


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
    parallel: bool = True
    actor: str = "keysync"


class RunFailed(Exception):
    """The run could not reconcile (System A unusable); the failure is recorded unless it was a dry run."""

    def __init__(self, run: ReconciliationRun, reason: str):
        super().__init__(reason)
        self.run = run
        self.reason = reason


@attrs.frozen
class RunResult:
    run: ReconciliationRun
    registry: Registry
    reconciliation: Reconciliation
    proposed: list[str]
    timings: dict[str, float]

    @property
    def run_id(self) -> str:
        return self.run.run_id


Progress = Callable[[str], None]


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def execute_run(
    settings: RunSettings,
    registry: Registry,
    read_source: SourceReader,
    progress: Progress | None = None,
) -> RunResult:
    """Carry out one run on fresh aggregates; the caller saves them (or, for a dry run, does not)."""
    say = progress or (lambda _phase: None)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    run = ReconciliationRun(
        run_id=new_run_id(),
        mode=settings.mode,
        options={
            "rules": attrs.asdict(settings.rules),
            "strategy": settings.strategy,
            "auto_approve": settings.auto_approve,
            "dry_run": settings.dry_run,
        },
        actor=settings.actor,
    )
    with _timed(timings, "read"):
        say("reading sources")
        snapshots, reasons = _read_all(settings, read_source)
    with _timed(timings, "store"):
        for system in SYSTEMS:
            if system in snapshots:
                run.observe(snapshots[system], settings.batch_size)
            else:
                run.mark_unavailable(system, str(settings.sources[system].path), reasons[system])
    if AUTHORITY in reasons:
        reason = f"System A is the authority and could not be read: {reasons[AUTHORITY]}"
        run.fail(reason)
        raise RunFailed(run, reason)

    def timed_normalize(keys: Any, rules: NormalizationRules) -> list[str]:
        begun = time.perf_counter()
        try:
            return normalize_keys(keys, rules)
        finally:
            timings["normalize"] = timings.get("normalize", 0.0) + time.perf_counter() - begun

    say("normalizing and comparing")
    begun = time.perf_counter()
    recon = reconcile(
        snapshots, settings.rules, settings.strategy, unavailable_reasons=reasons, normalizer=timed_normalize
    )
    timings["compare"] = time.perf_counter() - begun - timings.get("normalize", 0.0)
    if not recon.authority.unique_keys:
        reason = f"System A ({snapshots[AUTHORITY].file}) has no valid keys: nothing to reconcile against"
        run.fail(reason)
        raise RunFailed(run, reason)

    say("updating the registry")
    proposed = registry.record_run(
        run.run_id,
        recon.out_of_authority(),
        recon.authority.first_row.keys(),
        recon.available_systems,
        auto_approve=settings.auto_approve,
        actor=settings.actor,
    )
    run.complete(_kpis(recon, proposed, settings.auto_approve, time.perf_counter() - started))
    return RunResult(run, registry, recon, proposed, timings)


def _read_all(settings: RunSettings, read_source: SourceReader) -> tuple[dict[str, SourceSnapshot], dict[str, str]]:
    def read(system: str) -> SourceSnapshot | str:
        spec = settings.sources[system]
        try:
            return read_source(system, spec.path, spec.kind, max_key_length=settings.max_key_length)
        except SourceUnavailable as error:
            return str(error)

    if settings.parallel:
        with ThreadPoolExecutor(max_workers=len(SYSTEMS)) as pool:
            outcomes = dict(zip(SYSTEMS, pool.map(read, SYSTEMS), strict=True))
    else:
        outcomes = {system: read(system) for system in SYSTEMS}
    snapshots = {s: o for s, o in outcomes.items() if isinstance(o, SourceSnapshot)}
    reasons = {s: o for s, o in outcomes.items() if isinstance(o, str)}
    return snapshots, reasons


def _kpis(recon: Reconciliation, proposed: list[str], auto_approve: bool, duration: float) -> dict[str, Any]:
    per_system = {
        r.system: {
            "status": "ok" if r.available else "unavailable",
            "rows_read": r.snapshot.rows_read if r.snapshot else 0,
            "rows_rejected": r.rows_rejected,
            "unique_keys": r.unique_keys,
            "matched_in_A": r.matched,
            "missing_in_A": len(r.missing_in_a),
            "missing_from_system": len(r.missing_from_system),
            "duplicate_keys": len(r.duplicates),
            "match_rate": round(r.match_rate, 6),
        }
        for r in recon.systems.values()
    }
    return {
        **recon.totals(),
        "proposed_count": len(proposed),
        "auto_approval_rate": (1.0 if proposed else 0.0) if auto_approve else 0.0,
        "systems_unavailable": sorted(set(SYSTEMS) - recon.available_systems),
        "duration_s": round(duration, 3),
        "systems": per_system,
    }


@contextmanager
def _timed(timings: dict[str, float], phase: str):  # type: ignore[no-untyped-def]
    begun = time.perf_counter()
    try:
        yield
    finally:
        timings[phase] = timings.get(phase, 0.0) + time.perf_counter() - begun

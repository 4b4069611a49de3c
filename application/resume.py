"""What a resumed run does before it reads on: make sure that what it recorded before the interruption still
describes the exports.

A run records each system as it goes (keysync.application.reconcile.observe). Resumed later, it would otherwise
reconcile rows that the exports no longer hold. So each recorded system's export is fingerprinted again (a stat;
a hash only when its size or time moved): one that changed, is missing now, or is configured from another file is
set aside (``SourceSuperseded``) and read again, as a fresh run would read it. A system that was unavailable and
whose export can be opened now is tried again too. A system recorded without a fingerprint (a store written
before fingerprints) is kept as it was recorded: there is nothing to compare it with.

A system whose export was held back as suspect is checked the same way, against the export that was read and held
back; it is read again too when the resumed run would take that export (``--accept-shrink`` for it now, or a
``max_shrink`` it stays within), and then held back again or taken, as this run decides.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keysync.domain.observations import SYSTEMS

if TYPE_CHECKING:
    from pathlib import Path

    from keysync.application.incremental import Fingerprinter
    from keysync.application.reconcile import Checkpoint, Observation, RunSettings

CHANGED = "changed since it was recorded"
GONE = "cannot be read now"
MOVED = "is configured from another file now"
BACK = "was unavailable when recorded and can be opened now"
ACCEPTED = "was held back as suspect and is taken as it is now (--accept-shrink)"
WITHIN = "was held back as suspect and is within processing.max_shrink now"


def recheck_recorded(
    settings: RunSettings, observation: Observation, fingerprint: Fingerprinter, checkpoint: Checkpoint
) -> dict[str, str]:
    """Set aside, with one checkpoint, every system whose recording no longer describes its export, so that the
    run reads it again; return them, each with why."""
    run, found = observation.run, {}
    for system in SYSTEMS:
        why = _stale(settings, observation, system, fingerprint)
        if why:
            run.supersede(system, str(settings.sources[system].path), why)
            _forget(observation, system)
            found[system] = why
    if found:
        checkpoint(run)
    observation.superseded.update(found)
    return found


def _stale(settings: RunSettings, observation: Observation, system: str, fingerprint: Fingerprinter) -> str:
    path = settings.sources[system].path
    if system in observation.reasons:
        return BACK if fingerprint(path, None) is not None else ""
    if system in observation.held:
        return _held_stale(observation, system, path, fingerprint)
    state = observation.states.get(system)
    if state is None:  # not recorded yet, or recorded without a fingerprint
        return ""
    if str(path) != state.file:
        return MOVED
    now = fingerprint(path, state.fingerprint)
    if now is None:
        return GONE
    return "" if state.unchanged(now) else CHANGED


def _held_stale(observation: Observation, system: str, path: Path, fingerprint: Fingerprinter) -> str:
    held = observation.held[system]
    if str(path) != held.file:
        return MOVED
    if held.fingerprint is not None:
        now = fingerprint(path, held.fingerprint)
        if now is None:
            return GONE
        if not held.unchanged(now):
            return CHANGED
    guard = observation.guard
    if guard is None or guard.suspicion(system, held.rows):
        return ""  # the interrupted run's decision stands: the same export, held back under the same terms
    return ACCEPTED if system in guard.accept else WITHIN


def _forget(observation: Observation, system: str) -> None:
    for found in (observation.snapshots, observation.reasons, observation.states, observation.held):
        found.pop(system, None)  # type: ignore[attr-defined]
    observation.unchanged.discard(system)

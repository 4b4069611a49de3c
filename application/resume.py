"""What a resumed run does before it reads on: make sure that what it recorded before the interruption still
describes the exports.

A run records each system as it goes (keysync.application.reconcile.observe). Resumed later, it would otherwise
reconcile rows that the exports no longer hold. So each recorded system's export is fingerprinted again (a stat;
a hash only when its size or time moved): one that changed, is missing now, or is configured from another file is
set aside (``SourceSuperseded``) and read again, as a fresh run would read it. A system that was unavailable and
whose export can be opened now is tried again too. A system recorded without a fingerprint (a store written
before fingerprints) is kept as it was recorded: there is nothing to compare it with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keysync.domain.observations import SYSTEMS

if TYPE_CHECKING:
    from keysync.application.incremental import Fingerprinter
    from keysync.application.reconcile import Checkpoint, Observation, RunSettings

CHANGED = "changed since it was recorded"
GONE = "cannot be read now"
MOVED = "is configured from another file now"
BACK = "was unavailable when recorded and can be opened now"


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
    state = observation.states.get(system)
    if state is None:  # not recorded yet, or recorded without a fingerprint
        return ""
    if str(path) != state.file:
        return MOVED
    now = fingerprint(path, state.fingerprint)
    if now is None:
        return GONE
    return "" if state.unchanged(now) else CHANGED


def _forget(observation: Observation, system: str) -> None:
    for found in (observation.snapshots, observation.reasons, observation.states, observation.deltas):
        found.pop(system, None)  # type: ignore[attr-defined]
    observation.unchanged.discard(system)

"""The master-key registry: one aggregate holding every master key's lifecycle.

Lifecycle: Proposed -> Active -> Deprecated, and Proposed -> Deprecated. Deprecated is final.

Why one aggregate and batch events: a run can propose hundreds of thousands of keys. One aggregate (or one event)
per key would make a run write hundreds of thousands of events; batching keeps a run to a handful, and
snapshots keep loading it cheap.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterable, Mapping
from functools import lru_cache
from operator import itemgetter
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from keysync.domain.reconciliation import OutOfAuthorityKey

PROPOSED, ACTIVE, DEPRECATED = "Proposed", "Active", "Deprecated"
STATUSES = (PROPOSED, ACTIVE, DEPRECATED)
_ALLOWED = {ACTIVE: {PROPOSED}, DEPRECATED: {PROPOSED, ACTIVE}}

REASON_IN_AUTHORITY = "key now exists in System A"
REASON_VANISHED = "source keys vanished from every system"
REASON_RULES_CHANGED = "not found in any system under the run's new normalization rules or strategy"
REASON_AUTO_APPROVED = "auto-approved"


class RegistryError(Exception):
    """A registry command that cannot be carried out; nothing was changed."""


class UnknownMasterKeyError(RegistryError):
    def __init__(self, keys: list[str]):
        shown = ", ".join(keys[:5]) + (f" (and {len(keys) - 5} more)" if len(keys) > 5 else "")
        super().__init__(f"unknown master key: {shown}")


class IllegalTransitionError(RegistryError):
    def __init__(self, key: str, status: str, target: str):
        super().__init__(f"cannot make {key} {target}: it is {status}")


class Registry(Aggregate):
    """Every master key's status, normalized key and source systems. Rows for reports live in projections."""

    @staticmethod
    def create_id() -> UUID:
        return REGISTRY_ID

    @event("Created")
    def __init__(self) -> None:
        self.status: dict[str, str] = {}
        self.normalized: dict[str, str] = {}
        self.systems: dict[str, str] = {}  # "B|D"

    def __deepcopy__(self, memo: dict[int, Any]) -> Registry:
        # Its maps hold strings only: copying the maps copies the registry, at C speed.
        copied = copy.copy(self)
        copied.status, copied.normalized, copied.systems = dict(self.status), dict(self.normalized), dict(self.systems)
        copied._pending_events = list(self._pending_events)
        return copied

    # Commands ------------------------------------------------------------------------------------------------

    def record_run(
        self,
        run_id: str,
        out_of_authority: Mapping[str, OutOfAuthorityKey],
        authority_keys: Collection[str],
        available_systems: Collection[str],
        *,
        auto_approve: bool,
        actor: str,
        rules_changed: bool = False,
    ) -> list[str]:
        """Register what a run found: propose new master keys, note the ones seen again, deprecate the ones
        that entered System A or vanished. Returns the newly proposed master keys. ``rules_changed``: the run
        normalizes or names keys otherwise than the run before, so a key not found may just be named otherwise
        now; its deprecation says so rather than that its source keys vanished."""
        status, systems = self.status, self.systems
        new = [m for m in out_of_authority if m not in status]
        # Deprecated keys that turn up again are noted too (last seen, source systems); they stay Deprecated.
        seen = [[m, _joined(systems[m], tuple(found.systems))] for m, found in out_of_authority.items() if m in status]
        if new:
            self._propose(run_id, [_entry(out_of_authority[m]) for m in new])
        if seen:
            self._see(run_id, seen)
        if auto_approve and new:
            self._activate(run_id, new, REASON_AUTO_APPROVED, actor)
        in_authority, vanished = [], []
        available = frozenset(available_systems)
        for master, state in self.status.items():
            if state == DEPRECATED or master in out_of_authority:
                continue
            if self.normalized[master] in authority_keys:
                in_authority.append(master)
            elif _split(systems[master]) <= available:
                # Only a key whose every source system was read this run can be said to have vanished.
                vanished.append(master)
        if in_authority:
            self._deprecate(run_id, in_authority, REASON_IN_AUTHORITY, actor)
        if vanished:
            self._deprecate(run_id, vanished, REASON_RULES_CHANGED if rules_changed else REASON_VANISHED, actor)
        return new

    def approve(self, keys: Iterable[str], actor: str) -> list[str]:
        """Activate Proposed keys. Raises without changing anything if any key is unknown or not Proposed."""
        keys = self._checked(keys, ACTIVE)
        if keys:
            self._activate("", keys, "approved", actor)
        return keys

    def approve_all(self, actor: str) -> list[str]:
        return self.approve([m for m, s in self.status.items() if s == PROPOSED], actor)

    def deprecate(self, keys: Iterable[str], reason: str, actor: str) -> list[str]:
        keys = self._checked(keys, DEPRECATED)
        if keys:
            self._deprecate("", keys, reason, actor)
        return keys

    def _checked(self, keys: Iterable[str], target: str) -> list[str]:
        keys = list(dict.fromkeys(keys))
        unknown = [k for k in keys if k not in self.status]
        if unknown:
            raise UnknownMasterKeyError(unknown)
        for key in keys:
            if self.status[key] not in _ALLOWED[target]:
                raise IllegalTransitionError(key, self.status[key], target)
        return keys

    # Events: each method body is the state change -------------------------------------------------------------

    # A batch holds up to every key a run found: each body updates the maps in C, not key by key in Python.

    @event("MasterKeysProposed")
    def _propose(self, run_id: str, entries: list[list[str]]) -> None:
        self.status.update(dict.fromkeys(map(_MASTER, entries), PROPOSED))
        self.normalized.update(map(_NORMALIZED, entries))
        self.systems.update(map(_SYSTEMS, entries))

    @event("MasterKeysSeen")
    def _see(self, run_id: str, entries: list[list[str]]) -> None:
        self.systems.update(entries)  # [master, systems] pairs

    @event("MasterKeysActivated")
    def _activate(self, run_id: str, master_keys: list[str], reason: str, actor: str) -> None:
        self.status.update(dict.fromkeys(master_keys, ACTIVE))

    @event("MasterKeysDeprecated")
    def _deprecate(self, run_id: str, master_keys: list[str], reason: str, actor: str) -> None:
        self.status.update(dict.fromkeys(master_keys, DEPRECATED))


REGISTRY_ID = uuid5(NAMESPACE_URL, "keysync:master-key-registry")

# A proposal entry is [master, normalized, systems, source_key].
_MASTER, _NORMALIZED, _SYSTEMS = itemgetter(0), itemgetter(0, 1), itemgetter(0, 2)


def _entry(found: OutOfAuthorityKey) -> list[str]:
    master, normalized, systems, source_key = found
    return [master, normalized, "|".join(systems), source_key]


# Source systems are few ("B|D"): the combinations are few, and a run meets each one thousands of times.
@lru_cache(maxsize=4096)
def _joined(existing: str, systems: tuple[str, ...]) -> str:
    return "|".join(sorted(_split(existing) | set(systems)))


@lru_cache(maxsize=4096)
def _split(systems: str) -> frozenset[str]:
    return frozenset(systems.split("|"))

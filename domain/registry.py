"""The master-key registry: one aggregate holding every master key's lifecycle.

Lifecycle: Proposed -> Active -> Deprecated, and Proposed -> Deprecated. A Deprecated key comes back to Active
by hand (``reactivate``), and a key deprecated by a run because its source keys were found in no system returns by
itself to the status it had (Active or Proposed) when a later run finds them again: one bad export must not cost
a key for good.

Why one aggregate and batch events: a run can propose hundreds of thousands of keys. One aggregate (or one event)
per key would make a run write hundreds of thousands of events; batching keeps a run to a handful, and
snapshots keep loading it cheap.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from operator import itemgetter
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from keysync.domain.ids import REGISTRY_ID
from keysync.domain.statuses import ACTIVE, DEPRECATED, PROPOSED

if TYPE_CHECKING:
    from keysync.domain.reconciliation import OutOfAuthorityKey

_ALLOWED = {ACTIVE: {PROPOSED}, DEPRECATED: {PROPOSED, ACTIVE}}

REASON_IN_AUTHORITY = "key now exists in System A"
REASON_VANISHED = "source keys vanished from every system"
REASON_RULES_CHANGED = "not found in any system under the run's new normalization rules or strategy"
REASON_AUTO_APPROVED = "auto-approved"
REASON_SEEN_AGAIN = "source keys seen again"
# Deprecations a run made because it found a key nowhere: a later run that finds it again takes them back.
REASONS_UNSEEN = (REASON_VANISHED, REASON_RULES_CHANGED)


class RegistryError(Exception):
    """A registry command that cannot be carried out; nothing was changed."""


class UnknownMasterKeyError(RegistryError):
    def __init__(self, keys: list[str]):
        shown = ", ".join(keys[:5]) + (f" (and {len(keys) - 5} more)" if len(keys) > 5 else "")
        super().__init__(f"unknown master key: {shown}")


class IllegalTransitionError(RegistryError):
    def __init__(self, key: str, status: str, target: str):
        super().__init__(f"cannot make {key} {target}: it is {status}")


@dataclass
class RunDecisions:
    """What a run decided in the registry: the keys it proposed, deprecated (by reason) and returned (by the
    status each returned to), each list in the order decided."""

    proposed: list[str] = field(default_factory=list)
    deprecated: dict[str, list[str]] = field(default_factory=dict)
    returned: dict[str, list[str]] = field(default_factory=dict)


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
        self.returns_to: dict[str, str] = {}  # key a run deprecated as found nowhere -> its status before

    @property
    def _returns_to(self) -> dict[str, str]:
        # A snapshot taken before keys could return has no such map: its keys return only by hand.
        if "returns_to" not in self.__dict__:
            self.returns_to = {}
        return self.returns_to

    def __deepcopy__(self, memo: dict[int, Any]) -> Registry:
        # Its maps hold strings only: copying the maps copies the registry, at C speed.
        copied = copy.copy(self)
        copied.status, copied.normalized, copied.systems = dict(self.status), dict(self.normalized), dict(self.systems)
        copied.returns_to = dict(self._returns_to)
        copied._pending_events = list(self._pending_events)
        return copied

    # Commands ------------------------------------------------------------------------------------------------

    def decide_run(
        self,
        run_id: str,
        out_of_authority: Mapping[str, OutOfAuthorityKey],
        authority_keys: Collection[str],
        available_systems: Collection[str],
        *,
        auto_approve: bool,
        actor: str,
        rules_changed: bool = False,
    ) -> RunDecisions:
        """Register what a run found: propose new master keys, note the ones seen again, return the ones a run
        had deprecated as found nowhere, deprecate the ones that entered System A or vanished. ``rules_changed``:
        the run normalizes or names keys otherwise than the run before, so a key not found may just be named
        otherwise now; its deprecation says so rather than that its source keys vanished."""
        status, systems, returns_to = self.status, self.systems, self._returns_to
        decided = RunDecisions(proposed=[m for m in out_of_authority if m not in status])
        new = decided.proposed
        # Deprecated keys that turn up again are noted too (last seen, source systems).
        seen = [[m, _joined(systems[m], tuple(found.systems))] for m, found in out_of_authority.items() if m in status]
        if new:
            self._propose(run_id, [_entry(out_of_authority[m]) for m in new])
        if seen:
            self._see(run_id, seen)
        if auto_approve and new:
            self._activate(run_id, new, REASON_AUTO_APPROVED, actor)
        if returns_to:
            for master, _ in seen:
                if status[master] == DEPRECATED and master in returns_to:
                    decided.returned.setdefault(returns_to[master], []).append(master)
            for back_to, masters in decided.returned.items():
                self._reactivate(run_id, masters, back_to, REASON_SEEN_AGAIN, actor)
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
            decided.deprecated[REASON_IN_AUTHORITY] = in_authority
        if vanished:
            reason = REASON_RULES_CHANGED if rules_changed else REASON_VANISHED
            self._deprecate(run_id, vanished, reason, actor)
            decided.deprecated[reason] = vanished
        return decided

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

    def reactivate(self, keys: Iterable[str], reason: str, actor: str) -> list[str]:
        """Bring Deprecated keys back to Active. Raises without changing anything if any key is unknown or not
        Deprecated."""
        keys = list(dict.fromkeys(keys))
        unknown = [k for k in keys if k not in self.status]
        if unknown:
            raise UnknownMasterKeyError(unknown)
        for key in keys:
            if self.status[key] != DEPRECATED:
                raise IllegalTransitionError(key, self.status[key], "Active again")
        if keys:
            self._reactivate("", keys, ACTIVE, reason, actor)
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
        # Derived from the state, so that deprecations stored before keys could return replay into it too.
        returns_to = self._returns_to
        if run_id and reason in REASONS_UNSEEN:
            returns_to.update(zip(master_keys, map(self.status.__getitem__, master_keys), strict=True))
        elif returns_to:
            for master in master_keys:
                returns_to.pop(master, None)
        self.status.update(dict.fromkeys(master_keys, DEPRECATED))

    @event("MasterKeysReactivated")
    def _reactivate(self, run_id: str, master_keys: list[str], status: str, reason: str, actor: str) -> None:
        self.status.update(dict.fromkeys(master_keys, status))
        returns_to = self._returns_to
        for master in master_keys:
            returns_to.pop(master, None)


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

"""The master-key registry: one aggregate holding every master key's lifecycle.

Lifecycle: Proposed -> Active -> Deprecated, and Proposed -> Deprecated. A Deprecated key comes back to Active
by hand (``reactivate``), and a key deprecated by a run because its source keys were found in no system returns by
itself to the status it had (Active or Proposed) when a later run finds them again: one bad export must not cost
a key for good.

Why one aggregate and batch events: a run can propose hundreds of thousands of keys. One aggregate (or one event)
per key would make a run write hundreds of thousands of events; batching keeps a run to a handful, and
snapshots keep loading it cheap.

What a run saw is recorded as what changed since the run before that saw anything (the latest sighting): the keys
seen again that it had not seen or whose source systems grew, and the keys it saw that this run did not. A key is
last seen by the latest sighting if that one saw it, else by the sighting before the one that stopped seeing it.
(Stores written before listed every key seen, every run; they still replay.)
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
    import pyarrow as pa

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
        # The master keys the latest sighting (the latest run that saw any) saw, and that run: a dict of None, which
        # JSON stores; None when not known (a snapshot taken before sightings were recorded as changes).
        self.seen: dict[str, None] | None = {}
        self.seen_by = ""

    @property
    def _returns_to(self) -> dict[str, str]:
        # A snapshot taken before keys could return has no such map: its keys return only by hand.
        if "returns_to" not in self.__dict__:
            self.returns_to = {}
        return self.returns_to

    @property
    def _seen(self) -> dict[str, None] | None:
        return self.__dict__.get("seen")

    def __deepcopy__(self, memo: dict[int, Any]) -> Registry:
        # Its maps hold strings only: copying the maps copies the registry, at C speed.
        copied = copy.copy(self)
        copied.status, copied.normalized, copied.systems = dict(self.status), dict(self.normalized), dict(self.systems)
        copied.returns_to = dict(self._returns_to)
        seen = self._seen
        copied.seen = None if seen is None else dict(seen)
        copied._pending_events = list(self._pending_events)
        return copied

    # Commands ------------------------------------------------------------------------------------------------

    def decide_run(
        self,
        run_id: str,
        out_of_authority: Mapping[str, OutOfAuthorityKey],
        authority_keys: Collection[str] | pa.Array,
        available_systems: Collection[str],
        *,
        auto_approve: bool,
        actor: str,
        rules_changed: bool = False,
    ) -> RunDecisions:
        """Register what a run found: propose new master keys, note what it saw that changed since the latest
        sighting, return the ones a run had deprecated as found nowhere, deprecate the ones that entered System A or
        vanished. ``authority_keys``: System A's normalized keys (an Arrow array is looked into for the keys not
        seen alone, with no Python string per key of A). ``rules_changed``: the run normalizes or names keys
        otherwise than the run before, so a key not found may just be named otherwise now; its deprecation says so
        rather than that its source keys vanished."""
        status, systems, returns_to = self.status, self.systems, self._returns_to
        decided = RunDecisions(proposed=[m for m in out_of_authority if m not in status])
        new = decided.proposed
        before = self._seen
        if before is None:  # not known which keys the latest sighting saw: list every known key seen, once
            entries = [[m, _joined(systems[m], tuple(f.systems))] for m, f in out_of_authority.items() if m in status]
            unseen: list[str] | None = None
        else:
            # Seen again, but not by the latest sighting (deprecated keys too), or in more systems than before. Most
            # keys are seen again in just the systems they have: one comparison of text tells those.
            entries = []
            for m, f in out_of_authority.items():
                known = systems.get(m)
                if known is None or (m in before and "|".join(f.systems) == known):
                    continue
                joined = _joined(known, tuple(f.systems))
                if joined != known or m not in before:
                    entries.append([m, joined])
            unseen = sorted(before.keys() - out_of_authority.keys())
        if entries or unseen or (before and out_of_authority):
            # Recorded even when nothing changed: the run is then the latest sighting, which saw what the one before
            # saw. Without it, the run's proposals alone start its sighting (so they do a first run's).
            self._see(run_id, entries, unseen)
        if new:
            self._propose(run_id, [_entry(out_of_authority[m]) for m in new])
        if auto_approve and new:
            self._activate(run_id, new, REASON_AUTO_APPROVED, actor)
        # Whether any key waiting to return was seen is asked of the shorter of the two, in C.
        if returns_to and not returns_to.keys().isdisjoint(out_of_authority.keys()):
            for master in out_of_authority:  # in the order found
                if master in returns_to and status[master] == DEPRECATED:
                    decided.returned.setdefault(returns_to[master], []).append(master)
            for back_to, masters in decided.returned.items():
                self._reactivate(run_id, masters, back_to, REASON_SEEN_AGAIN, actor)
        # The keys not seen (few, unless exports lost many) are the only ones that can be deprecated.
        unfound = [m for m, state in status.items() if state != DEPRECATED and m not in out_of_authority]
        entered = _in_authority([self.normalized[m] for m in unfound], authority_keys)
        in_authority = [m for m in unfound if self.normalized[m] in entered]
        available = frozenset(available_systems)
        # Only a key whose every source system was read this run can be said to have vanished.
        vanished = [m for m in unfound if self.normalized[m] not in entered and _split(systems[m]) <= available]
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
        # A run proposes what it saw. Stores written before recorded a run's proposals ahead of its sightings: a
        # proposal of a run that is not the latest sighting starts that run's sighting.
        seen = self._seen
        if seen is None or run_id != self.seen_by:
            seen = self.seen = {}
            self.seen_by = run_id
        seen.update(dict.fromkeys(map(_MASTER, entries)))

    class MasterKeysSeen(Aggregate.Event):
        """``entries``: [master, source systems] of the known keys the run saw that the latest sighting did not,
        or saw in more systems; ``unseen``: the keys the latest sighting saw that this run did not. Version 1
        (stores written before) listed every known key the run saw, and had no ``unseen``: it upcasts to None."""

        class_version = 2

        run_id: str
        entries: list[list[str]]
        unseen: list[str] | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["unseen"] = None

    @event(MasterKeysSeen)
    def _see(self, run_id: str, entries: list[list[str]], unseen: list[str] | None) -> None:
        self.systems.update(entries)  # [master, systems] pairs
        seen = self._seen
        if unseen is None:  # every known key the run saw (as stored before): the run's sighting starts anew
            if seen is None or run_id != self.seen_by:
                seen = self.seen = {}
        else:
            seen = self.seen = {} if seen is None else seen
            for master in unseen:
                seen.pop(master, None)
        seen.update(dict.fromkeys(map(_MASTER, entries)))
        self.seen_by = run_id

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


def _in_authority(normalized: list[str], authority_keys: Collection[str] | pa.Array) -> frozenset[str]:
    """Which of ``normalized`` are among ``authority_keys``."""
    if not normalized:
        return frozenset()
    if type(authority_keys).__module__.startswith("pyarrow"):
        import pyarrow as pa
        import pyarrow.compute as pc

        # A's keys are probed against the few keys asked about: no hash table of every key of A.
        asked = pa.array(normalized, pa.string())
        authority = authority_keys.cast(pa.string())  # type: ignore[union-attr]
        return frozenset(authority.filter(pc.is_in(authority, value_set=asked)).to_pylist())
    return frozenset(k for k in normalized if k in authority_keys)


# Source systems are few ("B|D"): the combinations are few, and a run meets each one thousands of times.
@lru_cache(maxsize=4096)
def _joined(existing: str, systems: tuple[str, ...]) -> str:
    return "|".join(sorted(_split(existing) | set(systems)))


@lru_cache(maxsize=4096)
def _split(systems: str) -> frozenset[str]:
    return frozenset(systems.split("|"))

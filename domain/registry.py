"""The master-key registry: one aggregate holding every master key's lifecycle.

Lifecycle: Proposed -> Active -> Deprecated, and Proposed -> Deprecated. A Deprecated key comes back to Active
by hand (``reactivate``), and a key deprecated by a run because its source keys were found in no system returns by
itself to the status it had (Active or Proposed) when a later run finds them again: one bad export must not cost
a key for good.

Why one aggregate, batch events and columns: a run can propose millions of keys. One aggregate (or one event) per
key would make a run write millions of events; batching keeps a run to a handful, and snapshots keep loading it
cheap. The state is one Arrow table (a row per master key, in the order proposed) and a run's decisions are set
operations over it, so a registry of millions of keys holds no Python object per key; the events carry their keys
as Arrow tables too (stores written before hold lists of strings, which replay the same).

What a run saw is recorded as what changed since the run before that saw anything (the latest sighting): the keys
seen again that it had not seen or whose source systems grew, and the keys it saw that this run did not. A key is
last seen by the latest sighting if that one saw it, else by the sighting before the one that stopped seeing it.
(Stores written before listed every key seen, every run; they still replay.)
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from keysync.domain.ids import REGISTRY_ID
from keysync.domain.statuses import ACTIVE, DEPRECATED, PROPOSED
from keysync.domain.tables import compacted, filled, with_columns

if TYPE_CHECKING:
    import pyarrow as pa

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


# The state's columns: ``returns_to`` is the status a key a run deprecated as found nowhere returns to (null: none);
# ``seen``, whether the latest sighting (the latest run that saw any key) saw the key.
KEY_COLUMNS = ("master_key", "normalized_key", "systems", "status", "returns_to", "seen")


class Registry(Aggregate):
    """Every master key's status, normalized key and source systems, as one Arrow table (``keys``: None while it is
    empty, so that a command that never decides loads no pyarrow). Rows for reports live in projections."""

    # Version 2: the state is a table; version 1 (snapshots taken before) held a dict per column.
    class_version = 2

    @staticmethod
    def create_id() -> UUID:
        return REGISTRY_ID

    @event("Created")
    def __init__(self) -> None:
        self.keys: pa.Table | None = None
        self.sighted = True  # whether ``seen`` is known (not so after a snapshot taken before sightings)
        self.seen_by = ""  # the latest sighting's run

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        status, normalized, systems = state.pop("status"), state.pop("normalized"), state.pop("systems")
        returns_to = state.pop("returns_to", None) or {}  # none before keys could return
        seen = state.pop("seen", None)  # none (or None) before sightings were recorded as changes
        masters = list(status)
        state["keys"] = (
            _key_table(
                masters,
                [normalized[m] for m in masters],
                [systems[m] for m in masters],
                [status[m] for m in masters],
                [returns_to.get(m) for m in masters],
                [seen is not None and m in seen for m in masters],
            )
            if masters
            else None
        )
        state["sighted"] = seen is not None
        state.setdefault("seen_by", "")

    def __deepcopy__(self, memo: dict[int, Any]) -> Registry:
        # Arrow tables are never changed in place (every event replaces the table): sharing it copies the registry.
        copied = copy.copy(self)
        copied._pending_events = list(self._pending_events)
        return copied

    # Reading ---------------------------------------------------------------------------------------------------
    # Maps of the whole state, for inspection and tests: a Python object per key.

    @property
    def status(self) -> dict[str, str]:
        return self._map("status")

    @property
    def normalized(self) -> dict[str, str]:
        return self._map("normalized_key")

    @property
    def systems(self) -> dict[str, str]:
        return self._map("systems")

    @property
    def returns_to(self) -> dict[str, str]:
        return {m: s for m, s in self._map("returns_to").items() if s is not None}

    @property
    def seen(self) -> dict[str, None] | None:
        """The master keys the latest sighting saw; None when not known."""
        if not self.sighted:
            return None
        return dict.fromkeys(m for m, seen in self._map("seen").items() if seen)

    def _map(self, column: str) -> dict[str, Any]:
        if self.keys is None:
            return {}
        return dict(zip(self.keys["master_key"].to_pylist(), self.keys[column].to_pylist(), strict=True))

    def _table(self) -> pa.Table:
        return self.keys if self.keys is not None else _key_table([], [], [], [], [], [])

    # Commands ------------------------------------------------------------------------------------------------

    def decide_run(
        self,
        run_id: str,
        out_of_authority: pa.Table,
        authority_keys: Collection[str] | pa.Array,
        available_systems: Collection[str],
        *,
        auto_approve: bool,
        actor: str,
        rules_changed: bool = False,
    ) -> RunDecisions:
        """Register what a run found (``out_of_authority``: keysync.domain.reconciliation.OUT_OF_AUTHORITY rows, in
        the order found): propose new master keys, note what it saw that changed since the latest sighting, return
        the ones a run had deprecated as found nowhere, deprecate the ones that entered System A or vanished.
        ``authority_keys``: System A's normalized keys. ``rules_changed``: the run normalizes or names keys
        otherwise than the run before, so a key not found may just be named otherwise now; its deprecation says so
        rather than that its source keys vanished. Every step is a set operation over the columns."""
        import pyarrow.compute as pc

        found, keys = out_of_authority, self._table()
        masters = found["master_key"]
        at = pc.index_in(masters, value_set=keys["master_key"])  # each found key's row, null if new
        known = pc.is_valid(at)
        new = found.filter(pc.invert(known))
        decided = RunDecisions(proposed=new["master_key"].to_pylist())
        rows = at.filter(known)
        had = keys["systems"].take(rows)
        joined = _joined(had, found["systems"].filter(known))
        seen_before = self.sighted and keys.num_rows > 0 and pc.any(keys["seen"]).as_py()
        if not self.sighted:  # not known which keys the latest sighting saw: list every known key seen, once
            entries = _seen_entries(masters.filter(known), joined)
            unseen: pa.Table | None = None
        else:
            # Seen again, but not by the latest sighting (deprecated keys too), or in more systems than before.
            changed = pc.or_(pc.not_equal(joined, had), pc.invert(keys["seen"].take(rows)))
            entries = _seen_entries(masters.filter(known).filter(changed), joined.filter(changed))
            gone = pc.and_(keys["seen"], pc.invert(pc.is_in(keys["master_key"], value_set=masters)))
            unseen_keys = keys["master_key"].filter(gone)
            unseen = _master_column(unseen_keys.take(pc.array_sort_indices(unseen_keys)))
        if entries.num_rows or (unseen is not None and unseen.num_rows) or (seen_before and found.num_rows):
            # Recorded even when nothing changed: the run is then the latest sighting, which saw what the one before
            # saw. Without it, the run's proposals alone start its sighting (so they do a first run's).
            self._see(run_id, entries, unseen)
        if new.num_rows:
            self._propose(run_id, new)
        if auto_approve and new.num_rows:
            self._activate(run_id, _master_column(new["master_key"]), REASON_AUTO_APPROVED, actor)
        keys = self._table()
        # Keys waiting to return (deprecated as found nowhere) that this run found, in the order found.
        waiting = pc.and_(pc.is_valid(keys["returns_to"]), pc.equal(keys["status"], DEPRECATED))
        if pc.any(waiting).as_py():
            at = pc.index_in(masters, value_set=keys["master_key"])
            back = pc.fill_null(waiting.take(at), False)
            returning = masters.filter(back).to_pylist(), keys["returns_to"].take(at.filter(back)).to_pylist()
            for master, back_to in zip(*returning, strict=True):
                decided.returned.setdefault(back_to, []).append(master)
            for back_to, returned in decided.returned.items():
                self._reactivate(run_id, _master_column(returned), back_to, REASON_SEEN_AGAIN, actor)
            keys = self._table()
        # The keys not seen (few, unless exports lost many) are the only ones that can be deprecated.
        unfound = keys.filter(
            pc.and_(pc.not_equal(keys["status"], DEPRECATED), pc.invert(pc.is_in(keys["master_key"], masters)))
        )
        if not unfound.num_rows:
            return decided
        entered = pc.is_in(unfound["normalized_key"], value_set=_entered(unfound["normalized_key"], authority_keys))
        available = frozenset(available_systems)
        # Only a key whose every source system was read this run can be said to have vanished.
        whole = _each(unfound["systems"], lambda systems: frozenset(systems.split("|")) <= available)
        vanished = pc.and_(pc.invert(entered), whole)
        reason = REASON_RULES_CHANGED if rules_changed else REASON_VANISHED
        for why, mask in ((REASON_IN_AUTHORITY, entered), (reason, vanished)):
            chosen = unfound["master_key"].filter(mask)
            if len(chosen):
                self._deprecate(run_id, _master_column(chosen), why, actor)
                decided.deprecated[why] = chosen.to_pylist()
        return decided

    def approve(self, keys: Iterable[str], actor: str) -> list[str]:
        """Activate Proposed keys. Raises without changing anything if any key is unknown or not Proposed."""
        keys = self._checked(keys, ACTIVE)
        if keys:
            self._activate("", _master_column(keys), "approved", actor)
        return keys

    def approve_all(self, actor: str) -> list[str]:
        if self.keys is None:
            return []
        import pyarrow.compute as pc

        return self.approve(self.keys["master_key"].filter(pc.equal(self.keys["status"], PROPOSED)).to_pylist(), actor)

    def deprecate(self, keys: Iterable[str], reason: str, actor: str) -> list[str]:
        keys = self._checked(keys, DEPRECATED)
        if keys:
            self._deprecate("", _master_column(keys), reason, actor)
        return keys

    def reactivate(self, keys: Iterable[str], reason: str, actor: str) -> list[str]:
        """Bring Deprecated keys back to Active. Raises without changing anything if any key is unknown or not
        Deprecated."""
        keys = list(dict.fromkeys(keys))
        status = self._status_of(keys)
        unknown = [k for k in keys if k not in status]
        if unknown:
            raise UnknownMasterKeyError(unknown)
        for key in keys:
            if status[key] != DEPRECATED:
                raise IllegalTransitionError(key, status[key], "Active again")
        if keys:
            self._reactivate("", _master_column(keys), ACTIVE, reason, actor)
        return keys

    def _checked(self, keys: Iterable[str], target: str) -> list[str]:
        keys = list(dict.fromkeys(keys))
        status = self._status_of(keys)
        unknown = [k for k in keys if k not in status]
        if unknown:
            raise UnknownMasterKeyError(unknown)
        for key in keys:
            if status[key] not in _ALLOWED[target]:
                raise IllegalTransitionError(key, status[key], target)
        return keys

    def _status_of(self, keys: list[str]) -> dict[str, str]:
        """The status of each of ``keys`` the registry holds."""
        if self.keys is None or not keys:
            return {}
        import pyarrow as pa
        import pyarrow.compute as pc

        held = self.keys.filter(pc.is_in(self.keys["master_key"], value_set=pa.array(keys, pa.string())))
        return dict(zip(held["master_key"].to_pylist(), held["status"].to_pylist(), strict=True))

    # Events: each method body is the state change, a pass over the columns --------------------------------------

    @event("MasterKeysProposed")
    def _propose(self, run_id: str, entries: pa.Table | list[list[str]]) -> None:
        """``entries``: master_key, normalized_key, systems, source_key (stored before: [master, normalized, systems,
        source key] lists)."""
        import pyarrow as pa

        new = batch_columns(entries, ("master_key", "normalized_key", "systems"))
        # A run proposes what it saw. Stores written before recorded a run's proposals ahead of its sightings: a
        # proposal of a run that is not the latest sighting starts that run's sighting.
        keys = self._table()
        if not self.sighted or run_id != self.seen_by:
            keys = with_columns(keys, seen=filled(keys.num_rows, False))
            self.sighted, self.seen_by = True, run_id
        count = len(new[0])
        added = pa.table([*new, filled(count, PROPOSED), filled(count, None), filled(count, True)], schema=_schema())
        self.keys = compacted(pa.concat_tables([keys, added]))

    class MasterKeysSeen(Aggregate.Event):
        """``entries``: master_key and source systems of the known keys the run saw that the latest sighting did
        not, or saw in more systems; ``unseen``: the keys the latest sighting saw that this run did not. Version 1
        (stores written before) listed every known key the run saw, and had no ``unseen``: it upcasts to None."""

        class_version = 2

        run_id: str
        entries: Any  # a table, or [master, systems] lists as stored before
        unseen: Any  # a table of master_key, a list as stored before, or None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["unseen"] = None

    @event(MasterKeysSeen)
    def _see(self, run_id: str, entries: pa.Table | list[list[str]], unseen: pa.Table | list[str] | None) -> None:
        import pyarrow.compute as pc

        masters, systems = batch_columns(entries, ("master_key", "systems"))
        keys = self._table()
        at = pc.index_in(keys["master_key"], value_set=masters)  # each row's entry, null if none
        seen = keys["seen"]
        if not self.sighted or (unseen is None and run_id != self.seen_by):
            seen = filled(keys.num_rows, False)  # the run's sighting starts anew
        elif unseen is not None:
            seen = pc.and_(seen, pc.invert(pc.is_in(keys["master_key"], value_set=_keys(unseen))))
        self.keys = with_columns(
            keys, systems=pc.coalesce(systems.take(at), keys["systems"]), seen=pc.or_(seen, pc.is_valid(at))
        )
        self.sighted, self.seen_by = True, run_id

    @event("MasterKeysActivated")
    def _activate(self, run_id: str, master_keys: pa.Table | list[str], reason: str, actor: str) -> None:
        import pyarrow.compute as pc

        keys = self._table()
        self.keys = _set_status(keys, pc.is_in(keys["master_key"], value_set=_keys(master_keys)), ACTIVE)

    @event("MasterKeysDeprecated")
    def _deprecate(self, run_id: str, master_keys: pa.Table | list[str], reason: str, actor: str) -> None:
        import pyarrow.compute as pc

        keys = self._table()
        chosen = pc.is_in(keys["master_key"], value_set=_keys(master_keys))
        # A key a run deprecated as found nowhere returns, when found again, to the status it had; any other
        # deprecation makes it stay. Derived from the state, so that deprecations stored before replay into it too.
        back = keys["status"] if run_id and reason in REASONS_UNSEEN else filled(keys.num_rows, None)
        keys = with_columns(keys, returns_to=pc.if_else(chosen, back, keys["returns_to"]))
        self.keys = _set_status(keys, chosen, DEPRECATED)

    @event("MasterKeysReactivated")
    def _reactivate(self, run_id: str, master_keys: pa.Table | list[str], status: str, reason: str, actor: str) -> None:
        import pyarrow.compute as pc

        keys = self._table()
        chosen = pc.is_in(keys["master_key"], value_set=_keys(master_keys))
        keys = with_columns(keys, returns_to=pc.if_else(chosen, filled(keys.num_rows, None), keys["returns_to"]))
        self.keys = _set_status(keys, chosen, status)


# Batches in events ---------------------------------------------------------------------------------------------


def batch_rows(entries: pa.Table | list[list[str]]) -> list[list[str]]:
    """A batch of entries as lists (a row each), whichever form it was stored in: for reading one event."""
    if isinstance(entries, list):
        return entries
    return [list(row) for row in zip(*(c.to_pylist() for c in entries.columns), strict=True)]


def batch_keys(master_keys: pa.Table | list[str] | None) -> list[str]:
    """A batch of master keys as a list, whichever form it was stored in."""
    if master_keys is None or isinstance(master_keys, list):
        return master_keys or []
    return master_keys.column(0).to_pylist()


def batch_columns(batch: pa.Table | list[Any], names: tuple[str, ...]) -> list[pa.Array]:
    """The named columns of a registry event's batch: a table, or lists as stored before ([master_key,
    normalized_key, systems, source_key] proposals, [master_key, systems] sightings, or master keys)."""
    import pyarrow as pa

    if not isinstance(batch, list):
        return [batch[n].combine_chunks() for n in names]
    if not batch:
        return [pa.array([], pa.string()) for _ in names]
    if not isinstance(batch[0], list):
        return [pa.array(batch, pa.string())]
    place = {"master_key": 0, "normalized_key": 1, "systems": 2 if len(batch[0]) == 4 else 1, "source_key": 3}
    return [pa.array([e[place[n]] for e in batch], pa.string()) for n in names]


def _schema() -> pa.Schema:
    import pyarrow as pa

    string = pa.string()
    return pa.schema([*((c, string) for c in KEY_COLUMNS[:5]), ("seen", pa.bool_())])


def _key_table(*columns: Sequence[Any]) -> pa.Table:
    import pyarrow as pa

    schema = _schema()
    return pa.table([pa.array(c, f.type) for c, f in zip(columns, schema, strict=True)], schema=schema)


def _keys(master_keys: pa.Table | list[str]) -> pa.Array:
    return batch_columns(master_keys, ("master_key",))[0]


def _master_column(masters: pa.Array | pa.ChunkedArray | list[str]) -> pa.Table:
    import pyarrow as pa

    return pa.table({"master_key": pa.array(masters, pa.string()) if isinstance(masters, list) else masters})


def _seen_entries(masters: pa.ChunkedArray, systems: pa.Array) -> pa.Table:
    import pyarrow as pa

    return pa.table({"master_key": masters, "systems": systems})


def _set_status(keys: pa.Table, chosen: Any, status: str) -> pa.Table:
    """``keys`` with ``status`` where ``chosen`` (a mask over them)."""
    import pyarrow.compute as pc

    return with_columns(keys, status=pc.if_else(chosen, status, keys["status"]))


def _joined(had: Any, found: Any) -> pa.Array:
    """Each pair's source systems together ("B|D" and "C": "B|C|D"). The pairs met are few: each is worked out
    once, in Python, and the results are taken by code."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not len(had):
        return pa.array([], pa.string())
    pairs = pc.dictionary_encode(pc.binary_join_element_wise(had, found, "\x00")).combine_chunks()
    if isinstance(pairs, pa.ChunkedArray):
        pairs = pairs.chunk(0)
    union = [
        "|".join(sorted(set(a.split("|")) | set(b.split("|"))))
        for a, b in (pair.split("\x00") for pair in pairs.dictionary.to_pylist())
    ]
    return pa.array(union, pa.string()).take(pairs.indices)


def _each(column: Any, test: Any) -> pa.Array:
    """``test`` of each value, asked once per distinct value (the source-system combinations are few)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(column).combine_chunks()
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.chunk(0)
    return pa.array([test(v) for v in encoded.dictionary.to_pylist()], pa.bool_()).take(encoded.indices)


def _entered(normalized: Any, authority_keys: Collection[str] | pa.Array) -> pa.Array:
    """Which of ``normalized`` are among ``authority_keys``: A's keys are probed against the few keys asked about,
    with no hash table of every key of A."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not type(authority_keys).__module__.startswith("pyarrow"):
        asked = set(normalized.to_pylist())
        return pa.array([k for k in authority_keys if k in asked], pa.string())
    authority = authority_keys.cast(pa.string())  # type: ignore[union-attr]
    return authority.filter(pc.is_in(authority, value_set=normalized))

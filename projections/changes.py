"""changes_since_last_run.csv: what changed from the previous completed run to the latest one.

One row per change, under run_id (the latest run), system, change, key, detail:

- ``key_added`` / ``key_removed``: a normalized key a system has now and did not have before, or had and has no
  more; every system, A included; detail empty.
- ``discrepancy_opened`` / ``discrepancy_resolved``: an out-of-authority key or a propagation gap of a downstream
  system (B-E) that appeared or went away; detail says which kind: ``missing_in_A`` or ``missing_from_system``.
- ``master_key_proposed`` / ``master_key_deprecated``: the latest run's own registry decisions (not approvals or
  deprecations made by hand between runs); system holds the master key's source systems (``B|D``), detail the
  raw source key it was proposed for, or the reason it was deprecated.

- ``first_run``: the latest run is the first completed one, so every key is new: one row per available system
  says how many keys it has (key empty), instead of a ``key_added`` row per key, which at a million keys per system
  would make this report the largest of all. Its discrepancies are ``discrepancy_opened`` rows as usual.

Rows come system by system (A-E), then the registry's, each group's keys sorted.

A system unavailable in either run has no key or discrepancy rows. Its empty key list says nothing about its
keys: "every key removed" (or added, when it comes back) would be false. The contract's change values have no
"unavailable"; reconciliation_summary.csv says which systems were.

Cost. A run's keys are kept as ``RunKeys``: System A's normalized keys, and for each downstream system only its
two discrepancy lists, since a downstream system's keys are A's minus its propagation gaps plus its
out-of-authority keys. Comparing two runs of a million keys per system then hashes System A's keys once and
otherwise only the discrepancies and A's changes; a ``RunKeys`` taken from a reconciliation holds its Arrow
columns (A's keys in no particular order, the discrepancies sorted), and a first run hands its discrepancies to
the writer as they are, with no Python string per key.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence, Set
from itertools import chain, repeat
from typing import Any, NamedTuple

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from keysync.domain.columns import Runs
from keysync.domain.observations import AUTHORITY, DOWNSTREAM
from keysync.domain.reconciliation import Reconciliation
from keysync.domain.registry import DEPRECATED
from keysync.projections.reports import CHANGE_COLUMNS

KEY_ADDED, KEY_REMOVED = "key_added", "key_removed"
OPENED, RESOLVED = "discrepancy_opened", "discrepancy_resolved"
PROPOSED, DEPRECATED_CHANGE = "master_key_proposed", "master_key_deprecated"
FIRST_RUN = "first_run"
CHANGES = (KEY_ADDED, KEY_REMOVED, OPENED, RESOLVED, PROPOSED, DEPRECATED_CHANGE, FIRST_RUN)
MISSING_IN_A, MISSING_FROM_SYSTEM = "missing_in_A", "missing_from_system"

Columns = dict[str, Sequence[Any]]
# Keys as a set, or as a reconciliation's Arrow column of distinct keys.
Keys = Collection[str] | pa.Array | pa.ChunkedArray


@attrs.frozen
class RunKeys:
    """One run's normalized keys, compactly: System A's keys, and each available downstream system's
    discrepancies. A downstream system missing from the mappings was unavailable in that run."""

    run_id: str
    authority: Keys
    missing_in_a: Mapping[str, Keys]
    missing_from_system: Mapping[str, Keys]

    @classmethod
    def of(cls, run_id: str, recon: Reconciliation) -> RunKeys:
        """Taken from a reconciliation: System A's keys, and each available downstream system's discrepancies,
        as its Arrow columns (sets are made only to compare with another run)."""
        available = [r for r in recon.downstream if r.available]
        found = recon.authority.found
        return cls(
            run_id,
            found.names() if found is not None else pa.array([], pa.string()),
            {r.system: r.missing_in_a["normalized_key"] for r in available},
            {r.system: r.missing_from_system["normalized_key"] for r in available},
        )

    @classmethod
    def from_keys(cls, run_id: str, keys: Mapping[str, Set[str]]) -> RunKeys:
        """From each available system's set of normalized keys (System A's is required)."""
        authority = keys[AUTHORITY]
        downstream = [s for s in DOWNSTREAM if s in keys]
        return cls(
            run_id,
            authority,
            {s: keys[s] - authority for s in downstream},
            {s: authority - keys[s] for s in downstream},
        )

    def available(self, system: str) -> bool:
        return system == AUTHORITY or system in self.missing_in_a

    def key_count(self, system: str) -> int:
        """How many normalized keys an available system has: A's, less its gaps, plus its out-of-authority keys."""
        if system == AUTHORITY:
            return len(self.authority)
        return len(self.authority) - len(self.missing_from_system[system]) + len(self.missing_in_a[system])


def change_columns(
    latest: RunKeys,
    previous: RunKeys | None,
    registry_rows: pa.Table,
    audit_rows: Sequence[Mapping[str, Any]],
    *,
    audit_run_id: str | None = None,
) -> Columns:
    """The report's columns for ``latest`` against ``previous`` (None: there was no previous completed run).

    ``registry_rows`` (ordered by master key) and ``audit_rows`` are the read models as they stand after the
    latest run; its registry decisions are found there. ``audit_run_id`` is the run's id as the audit shows it,
    when that differs (a dry run's).
    """
    out = {c: _Column() for c in CHANGE_COLUMNS}  # a first run lists millions of rows: its repeats stay runs
    groups = chain(
        _first_run(latest) if previous is None else _between(previous, latest),
        _registry(latest.run_id, registry_rows, audit_rows, audit_run_id or latest.run_id),
    )
    for system, change, keys, detail in groups:
        if not len(keys):
            continue
        n = len(keys)
        out["run_id"].repeat(latest.run_id, n)
        out["system"].repeat(system, n) if isinstance(system, str) else out["system"].extend(system)
        out["change"].repeat(change, n)
        out["key"].extend(keys)
        out["detail"].repeat(detail, n) if isinstance(detail, str) else out["detail"].extend(detail)
    return out


class _Column(Runs):
    """Runs whose lists may also be Arrow arrays, which the writer takes as they are."""

    def extend(self, values: Sequence[Any]) -> None:
        if isinstance(values, pa.Array | pa.ChunkedArray):
            if len(values):
                self.parts.append(values)  # type: ignore[arg-type]
                self._length += len(values)
        else:
            super().extend(values)

    def __iter__(self) -> Iterator[Any]:
        for part in self.parts:
            if isinstance(part, pa.Array | pa.ChunkedArray):
                yield from part.to_pylist()
            else:
                yield from repeat(*part) if isinstance(part, tuple) else part


# A group of rows: system (one for all, or one per key), change, sorted keys, detail (one for all, or per key).
_Group = tuple[str | list[str] | pa.ChunkedArray, str, Keys, str | list[str] | pa.ChunkedArray]


def _first_run(latest: RunKeys) -> Iterator[_Group]:
    for system in (AUTHORITY, *DOWNSTREAM):
        if not latest.available(system):
            continue
        count = latest.key_count(system)
        yield system, FIRST_RUN, [""], f"the first completed run: its {count:,} key{'s' * (count != 1)} are all new"
        if system != AUTHORITY:
            yield system, OPENED, key_array(latest.missing_in_a[system]), MISSING_IN_A
            yield system, OPENED, key_array(latest.missing_from_system[system]), MISSING_FROM_SYSTEM


def _between(previous: RunKeys, latest: RunKeys) -> Iterator[_Group]:
    # The discrepancy columns are sorted, and every difference keeps its order: their rows come out sorted. A's
    # keys, in no particular order, are compared once (no work when they are the same), and only their changes
    # are sorted; the rest looks up only sets as small as the changes.
    new_a, old_a = key_array(latest.authority), key_array(previous.authority)
    if new_a.equals(old_a):
        a_added = a_removed = new_a.slice(0, 0)
    else:
        a_added, a_removed = (keys.take(pc.sort_indices(keys)) for keys in _both_ways(new_a, old_a))
    yield AUTHORITY, KEY_ADDED, a_added, ""
    yield AUTHORITY, KEY_REMOVED, a_removed, ""
    for system in DOWNSTREAM:
        if not (latest.available(system) and previous.available(system)):
            continue
        was = _Side(key_array(previous.missing_in_a[system]), key_array(previous.missing_from_system[system]))
        now = _Side(key_array(latest.missing_in_a[system]), key_array(latest.missing_from_system[system]))
        opened_out, resolved_out = _both_ways(now.out, was.out)
        opened_gaps, resolved_gaps = _both_ways(now.gaps, was.gaps)
        yield system, KEY_ADDED, _gained(was, now, opened_out, resolved_gaps, a_added, a_removed), ""
        yield system, KEY_REMOVED, _gained(now, was, resolved_out, opened_gaps, a_removed, a_added), ""
        yield system, OPENED, opened_out, MISSING_IN_A
        yield system, OPENED, opened_gaps, MISSING_FROM_SYSTEM
        yield system, RESOLVED, resolved_out, MISSING_IN_A
        yield system, RESOLVED, resolved_gaps, MISSING_FROM_SYSTEM


class _Side(NamedTuple):
    """One run, seen from one downstream system: its out-of-authority keys and its gaps."""

    out: pa.Array
    gaps: pa.Array


def _gained(
    before: _Side, after: _Side, newly_out: pa.Array, closed_gaps: pa.Array, joined_a: pa.Array, left_a: pa.Array
) -> pa.Array:
    """The keys the system has ``after`` and had not ``before`` (called the other way round: the keys it lost),
    sorted. ``newly_out`` and ``closed_gaps`` are what changed of its discrepancies, ``joined_a`` and ``left_a``
    what changed of A's keys.

    A system has a key that is out of authority, or in A and not a gap. So a key it gained is newly out of authority
    (and was not in A, or a gap, before); or a gap that closed with the key still in A; or a key that joined A, is
    no gap, and was not out of authority before. A key out of authority is not in A, and a gap is, so whether such
    a key is in A on the other side is a question for what changed of A: the candidates are looked up only in
    sets as small as the differences between the runs, never in all of A's keys.
    """
    had = pc.and_(_in(newly_out, left_a), pc.invert(_in(newly_out, before.gaps)))
    gained = pa.concat_arrays(
        [
            newly_out.filter(pc.invert(had)),
            _minus(closed_gaps, left_a),
            _minus(_minus(joined_a, after.gaps), before.out),
        ]
    )
    return gained.take(pc.sort_indices(gained))  # the three are disjoint: in A before, after, or neither


def key_array(keys: Keys) -> pa.Array:
    """Keys as an Arrow string array; a set comes sorted (as a reconciliation's discrepancy columns do)."""
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    if isinstance(keys, pa.Array):
        return keys.cast(pa.string())
    return pa.array(sorted(keys), pa.string())


def _in(keys: pa.Array, among: pa.Array) -> pa.Array:
    return pc.is_in(keys, value_set=among)


def _both_ways(new: pa.Array, old: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(``new`` less ``old``, ``old`` less ``new``), each in its order, from one hash table (of ``new``): at a
    million keys, building the table is most of the cost of a set difference."""
    at = pc.index_in(old, value_set=new)
    kept = np.zeros(len(new), dtype=bool)
    kept[at.drop_null().to_numpy()] = True
    return new.filter(pa.array(~kept)), old.filter(pc.is_null(at))


def _minus(keys: pa.Array, other: pa.Array) -> pa.Array:
    """The keys not in ``other``, in their order."""
    return keys.filter(pc.invert(_in(keys, other)))


def _registry(
    run_id: str, registry_rows: pa.Table, audit_rows: Sequence[Mapping[str, Any]], audit_id: str
) -> Iterator[_Group]:
    """The run's proposals (registry rows it created) and deprecations (rows whose last change is one of the
    run's MasterKeysDeprecated events). Rows come by master key."""
    rows = registry_rows
    proposed = rows.filter(pc.equal(rows["created_run_id"], run_id))
    yield proposed["source_systems"], PROPOSED, proposed["master_key"], proposed["source_key"]
    moments = pa.array(
        sorted(
            {
                a["created_at"]
                for a in audit_rows
                if a["run_id"] == audit_id and a["event_type"] == "MasterKeysDeprecated"
            }
        ),
        pa.string(),
    )
    deprecated = rows.filter(
        pc.and_(pc.equal(rows["status"], DEPRECATED), pc.is_in(rows["updated_at"], value_set=moments))
    )
    yield deprecated["source_systems"], DEPRECATED_CHANGE, deprecated["master_key"], deprecated["status_reason"]

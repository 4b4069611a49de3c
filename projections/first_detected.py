"""When each open discrepancy, duplicate and rejected line was first found: the first_detected_run_id and
first_detected_at columns of diff_missing_in_A.csv, diff_missing_from_system.csv, duplicate_keys.csv and
rejected_rows.csv.

What is tracked, and its identity:

- ``missing_in_A``: (system, normalized key); ``missing_from_system``: (system, A's normalized key);
- ``duplicate``: (system, normalized key); ``rejected``: (system, the raw text of the line), whatever line it is on.

Folded run by run, oldest first. In each completed run, something found that was not open is opened by that run,
something open that is found again stays open since the run that opened it, and something open that is no longer
found is resolved: found again later, it is opened anew. It is the same notion of opened and resolved as
changes_since_last_run.csv's. A run that carried the last reconciliation over (no export changed) finds what it
found, so it changes nothing. A system whose export was held back as suspect, or that was unavailable, neither
opens nor resolves anything in that run (its rows are not trusted, or not there): its discrepancies stay as they
stood, and the same holds for every downstream system's discrepancies when System A is the one in doubt. A row
that such a run shows and that nothing had opened (A changed while B's last accepted rows stood in) names that run
until the system's export is accepted again, which then settles it.

Identities are normalized keys under the current rules. A change of rules reads the history again under the new
ones, as ``keysync rebuild`` does for every read model: a discrepancy keeps the run that first found it as the new
rules read that run, so the file says what a rebuild says and changes_since_last_run.csv agrees.

The state (open discrepancies only) is an Arrow table per (kind, system) of identity, run_id and at: a run opens
and resolves by set membership in C (``is_in``), and a report looks its rows up by ``index_in``, with no Python
object per identity.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Set

import attrs
import pyarrow as pa
import pyarrow.compute as pc

from keysync.domain.observations import AUTHORITY
from keysync.domain.reconciliation import Reconciliation

MISSING_IN_A, MISSING_FROM_SYSTEM, DUPLICATE, REJECTED = "missing_in_A", "missing_from_system", "duplicate", "rejected"
KINDS = (MISSING_IN_A, MISSING_FROM_SYSTEM, DUPLICATE, REJECTED)

Group = tuple[str, str]  # (kind, system)
Found = tuple[str, str]  # (run_id, at): the run that first found it, and when that run finished
Identities = pa.Array | pa.ChunkedArray  # of strings
_TEXT = pa.string()
SCHEMA = pa.schema([("identity", _TEXT), ("run_id", _TEXT), ("at", _TEXT)])


def found_in(recon: Reconciliation) -> dict[Group, pa.Array]:
    """What a reconciliation finds, per (kind, system), for every system it had rows of: each identity once."""
    found: dict[Group, pa.Array] = {}
    for system, result in recon.systems.items():
        if not result.available:
            continue
        if system != AUTHORITY:
            found[MISSING_IN_A, system] = _array(result.missing_in_a["normalized_key"])
            found[MISSING_FROM_SYSTEM, system] = _array(result.missing_from_system["normalized_key"])
        found[DUPLICATE, system] = _array(result.duplicates["normalized_key"])
        found[REJECTED, system] = pc.unique(pa.array([row.raw for row in result.rejected], _TEXT))
    return found


def settled_groups(recon: Reconciliation, held_back: Set[str]) -> set[Group]:
    """The groups a run may open and resolve in: those of systems whose rows it had and took (not held back);
    a discrepancy also needs System A's rows taken."""
    trusted = {s for s, r in recon.systems.items() if r.available and s not in held_back}
    groups: set[Group] = set()
    for system in trusted:
        groups |= {(DUPLICATE, system), (REJECTED, system)}
        if system != AUTHORITY and AUTHORITY in trusted:
            groups |= {(MISSING_IN_A, system), (MISSING_FROM_SYSTEM, system)}
    return groups


@attrs.define
class FirstDetected:
    """The open discrepancies, duplicates and rejected lines, each with the run that first found it, as they stand
    after run ``run_id`` ("": before any run): per group, a table of SCHEMA, never empty."""

    run_id: str = ""
    open: dict[Group, pa.Table] = attrs.Factory(dict)

    def copy(self) -> FirstDetected:
        return FirstDetected(self.run_id, dict(self.open))  # Arrow tables are immutable: shared, not copied

    def advance(self, run_id: str, at: str, recon: Reconciliation, held_back: Set[str] = frozenset()) -> set[Group]:
        """Fold one completed run (its reconciliation; ``held_back``: the systems whose export it held back).
        Returns the groups it changed. A group the run settles is left in the order the run found it (a key
        column's is sorted), so that the reports, which show it in that order, need not look its rows up."""
        changed: set[Group] = set()
        found = found_in(recon)
        for group in settled_groups(recon, held_back):
            current = found.get(group)
            before = self.open.get(group)
            if current is None or not len(current):
                if before is not None:
                    del self.open[group]  # every one resolved
                    changed.add(group)
                continue
            if before is None:
                self.open[group] = _table(current, (run_id, at))
                changed.add(group)
                continue
            where = pc.index_in(current, value_set=before.column("identity").combine_chunks())
            opened = where.null_count
            # Identities are distinct on both sides: what stays open is what was found again.
            if opened or len(current) - opened != before.num_rows:
                changed.add(group)
            known = before.select(["run_id", "at"]).take(where)
            self.open[group] = pa.table(
                [current, pc.fill_null(known.column(0), run_id), pc.fill_null(known.column(1), at)], schema=SCHEMA
            ).combine_chunks()
        self.run_id = run_id
        return changed

    def columns(self, kind: str, system: str, identities: Identities, shown_by: Found) -> tuple[Identities, Identities]:
        """The first_detected_run_id and first_detected_at of each identity; ``shown_by`` for one nothing opened
        (the run showing it, while its system was in doubt)."""
        table = self.open.get((kind, system))
        run_id, at = shown_by
        if table is None:
            n = len(identities)
            return pa.repeat(pa.scalar(run_id, _TEXT), n), pa.repeat(pa.scalar(at, _TEXT), n)
        if table.num_rows == len(identities) and table.column("identity").equals(_chunked(identities)):
            return table.column("run_id"), table.column("at")  # the run's own order, as advance left it
        where = pc.index_in(identities, value_set=table.column("identity").combine_chunks())
        found = table.select(["run_id", "at"]).take(where)
        return pc.fill_null(found.column(0), run_id), pc.fill_null(found.column(1), at)

    def rows(self, groups: Iterable[Group] | None = None) -> Iterator[tuple[str, str, str, str, pa.Array]]:
        """(kind, system, run_id, at, identities) of what each run opened and is still open, for ``groups``
        (None: every group): one per run, as the store keeps them."""
        for group in self.open if groups is None else groups:
            table = self.open.get(group)
            if table is None:
                continue
            run_ids = table.column("run_id")
            runs = pc.unique(run_ids).to_pylist()  # a few: the runs that opened what is still open
            for run_id in runs:
                same = table if len(runs) == 1 else table.filter(pc.equal(run_ids, run_id))
                yield *group, run_id, same.column("at")[0].as_py(), _array(same.column("identity"))

    @classmethod
    def from_rows(cls, run_id: str, rows: Iterable[tuple[str, str, str, str, Identities | list[str]]]) -> FirstDetected:
        parts: dict[Group, list[pa.Table]] = {}
        for kind, system, found_run, at, identities in rows:
            values = identities if isinstance(identities, pa.Array | pa.ChunkedArray) else pa.array(identities, _TEXT)
            parts.setdefault((kind, system), []).append(_table(_array(values), (found_run, at)))
        return cls(run_id, {group: pa.concat_tables(tables).combine_chunks() for group, tables in parts.items()})


def _array(values: Identities) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _chunked(values: Identities) -> pa.ChunkedArray:
    return values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values], values.type)


def _table(identities: pa.Array, found: Found) -> pa.Table:
    n = len(identities)
    return pa.table([identities, *(pa.repeat(pa.scalar(v, _TEXT), n) for v in found)], schema=SCHEMA)


def held_back_systems(kpis: Mapping[str, object]) -> set[str]:
    """The systems a completed run held back as suspect, from its KPIs."""
    systems = kpis.get("systems", {})
    assert isinstance(systems, dict)
    return {s for s, found in systems.items() if isinstance(found, dict) and found.get("status") == "suspect"}

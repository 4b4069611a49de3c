"""The registry read model: one row per master key, folded from the registry's batch events.

When a key was last seen: a run records only what changed in what it saw (keysync.domain.registry), so a row the
latest sighting saw holds ``SEEN_BY_LATEST``, resolved on reading to that run, and a run writes only the rows of
the keys it stopped seeing or saw anew. Rows folded from a store written before hold a run id each (as that
version wrote them); the first sighting recorded as changes marks the rows its predecessor saw, once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from keysync.domain.registry import ACTIVE, DEPRECATED, PROPOSED, Registry, batch_columns
from keysync.domain.tables import compacted, filled, with_columns

if TYPE_CHECKING:
    import pyarrow as pa

SEEN_BY_LATEST = "*"  # never a run id (those are hex digits)
LAST_SEEN = "last_seen_run_id"
REGISTRY_COLUMNS = (
    "master_key",
    "source_systems",
    "source_key",
    "status",
    "created_at",
    "updated_at",
    "created_run_id",
    "last_seen_run_id",
    "status_reason",
)


def registry_table(rows: Sequence[Sequence[Any]] = ()) -> pa.Table:
    """The registry view's columns from rows of REGISTRY_COLUMNS values (none: an empty table)."""
    import pyarrow as pa

    columns = list(zip(*rows, strict=True)) if rows else [()] * len(REGISTRY_COLUMNS)
    return pa.table([pa.array(c, pa.string()) for c in columns], names=list(REGISTRY_COLUMNS))


@attrs.define
class RegistryRows:
    """The registry view as an Arrow table (a row per master key, in no set order; ``last_seen_run_id`` as stored:
    a mark or a run id), the latest sighting, and whether the rows it saw are marked (``SEEN_BY_LATEST``) or hold
    its run id (as stores written before, and never both). Folding an event replaces the table, never a row in
    place, and leaves every row where it was: the rows a fold changed are found by position."""

    table: pa.Table = attrs.Factory(registry_table)
    sighting: str = ""
    marked: bool = True

    def resolved(self, status: str | None = None) -> pa.Table:
        """The rows (of ``status`` if given) by master key, the latest sighting's run in place of the mark."""
        import pyarrow.compute as pc

        table = self.table
        if status:
            table = table.filter(pc.equal(table["status"], status))
        table = table.take(pc.sort_indices(table["master_key"]))
        last_seen = pc.if_else(pc.equal(table[LAST_SEEN], SEEN_BY_LATEST), self.sighting, table[LAST_SEEN])
        return with_columns(table, last_seen_run_id=last_seen)


def row_batches(table: pa.Table, size: int = 50_000) -> Iterator[list[tuple[str, ...]]]:
    """A registry table's rows as tuples, ``size`` at a time: what a database driver takes, without a Python
    object per value of every row at once."""
    for start in range(0, table.num_rows, size):
        part = table.slice(start, size)
        yield list(zip(*(part[c].to_pylist() for c in REGISTRY_COLUMNS), strict=True))


STATUS_CHANGES = (Registry.MasterKeysActivated, Registry.MasterKeysDeprecated, Registry.MasterKeysReactivated)


def _status_set(event: Any) -> str:
    """The status a status change sets: a reactivation names the one the keys go back to."""
    if isinstance(event, Registry.MasterKeysActivated):
        return ACTIVE
    if isinstance(event, Registry.MasterKeysDeprecated):
        return DEPRECATED
    return str(event.status)


def apply_registry_event(state: RegistryRows, event: Any) -> pa.Array | None:
    """Fold one registry event into ``state``; return the master keys whose rows changed other than in
    ``last_seen_run_id`` (None: none). A row appended is a changed row too."""
    import pyarrow as pa
    import pyarrow.compute as pc

    at = event.timestamp.isoformat()
    table = state.table
    masters = table["master_key"]
    if isinstance(event, Registry.MasterKeysProposed):
        if event.run_id != state.sighting:  # the run's proposals start its sighting: it saw no key seen before
            table = _unmarked(state, table)
            state.sighting = event.run_id
        mark = SEEN_BY_LATEST if state.marked else event.run_id
        new, systems, source = batch_columns(event.entries, ("master_key", "systems", "source_key"))
        count = len(new)
        given = [filled(count, v) for v in (PROPOSED, at, at, event.run_id, mark, "")]
        added = pa.table([new, systems, source, *given], names=list(REGISTRY_COLUMNS))
        table = table.filter(pc.invert(pc.is_in(masters, value_set=new)))  # a key proposed again starts anew
        state.table = compacted(pa.concat_tables([table, added]))
        return new
    if isinstance(event, Registry.MasterKeysSeen):
        if event.unseen is None:  # every known key the run saw, as stored before: rows hold run ids from here
            table = _unmarked(state, table)
            state.marked = False
            state.sighting = mark = event.run_id
        else:  # what changed since the latest sighting
            if not state.marked:
                last_seen = table[LAST_SEEN]
                marks = pc.if_else(pc.equal(last_seen, state.sighting), SEEN_BY_LATEST, last_seen)
                table = with_columns(table, last_seen_run_id=marks)
                state.marked = True
            unseen = pc.is_in(masters, value_set=batch_columns(event.unseen, ("master_key",))[0])
            table = with_columns(table, last_seen_run_id=pc.if_else(unseen, state.sighting, table[LAST_SEEN]))
            state.sighting = event.run_id
            mark = SEEN_BY_LATEST
        seen, systems = batch_columns(event.entries, ("master_key", "systems"))
        at_entry = pc.index_in(masters, value_set=seen)
        listed = pc.is_valid(at_entry)
        now = systems.take(at_entry)
        moved = pc.fill_null(pc.not_equal(now, table["source_systems"]), False)
        state.table = with_columns(
            table,
            source_systems=pc.if_else(moved, now, table["source_systems"]),
            updated_at=pc.if_else(moved, at, table["updated_at"]),
            last_seen_run_id=pc.if_else(listed, mark, table[LAST_SEEN]),
        )
        return masters.filter(moved).combine_chunks()
    if isinstance(event, STATUS_CHANGES):
        status = _status_set(event)
        changed = batch_columns(event.master_keys, ("master_key",))[0]
        chosen = pc.is_in(masters, value_set=changed)
        state.table = with_columns(
            table,
            status=pc.if_else(chosen, status, table["status"]),
            updated_at=pc.if_else(chosen, at, table["updated_at"]),
            status_reason=pc.if_else(chosen, event.reason, table["status_reason"]),
        )
        return changed
    return None


def _unmarked(state: RegistryRows, table: pa.Table) -> pa.Table:
    """The rows the latest sighting saw get its run id (a next sighting did not see them, or marks are left)."""
    import pyarrow.compute as pc

    if not state.marked:
        return table
    last_seen = table[LAST_SEEN]
    resolved = pc.if_else(pc.equal(last_seen, SEEN_BY_LATEST), state.sighting, last_seen)
    return with_columns(table, last_seen_run_id=resolved)


def matching(rows: list[dict[str, str]], system: str | None = None, search: str | None = None) -> list[dict[str, str]]:
    """The rows of master keys seen in ``system`` (one of their source systems) whose master or source key holds
    ``search`` (ignoring case)."""
    if system:
        rows = [row for row in rows if system in row["source_systems"].split("|")]
    if search:
        text = search.casefold()
        rows = [row for row in rows if text in row["master_key"].casefold() or text in row["source_key"].casefold()]
    return rows

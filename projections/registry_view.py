"""The registry read model: one row per master key, folded from the registry's batch events.

When a key was last seen: a run records only what changed in what it saw (keysync.domain.registry), so a row the
latest sighting saw holds ``SEEN_BY_LATEST``, resolved on reading to that run, and a run writes only the rows of
the keys it stopped seeing or saw anew. Rows folded from a store written before hold a run id each (as that
version wrote them); the first sighting recorded as changes marks the rows its predecessor saw, once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from keysync.domain.registry import ACTIVE, DEPRECATED, PROPOSED, batch_keys, batch_rows

SEEN_BY_LATEST = "*"  # never a run id (those are hex digits)
LAST_SEEN = "last_seen_run_id"


@attrs.define
class RegistryRows:
    """The registry view's rows (master key -> row, ``last_seen_run_id`` as stored), the latest sighting, and
    whether the rows it saw are marked (``SEEN_BY_LATEST``) or hold its run id (as stores written before, and
    never both)."""

    rows: dict[str, dict[str, str]] = attrs.Factory(dict)
    sighting: str = ""
    marked: bool = True

    def resolved(self, rows: Iterable[dict[str, str]] | None = None) -> list[dict[str, str]]:
        """``rows`` (default: all, by master key) with the latest sighting's run in place of the mark. Only the
        marked rows are copied."""
        if rows is None:
            rows = (self.rows[m] for m in sorted(self.rows))
        sighting = self.sighting
        return [row if row[LAST_SEEN] != SEEN_BY_LATEST else {**row, LAST_SEEN: sighting} for row in rows]


def apply_registry_event(state: RegistryRows, event: Any, seen: dict[str, str] | None = None) -> set[str]:
    """Fold one registry event into ``state``; return the master keys whose rows changed. With ``seen``, a row
    whose last_seen_run_id is all that changed is noted there (master key -> its new value) rather than returned:
    one bulk update per value stores those."""
    rows = state.rows
    name = type(event).__name__
    at = event.timestamp.isoformat()
    changed: set[str] = set()

    def last_seen(master: str, value: str) -> None:
        rows[master][LAST_SEEN] = value
        if seen is not None:
            seen[master] = value
        else:
            changed.add(master)

    if name == "MasterKeysProposed":
        if event.run_id != state.sighting:  # the run's proposals start its sighting: it saw no key seen before
            _unmark(state, last_seen)
            state.sighting = event.run_id
        mark = SEEN_BY_LATEST if state.marked else event.run_id
        for master, _normalized, systems, source_key in batch_rows(event.entries):
            rows[master] = {
                "master_key": master,
                "source_systems": systems,
                "source_key": source_key,
                "status": PROPOSED,
                "created_at": at,
                "updated_at": at,
                "created_run_id": event.run_id,
                LAST_SEEN: mark,
                "status_reason": "",
            }
            changed.add(master)
    elif name == "MasterKeysSeen":
        if event.unseen is None:  # every known key the run saw, as stored before: rows hold run ids from here
            _unmark(state, last_seen)
            state.marked = False
            state.sighting = event.run_id
            mark = event.run_id
        else:  # what changed since the latest sighting
            if not state.marked:
                for master, row in rows.items():
                    if row[LAST_SEEN] == state.sighting:
                        last_seen(master, SEEN_BY_LATEST)
                state.marked = True
            for master in batch_keys(event.unseen):
                last_seen(master, state.sighting)
            state.sighting = event.run_id
            mark = SEEN_BY_LATEST
        for master, systems in batch_rows(event.entries):
            row = rows[master]
            if row["source_systems"] != systems:
                row["source_systems"] = systems
                row["updated_at"] = at
                row[LAST_SEEN] = mark
                changed.add(master)
            else:
                last_seen(master, mark)
    elif name in ("MasterKeysActivated", "MasterKeysDeprecated"):
        status = ACTIVE if name == "MasterKeysActivated" else DEPRECATED
        for master in batch_keys(event.master_keys):
            row = rows[master]
            row["status"] = status
            row["updated_at"] = at
            row["status_reason"] = event.reason
            changed.add(master)
    elif name == "MasterKeysReactivated":  # back to Active by hand, or to its status before by a run
        for master in batch_keys(event.master_keys):
            row = rows[master]
            row["status"] = event.status
            row["updated_at"] = at
            row["status_reason"] = event.reason
            changed.add(master)
    return changed


def _unmark(state: RegistryRows, last_seen: Any) -> None:
    """The rows the latest sighting saw get its run id (a next sighting did not see them, or marks are left)."""
    if state.marked:
        for master, row in state.rows.items():
            if row[LAST_SEEN] == SEEN_BY_LATEST:
                last_seen(master, state.sighting)


def matching(rows: list[dict[str, str]], system: str | None = None, search: str | None = None) -> list[dict[str, str]]:
    """The rows of master keys seen in ``system`` (one of their source systems) whose master or source key holds
    ``search`` (ignoring case)."""
    if system:
        rows = [row for row in rows if system in row["source_systems"].split("|")]
    if search:
        text = search.casefold()
        rows = [row for row in rows if text in row["master_key"].casefold() or text in row["source_key"].casefold()]
    return rows

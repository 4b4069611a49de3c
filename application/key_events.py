"""What one stored event means for one key: batches of keys are read for that key alone ("seen in B"), never
counted, so that `keysync key` and `keysync audit --key` speak of the key asked about."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

from keysync.domain.columns import Column, text_array, unpack_text
from keysync.domain.normalization import NormalizationRules, normalize_keys, rows_normalized_to
from keysync.domain.registry import Registry
from keysync.domain.run import ReconciliationRun as Run
from keysync.domain.sandbox import Sandbox

# Sandbox edits: the rows they removed and added ([system, position, source_key, ...] each), by event type, with
# the command that made them.
SANDBOX_EDITS = {
    Sandbox.Initialized: "init",
    Sandbox.Reset: "reset",
    Sandbox.KeysAdded: "add-key",
    Sandbox.KeysRemoved: "remove-key",
    Sandbox.KeysModified: "modify-key",
    Sandbox.StateLoaded: "load-state",
    Sandbox.OperationReverted: "undo",
    Sandbox.OperationRestored: "redo",
}
SEEN = "seen in "
PROPOSED = "proposed as master key "
NOT_SEEN = "not seen as a master key by this run (seen by the run before that saw any)"


def meaning(event: Any, key: str, rules: NormalizationRules) -> str | None:
    """What ``event`` did to or said of the normalized ``key``; None when it does not concern the key."""
    if isinstance(event, Run.RowsObserved | Run.KeysObserved | Run.RowsAdded | Run.RowsSpliced):
        keys = _keys_of(event)
        if not len(rows_holding(keys, key, rules)):
            return None
        if isinstance(event, Run.RowsSpliced):  # a row added, or changed or moved (said as removed and added)
            return f"in the rows of {event.system} recorded as changed"
        return f"added to {event.system}" if isinstance(event, Run.RowsAdded) else f"{SEEN}{event.system}"
    if isinstance(event, Registry.MasterKeysProposed):
        entry = _entry(event.entries, key, (0, 1))
        return None if entry is None else f"{PROPOSED}{entry[0]} (from {entry[2]})"
    if isinstance(event, Registry.MasterKeysSeen):
        entry = _entry(event.entries, key, (0,))
        if entry is not None:
            return f"seen again as a master key (source systems now {entry[1]})"
        return NOT_SEEN if event.unseen is not None and _entry(event.unseen, key, (0,)) else None
    if isinstance(event, Registry.MasterKeysActivated | Registry.MasterKeysDeprecated):
        if not _entry(event.master_keys, key, (0,)):
            return None
        verb = "activated" if isinstance(event, Registry.MasterKeysActivated) else "deprecated"
        return f"{verb} by {event.actor}: {event.reason}" if event.reason else f"{verb} by {event.actor}"
    if isinstance(event, Registry.MasterKeysReactivated):
        if not _entry(event.master_keys, key, (0,)):
            return None
        return f"back to {event.status} ({event.actor}: {event.reason})"
    if type(event) in SANDBOX_EDITS:
        return _sandbox_edit(event, key, rules)
    return None


def _entry(batch: pa.Table | list[Any], key: str, columns: tuple[int, ...]) -> list[str] | None:
    """The first entry of a registry event's batch whose given columns hold ``key`` (a batch of master keys: a
    one-column table, or a list of keys as stored before). A table is searched in Arrow, not row by row."""
    if isinstance(batch, list):
        rows = [e if isinstance(e, list) else [e] for e in batch]
        return next((e for e in rows if any(e[c] == key for c in columns)), None)
    import pyarrow.compute as pc

    hits = pc.equal(batch.column(columns[0]), key)
    for c in columns[1:]:
        hits = pc.or_(hits, pc.equal(batch.column(c), key))
    held = batch.filter(hits).slice(0, 1).to_pylist()
    return list(held[0].values()) if held else None


def _sandbox_edit(event: Any, key: str, rules: NormalizationRules) -> str | None:
    removed = _systems_holding(event.removed, key, rules)
    added = _systems_holding(event.added, key, rules)
    if not removed and not added:
        return None
    kept = [s for s in removed if s in added]
    parts = [
        *([f"added to {', '.join(s for s in added if s not in kept)}"] if set(added) - set(kept) else []),
        *([f"removed from {', '.join(s for s in removed if s not in kept)}"] if set(removed) - set(kept) else []),
        *([f"changed in {', '.join(kept)}"] if kept else []),
    ]
    return f"sandbox {SANDBOX_EDITS[type(event)]} by {event.actor}: {'; '.join(parts)}"


def _systems_holding(entries: Sequence[Sequence[Any]], key: str, rules: NormalizationRules) -> list[str]:
    """The systems of the sandbox rows whose key normalizes to ``key``, in order, once each."""
    if not entries:
        return []
    normalized = normalize_keys([str(e[2]) for e in entries], rules)
    return list(dict.fromkeys(e[0] for e, k in zip(entries, normalized, strict=True) if k == key))


def _keys_of(event: Any) -> Column | pa.Array | pa.ChunkedArray:
    """The key column of an event that holds rows: observed whole, or added by a delta."""
    if isinstance(event, Run.RowsObserved):
        return event.rows.column("key")
    if isinstance(event, Run.RowsSpliced):
        return event.added.column("key")
    return event.keys


def rows_holding(keys: Column | pa.Array | pa.ChunkedArray, wanted: str, rules: NormalizationRules) -> np.ndarray:
    """The rows of a stored key column (Arrow, or an earlier version's joined text) whose key normalizes to
    ``wanted``: through Arrow, with no Python string per row."""
    if not isinstance(keys, str | list):
        return rows_normalized_to(keys, wanted, rules)
    try:
        array = text_array(keys)
    except UnicodeEncodeError:  # a lone surrogate (from a JSON escape): not text Arrow holds
        normalized = normalize_keys(unpack_text(keys), rules)
        return np.array([i for i, k in enumerate(normalized) if k == wanted], dtype=np.int64)
    return rows_normalized_to(array, wanted, rules)

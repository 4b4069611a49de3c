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

# Sandbox edits: the rows they removed and added ([system, position, source_key, ...] each), by event type.
SANDBOX_EDITS = {
    "Initialized": "init",
    "Reset": "reset",
    "KeysAdded": "add-key",
    "KeysRemoved": "remove-key",
    "KeysModified": "modify-key",
    "StateLoaded": "load-state",
    "OperationReverted": "undo",
    "OperationRestored": "redo",
}
SEEN = "seen in "
PROPOSED = "proposed as master key "
NOT_SEEN = "not seen as a master key by this run (seen by the run before that saw any)"


def meaning(event: Any, key: str, rules: NormalizationRules) -> str | None:
    """What ``event`` did to or said of the normalized ``key``; None when it does not concern the key."""
    name = type(event).__name__
    if name in ("RowsObserved", "KeysObserved", "RowsAdded"):
        keys = event.rows.column("key") if name == "RowsObserved" else event.keys
        found = len(rows_holding(keys, key, rules)) > 0
        return (f"added to {event.system}" if name == "RowsAdded" else f"{SEEN}{event.system}") if found else None
    if name == "MasterKeysProposed":
        entry = next((e for e in event.entries if key in (e[0], e[1])), None)
        return None if entry is None else f"{PROPOSED}{entry[0]} (from {entry[2]})"
    if name == "MasterKeysSeen":
        entry = next((e for e in event.entries if e[0] == key), None)
        if entry is not None:
            return f"seen again as a master key (source systems now {entry[1]})"
        return NOT_SEEN if key in (event.unseen or ()) else None
    if name in ("MasterKeysActivated", "MasterKeysDeprecated"):
        if key not in event.master_keys:
            return None
        verb = "activated" if name == "MasterKeysActivated" else "deprecated"
        return f"{verb} by {event.actor}: {event.reason}" if event.reason else f"{verb} by {event.actor}"
    if name == "MasterKeysReactivated":
        if key not in event.master_keys:
            return None
        return f"back to {event.status} ({event.actor}: {event.reason})"
    if name in SANDBOX_EDITS:
        return _sandbox_edit(event, key, rules)
    return None


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
    return f"sandbox {SANDBOX_EDITS[type(event).__name__]} by {event.actor}: {'; '.join(parts)}"


def _systems_holding(entries: Sequence[Sequence[Any]], key: str, rules: NormalizationRules) -> list[str]:
    """The systems of the sandbox rows whose key normalizes to ``key``, in order, once each."""
    if not entries:
        return []
    normalized = normalize_keys([str(e[2]) for e in entries], rules)
    return list(dict.fromkeys(e[0] for e, k in zip(entries, normalized, strict=True) if k == key))


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

"""The audit read model: one row per stored event, its payload summarised (batches of keys become counts)."""

from __future__ import annotations

import json
from typing import Any

from keysync.domain.run import ReconciliationRun as Run

# Fields that carry batches of keys or rows: the audit shows how many, never the keys themselves.
KEY_BATCHES = {"keys", "rows", "entries", "master_keys", "added", "removed", "unseen"}
_ENVELOPE = {"originator_id", "originator_version", "timestamp", "originator_topic"}


def summarise(event: Any) -> dict[str, Any]:
    """The event's payload, fit for a report cell: lists of keys are counted, not copied."""
    if isinstance(event, Run.RowsObserved):
        return {"system": event.system, "keys": event.rows.num_rows}
    if isinstance(event, Run.KeysObserved | Run.RowsAdded):  # as earlier versions stored keys
        from keysync.domain.columns import text_length  # numpy and pyarrow: loaded only if old events are read

        return {"system": event.system, "keys": text_length(event.keys)}
    if isinstance(event, Run.RowsRejected):
        return {"system": event.system, "rows": len(event.rows)}
    if isinstance(event, Run.RowsSpliced):
        return {"system": event.system, "removed": event.removed.num_rows, "added": event.added.num_rows}
    if isinstance(event, Run.RowsRemoved):
        from keysync.domain.columns import unpack_lines

        return {"system": event.system, "rows": len(unpack_lines(event.rows))}
    payload: dict[str, Any] = {}
    for field, value in vars(event).items():
        if field in _ENVELOPE or field.startswith("_"):
            continue
        if field == "lines":  # a changed source's line numbers, as runs: nothing to read there
            continue
        if field == "unseen" and value is None:  # a MasterKeysSeen stored before it listed the keys no longer seen
            continue
        if field in KEY_BATCHES and isinstance(value, list):  # as stored before; `keysync audit --key` finds keys
            payload[f"{field}_count"] = len(value)
        elif field in KEY_BATCHES and hasattr(value, "num_rows"):  # an Arrow table
            payload[f"{field}_count"] = value.num_rows
        else:
            payload[field] = value
    return payload


def audit_row(event_id: int, run_id: str, event: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "run_id": run_id,
        "event_type": type(event).__name__,
        "payload": json.dumps(summarise(event), sort_keys=True, default=str),
        "created_at": event.timestamp.isoformat(),
    }

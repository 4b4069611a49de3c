"""The registry read model: one row per master key, folded from the registry's batch events."""

from __future__ import annotations

from typing import Any

from keysync.domain.registry import ACTIVE, DEPRECATED, PROPOSED


def apply_registry_event(rows: dict[str, dict[str, str]], event: Any) -> set[str]:
    """Fold one registry event into ``rows``; return the master keys whose rows changed."""
    name = type(event).__name__
    at = event.timestamp.isoformat()
    changed: set[str] = set()
    if name == "MasterKeysProposed":
        for master, _normalized, systems, source_key in event.entries:
            rows[master] = {
                "master_key": master,
                "source_systems": systems,
                "source_key": source_key,
                "status": PROPOSED,
                "created_at": at,
                "updated_at": at,
                "created_run_id": event.run_id,
                "last_seen_run_id": event.run_id,
                "status_reason": "",
            }
            changed.add(master)
    elif name == "MasterKeysSeen":
        for master, systems in event.entries:
            row = rows[master]
            if row["source_systems"] != systems:
                row["source_systems"] = systems
                row["updated_at"] = at
            row["last_seen_run_id"] = event.run_id
            changed.add(master)
    elif name in ("MasterKeysActivated", "MasterKeysDeprecated"):
        status = ACTIVE if name == "MasterKeysActivated" else DEPRECATED
        for master in event.master_keys:
            row = rows[master]
            row["status"] = status
            row["updated_at"] = at
            row["status_reason"] = event.reason
            changed.add(master)
    return changed

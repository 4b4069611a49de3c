"""The registry read model: one row per master key, folded from the registry's batch events."""

from __future__ import annotations

from typing import Any

from keysync.domain.registry import ACTIVE, DEPRECATED, PROPOSED


def apply_registry_event(rows: dict[str, dict[str, str]], event: Any, seen: dict[str, str] | None = None) -> set[str]:
    """Fold one registry event into ``rows``; return the master keys whose rows changed. With ``seen``, a row
    that a run only saw again (its last_seen_run_id is all that changed) is noted there (master key -> run id)
    rather than returned: a run sees most keys again, and one bulk update stores that."""
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
            row["last_seen_run_id"] = event.run_id
            if row["source_systems"] != systems:
                row["source_systems"] = systems
                row["updated_at"] = at
            elif seen is not None:
                seen[master] = event.run_id
                continue
            changed.add(master)
    elif name in ("MasterKeysActivated", "MasterKeysDeprecated"):
        status = ACTIVE if name == "MasterKeysActivated" else DEPRECATED
        for master in event.master_keys:
            row = rows[master]
            row["status"] = status
            row["updated_at"] = at
            row["status_reason"] = event.reason
            changed.add(master)
    elif name == "MasterKeysReactivated":  # back to Active by hand, or to its status before by a run
        for master in event.master_keys:
            row = rows[master]
            row["status"] = event.status
            row["updated_at"] = at
            row["status_reason"] = event.reason
            changed.add(master)
    return changed


def matching(rows: list[dict[str, str]], system: str | None = None, search: str | None = None) -> list[dict[str, str]]:
    """The rows of master keys seen in ``system`` (one of their source systems) whose master or source key holds
    ``search`` (ignoring case)."""
    if system:
        rows = [row for row in rows if system in row["source_systems"].split("|")]
    if search:
        text = search.casefold()
        rows = [row for row in rows if text in row["master_key"].casefold() or text in row["source_key"].casefold()]
    return rows

"""The run-history read model (the pull log): one row per run with its outcome and KPIs."""

from __future__ import annotations

import json
from typing import Any

from keysync.domain.run import ReconciliationRun as Run


def apply_run_event(rows: dict[str, dict[str, Any]], event: Any) -> str | None:
    """Fold one run event into ``rows`` (keyed by originator id); return the key of the changed row."""
    key = str(event.originator_id)
    at = event.timestamp.isoformat()
    if isinstance(event, Run.Started):
        rows[key] = {
            "run_id": event.run_id,
            "originator_id": key,
            "started_at": at,
            "finished_at": "",
            "status": "running",
            "mode": event.mode,
            "duration_s": None,
            "errors": "",
            "kpis": "",
            # When the data was true: a replayed snapshot's date, else the run's own start.
            "as_of": event.options.get("as_of") or at,
        }
    elif isinstance(event, Run.SourceUnavailable):
        _add_error(rows[key], f"{event.system} unavailable: {event.reason}")
    elif isinstance(event, Run.SourceSuperseded):  # read again after a resume: its older recording's error goes with it
        if getattr(event, "unavailable", ""):
            _drop_error(rows[key], f"{event.system} unavailable: {event.unavailable}")
        if getattr(event, "held_back", ""):
            _drop_error(rows[key], f"{event.system} suspect: {event.held_back}")
    elif isinstance(event, Run.SourceHeldBack):
        _add_error(rows[key], f"{event.system} suspect: {event.reason}")
    elif isinstance(event, Run.Completed):
        row = rows[key]
        row.update(finished_at=at, status="completed", kpis=json.dumps(event.kpis, sort_keys=True))
        row["duration_s"] = event.kpis.get("duration_s")
    elif isinstance(event, Run.Failed):
        row = rows[key]
        row.update(finished_at=at, status="failed")
        _add_error(row, event.reason)
    else:
        return None
    return key


def _add_error(row: dict[str, Any], error: str) -> None:
    row["errors"] = f"{row['errors']}; {error}" if row["errors"] else error


def _drop_error(row: dict[str, Any], error: str) -> None:
    for said in (f"; {error}", f"{error}; ", error):  # the errors were joined with "; " as they came
        if said in row["errors"]:
            row["errors"] = row["errors"].replace(said, "", 1)
            return

"""Fault injection for crash tests: stop the process dead (SIGKILL) at a chosen point.

KEYSYNC_CRASH_AFTER_EVENTS=N  kill the process right after the save that stores its Nth event;
KEYSYNC_CRASH_IN_REPORT=NAME  kill it half-way through writing report NAME (e.g. audit_log.csv).
Unset, these cost one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

_saved = 0


def after_saving(events: int) -> None:
    global _saved
    limit = os.environ.get("KEYSYNC_CRASH_AFTER_EVENTS")
    if not limit:
        return
    _saved += events
    if _saved >= int(limit):
        os.kill(os.getpid(), signal.SIGKILL)


def while_writing(report: str) -> None:
    if os.environ.get("KEYSYNC_CRASH_IN_REPORT") == report:
        os.kill(os.getpid(), signal.SIGKILL)

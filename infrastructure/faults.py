"""Fault injection for crash and failure tests: stop the process dead (SIGKILL), or fail a write as a full disk
does, at a chosen point.

KEYSYNC_CRASH_AFTER_EVENTS=N     kill the process right after the save that stores its Nth event;
KEYSYNC_PAUSE_AFTER_EVENTS=N     after that save, say so on stderr ("paused after N events") and wait for a
                                 signal (a test's Ctrl-C, at a known point);
KEYSYNC_CRASH_IN_REPORT=NAME     kill it half-way through writing report NAME (e.g. audit_log.csv);
KEYSYNC_DISK_FULL_IN_REPORT=NAME make writing report NAME fail half-way with OSError(ENOSPC), as a full disk
                                 does (``*``: every report). Tests use it where a full disk cannot be had (a
                                 read-only folder does not stop root).
Unset, these cost one dictionary lookup.
"""

from __future__ import annotations

import errno
import os
import signal
import sys

_saved = 0
_paused = False


def after_saving(events: int) -> None:
    global _saved, _paused
    limit = os.environ.get("KEYSYNC_CRASH_AFTER_EVENTS")
    pause = os.environ.get("KEYSYNC_PAUSE_AFTER_EVENTS")
    if not (limit or pause):
        return
    _saved += events
    if limit and _saved >= int(limit):
        os.kill(os.getpid(), signal.SIGKILL)
    if pause and not _paused and _saved >= int(pause):
        _paused = True
        print(f"paused after {_saved} events", file=sys.stderr, flush=True)
        signal.pause()


def while_writing(report: str) -> None:
    if os.environ.get("KEYSYNC_CRASH_IN_REPORT") == report:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("KEYSYNC_DISK_FULL_IN_REPORT") in (report, "*"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

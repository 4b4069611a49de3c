"""Telling someone after a run: the config's ``notify.command`` gets the run's summary as JSON on its standard input.

The command runs through keysync.application.schedule's ``ShellNotifier`` (the one ``keysync schedule
--notify-command`` uses): through the shell, killed with its children after 30 s. A notifier that fails is logged
and reported to the caller, never raised: a run is not worse for its notification going astray.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from keysync.application.schedule import NotifyFailed, ShellNotifier

log = logging.getLogger("keysync")

Notifier = Callable[[dict[str, Any]], None]


def notify_after_run(
    command: str, summary: dict[str, Any], *, notifier: Callable[[str], Notifier] = ShellNotifier
) -> str | None:
    """Run ``command`` with ``summary`` as JSON on its standard input; nothing when ``command`` is "".

    Returns None when the notifier succeeded (or there is none), else one line saying why it failed, for the
    caller to show; the failure is logged too. Never raises for a failing notifier.
    """
    if not command.strip():
        return None
    run_id = summary.get("run_id")
    try:
        notifier(command)(summary)
    except Exception as error:  # NotifyFailed, or anything else: a notification must never fail the run
        if not isinstance(error, NotifyFailed):
            error = NotifyFailed(f"{command!r}: {type(error).__name__}: {error}")
        log.warning("notifier failed for run %s: %s", run_id, error,
                    extra={"fields": {"run_id": run_id, "error": str(error)}})  # fmt: skip
        return f"Notifier failed (ignored): {error}"
    log.info("notified for run %s", run_id, extra={"fields": {"run_id": run_id}})
    return None


def failed_run_summary(run_id: str | None, reason: str) -> dict[str, Any]:
    """The summary a notifier gets for a run that failed (the same shape as keysync schedule's)."""
    return {"run_id": run_id, "status": "failed", "error": reason}

"""Reading a slow or flaky source: each attempt runs in a worker thread with a time limit, and a failed attempt
is retried after an exponentially growing pause.

Python cannot stop a thread. An attempt that overruns its time limit is abandoned, not killed: it runs on in a
daemon thread (which never holds up the process's exit) and whatever it returns is dropped. A source that hangs
for ever therefore costs one idle thread per attempt, never the run.

Only the failures that may pass are retried: an I/O error (``OSError``, or ``SourceUnavailable`` that a reader
raised for one: a share that went away, a file being replaced) and a timeout. A permanent failure is given up at
once, after one attempt: ``SourceRefused`` (a file missing, not a regular file, in neither format, without a
source_key column, over the size limit) and the OSErrors that say the same (no such file, a directory). Any other
exception is a bug, and is raised at once.

This lives in the application layer, not in infrastructure: when to give up on a system is part of the run's
policy, and it needs nothing but the standard library.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import attrs

from keysync.domain.observations import SourceRefused, SourceUnavailable

log = logging.getLogger("keysync")

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 300.0
DEFAULT_RETRIES = 2
# The pause before the first retry; each later one doubles it (0.5 s, 1 s, 2 s...). Short, because most failed
# reads fail fast and for good (a missing file); the retries are for the brief hiccups of a share or an export.
BACKOFF_BASE_S = 0.5

RETRYABLE = (OSError, SourceUnavailable)
PERMANENT = (SourceRefused, FileNotFoundError, IsADirectoryError, NotADirectoryError)  # checked first


@attrs.frozen
class RetryPolicy:
    """How long one attempt may take, how often a failed one is retried, and how to wait in between.

    ``sleep`` is there so that tests can record the pauses instead of waiting them out.
    """

    timeout_s: float = DEFAULT_TIMEOUT_S
    retries: int = DEFAULT_RETRIES
    backoff_s: float = BACKOFF_BASE_S
    sleep: Callable[[float], None] = attrs.field(default=time.sleep, eq=False, repr=False)

    @property
    def attempts(self) -> int:
        return self.retries + 1

    def pause(self, failed_attempt: int) -> float:
        """Seconds to wait after attempt number ``failed_attempt`` (1-based) has failed."""
        return self.backoff_s * 2 ** (failed_attempt - 1)


class GaveUp(Exception):
    """Every attempt failed; the message says how the last one did, and how many there were."""

    def __init__(self, reason: str, attempts: int):
        super().__init__(f"{reason}, {attempts} attempt{'s' if attempts != 1 else ''}")
        self.reason = reason
        self.attempts = attempts


class _TimedOut(Exception):
    pass


def call_with_retries(call: Callable[[], T], policy: RetryPolicy, what: str = "the call") -> T:
    """Return what ``call()`` returns, trying up to ``policy.attempts`` times, each within ``policy.timeout_s``.

    Raises ``GaveUp`` when every attempt timed out or failed with a retryable error ("timed out after 300 s,
    3 attempts"), or at once on a permanent one ("file not found, 1 attempt"); any other exception is raised as it
    is, at once. ``what`` names the call in the log.
    """
    reason = ""
    for attempt in range(1, policy.attempts + 1):
        try:
            return _within(call, policy.timeout_s, what)
        except _TimedOut:
            reason = f"timed out after {policy.timeout_s:g} s"
        except PERMANENT as error:
            raise GaveUp(_describe(error), attempt) from error  # trying again cannot help
        except RETRYABLE as error:
            reason = _describe(error)
        if attempt < policy.attempts:
            pause = policy.pause(attempt)
            log.warning("%s failed (attempt %d of %d: %s); retrying in %g s", what, attempt, policy.attempts,
                        reason, pause, extra={"fields": {"attempt": attempt, "error": reason}})  # fmt: skip
            policy.sleep(pause)
    raise GaveUp(reason, policy.attempts)


def _within(call: Callable[[], T], timeout_s: float, what: str) -> T:
    """``call()`` in a daemon thread; _TimedOut if it has not finished within ``timeout_s``."""
    finished = threading.Event()
    outcome: dict[str, Any] = {}

    def attempt() -> None:
        try:
            outcome["value"] = call()
        except BaseException as error:  # handed to the waiting thread, which decides
            outcome["error"] = error
        finally:
            finished.set()

    threading.Thread(target=attempt, name=f"keysync-read {what}", daemon=True).start()
    if not finished.wait(timeout_s):
        raise _TimedOut
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _describe(error: Exception) -> str:
    if isinstance(error, OSError):
        return f"{error.strerror or error}: {error.filename or ''}".rstrip(": ")
    return str(error)

"""Scheduled reconciliation: run on a cron expression until asked to stop.

``Scheduler`` owns the loop and nothing else: what "now" is (``clock``), how to wait (``sleep_until``) and
what a run is (``job``) are given to it, so tests drive it with a fake clock and never really wait. Cron
expressions are read in UTC. A run that fails (including one refused because another run holds the store's
run lock) is logged and the scheduler waits for the next fire time; a stop request ends the loop after the run
in progress.

``Sleeper`` is the real waiting, ``ShellNotifier`` the optional "tell someone after each run".
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from keysync.application.service import RunOutcome

__all__ = [
    "NotifyFailed",
    "ScheduleError",
    "ScheduledRun",
    "Scheduler",
    "ShellNotifier",
    "Sleeper",
    "next_fire_times",
    "utc_now",
]

log = logging.getLogger("keysync")

Clock = Callable[[], datetime]
SleepUntil = Callable[[datetime], None]
Job = Callable[[], "RunOutcome"]
Notify = Callable[[dict[str, Any]], None]

NOTIFY_TIMEOUT_S = 30.0


class ScheduleError(ValueError):
    """A cron expression that cannot be scheduled (for instance one whose day never comes)."""


class NotifyFailed(Exception):
    """The notifier could not be started, failed or hung."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"the scheduler needs timezone-aware times, got {moment.isoformat()}")
    return moment.astimezone(UTC)


def next_fire_times(cron: str, after: datetime, count: int = 1) -> list[datetime]:
    """The next ``count`` fire times of ``cron`` (read in UTC) strictly after ``after``, as aware UTC times."""
    from croniter import CroniterError, croniter  # here: `keysync --help` need not load it

    start = _as_utc(after)
    try:
        times = croniter(cron, start)
        return [times.get_next(datetime).astimezone(UTC) for _ in range(count)]
    except (CroniterError, ValueError, KeyError) as error:
        raise ScheduleError(f"schedule {cron!r} cannot be scheduled: {error}") from error


@attrs.frozen
class ScheduledRun:
    """What one scheduled run did: its outcome, or the error that ended it."""

    fire_time: datetime
    started_at: datetime
    finished_at: datetime
    run_id: str | None = None
    outcome: RunOutcome | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def describe_error(error: Exception) -> tuple[str | None, str]:
    """The run id (when known) and a one-line message for a run's exception."""
    from keysync.application.ports import RunInProgress
    from keysync.application.reconcile import RunFailed
    from keysync.application.service import ConflictError, ReportsNotWritten

    if isinstance(error, RunFailed):
        return error.run.run_id, error.reason
    if isinstance(error, ReportsNotWritten):
        return error.run_id, str(error)
    if isinstance(error, ConflictError | RunInProgress):
        return None, str(error)
    if isinstance(error, OSError):
        return None, f"{error.strerror or error}: {error.filename or ''}".rstrip(": ")
    return None, f"{type(error).__name__}: {error}"


def _expected(error: Exception) -> bool:
    """Whether a run's exception is one a run can meet (the data's, the store's, another run's), not a bug.

    The engine's errors are imported here, not at the top: the command line imports this module for
    ``keysync --help``, which need not load the engine."""
    from keysync.application.ports import RunInProgress
    from keysync.application.reconcile import RunFailed
    from keysync.application.service import ConflictError, ReportsNotWritten

    return isinstance(error, RunFailed | ConflictError | RunInProgress | OSError | ReportsNotWritten)


def _default_summary(outcome: RunOutcome) -> dict[str, Any]:
    return {"run_id": outcome.run_id, "kpis": outcome.result.run.kpis}


@attrs.define
class Scheduler:
    """Runs ``job`` at every fire time of ``cron`` until ``stop()`` or ``max_runs``.

    ``clock`` returns an aware UTC datetime. ``sleep_until(moment)`` waits until the clock reaches ``moment``
    and may return early (the loop then checks for a stop and otherwise waits again); ``wake``, when given,
    makes a sleep in progress return early and is called by ``stop()``. ``notify`` gets each run's summary
    (``summarize(outcome)`` for a completed run); its failures are logged and never end the loop. ``on_wait``
    and ``on_run`` let the caller show what is happening.
    """

    cron: str
    job: Job
    clock: Clock
    sleep_until: SleepUntil
    wake: Callable[[], None] | None = None
    notify: Notify | None = None
    summarize: Callable[[RunOutcome], dict[str, Any]] = _default_summary
    on_wait: Callable[[datetime], None] | None = None
    on_run: Callable[[ScheduledRun], None] | None = None
    # A plain flag, not a lock-taking primitive: stop() is called from signal handlers.
    _stop_requested: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        next_fire_times(self.cron, self.now())  # refuse an unusable expression now, not at the first wait

    # ----------------------------------------------------------------------------------------------------

    def now(self) -> datetime:
        return _as_utc(self.clock())

    def next_fire_times(self, count: int = 1, after: datetime | None = None) -> list[datetime]:
        return next_fire_times(self.cron, after or self.now(), count)

    def stop(self) -> None:
        """End the loop: now if it is waiting, else after the run in progress.

        Safe from a signal handler and from another thread: it sets a flag and calls ``wake``, nothing more.
        """
        self._stop_requested = True
        if self.wake is not None:
            self.wake()

    @property
    def stopped(self) -> bool:
        return self._stop_requested

    # ----------------------------------------------------------------------------------------------------

    def serve(self, max_runs: int | None = None) -> list[ScheduledRun]:
        """Wait for each fire time and run; return the runs done when stopped or after ``max_runs`` runs."""
        done: list[ScheduledRun] = []
        log.info("scheduler started", extra={"fields": {"cron": self.cron, "max_runs": max_runs}})
        while not self.stopped and (max_runs is None or len(done) < max_runs):
            fire = self._next_fire(done[-1] if done else None)
            log.info("next scheduled run at %s", fire.isoformat(),
                     extra={"fields": {"cron": self.cron, "next_run_at": fire.isoformat()}})  # fmt: skip
            if self.on_wait is not None:
                self.on_wait(fire)
            while not self.stopped and self.now() < fire:
                self.sleep_until(fire)
            if self.stopped:
                break
            done.append(self.run_once(fire))
        log.info("scheduler stopped after %d run(s)", len(done),
                 extra={"fields": {"runs": len(done), "stop_requested": self.stopped}})  # fmt: skip
        return done

    def _next_fire(self, previous: ScheduledRun | None) -> datetime:
        now = self.now()
        [fire] = self.next_fire_times(1, now)
        if previous is not None:
            [due] = self.next_fire_times(1, previous.fire_time)
            if due < fire:
                log.warning("the run scheduled for %s overran; fire time(s) from %s to %s were skipped",
                            previous.fire_time.isoformat(), due.isoformat(), now.isoformat())  # fmt: skip
        return fire

    def run_once(self, fire_time: datetime) -> ScheduledRun:
        """One run, now, for ``fire_time``: never raises for a failed run (nor a failed notifier)."""
        started = self.now()
        log.info("scheduled run starting", extra={"fields": {"scheduled_for": fire_time.isoformat()}})
        try:
            outcome = self.job()
        except Exception as error:
            run_id, reason = describe_error(error)
            fields = {"run_id": run_id, "scheduled_for": fire_time.isoformat(), "error": reason}
            if _expected(error):
                log.error("scheduled run failed: %s", reason, extra={"fields": fields})
            else:  # a bug, most likely: keep the traceback in the log
                log.exception("scheduled run failed: %s", reason, extra={"fields": fields})
            record = ScheduledRun(fire_time, started, self.now(), run_id=run_id, error=reason)
        else:
            record = ScheduledRun(fire_time, started, self.now(), run_id=outcome.run_id, outcome=outcome)
        if self.on_run is not None:
            try:
                self.on_run(record)
            except Exception:
                log.exception("showing the run's summary failed")
        self._notify(record)
        return record

    def summary(self, record: ScheduledRun) -> dict[str, Any]:
        """The JSON summary a notifier gets."""
        scheduled = {"scheduled_for": record.fire_time.isoformat()}
        if record.outcome is None:
            return {"run_id": record.run_id, "status": "failed", "error": record.error, **scheduled}
        return {"run_id": record.run_id, "status": "completed"} | self.summarize(record.outcome) | scheduled

    def _notify(self, record: ScheduledRun) -> None:
        if self.notify is None:
            return
        try:
            self.notify(self.summary(record))
        except Exception as error:
            log.warning("notifier failed for run %s: %s", record.run_id, error,
                        extra={"fields": {"run_id": record.run_id, "error": str(error)}})  # fmt: skip
        else:
            log.info("notified for run %s", record.run_id, extra={"fields": {"run_id": record.run_id}})


# --------------------------------------------------------------------------------------------------------
# The real waiting and notifying


class Sleeper:
    """Waits until a wall-clock moment; ``wake()`` ends the current (or the next) wait early.

    ``wake()`` only writes a byte to a socket: a signal handler may call it. (Setting a threading.Event from
    a signal handler can deadlock when the signal lands while the main thread holds that Event's lock.)
    Waits are taken in naps of at most ``max_nap_s`` seconds, re-reading the clock, so a wall clock that
    jumps (NTP, a suspended machine) is followed.
    """

    def __init__(self, clock: Clock = utc_now, max_nap_s: float = 60.0) -> None:
        self._clock = clock
        self._max_nap_s = max_nap_s
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)

    def __call__(self, until: datetime) -> None:
        while True:
            remaining = (until - self._clock()).total_seconds()
            if remaining <= 0:
                return
            ready, _, _ = select.select([self._reader], [], [], min(remaining, self._max_nap_s))
            if ready:
                self._drain()
                return

    def wake(self) -> None:
        with contextlib.suppress(OSError):  # full (a wake is pending anyway) or closed
            self._writer.send(b"\0")

    def _drain(self) -> None:
        try:
            while self._reader.recv(4096):
                pass
        except OSError:
            pass

    def close(self) -> None:
        self._reader.close()
        self._writer.close()

    def __enter__(self) -> Sleeper:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _tail(output: bytes, limit: int = 500) -> str:
    text = " ".join(output.decode("utf-8", "replace").split())
    return text if len(text) <= limit else "..." + text[-limit:]


def _feed(stdin: IO[bytes], data: bytes) -> None:
    with contextlib.suppress(OSError):  # a notifier that reads nothing closes its end: not an error
        stdin.write(data)
    with contextlib.suppress(OSError):
        stdin.close()


def _drain(stdout: IO[bytes], kept: bytearray, limit: int = 8192) -> None:
    """Read a process's output to its end, keeping only its last ``limit`` bytes."""
    with contextlib.suppress(OSError, ValueError):
        for chunk in iter(lambda: stdout.read1(65536), b""):
            kept += chunk
            del kept[:-limit]
        stdout.close()


def _kill(process: subprocess.Popen[bytes]) -> None:
    """Kill the notifier and whatever it started (it runs in a session of its own), and reap it."""
    try:
        if hasattr(os, "killpg"):
            os.killpg(process.pid, signal.SIGKILL)
        else:  # pragma: no cover - Windows
            process.kill()
    except OSError:
        pass
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


@attrs.frozen
class ShellNotifier:
    """Runs ``command`` through the shell with the run summary as one line of JSON on its standard input.

    A non-zero exit, a command that cannot start, or one still running after ``timeout_s`` (it is killed,
    with its children) raises ``NotifyFailed``.
    """

    command: str
    timeout_s: float = NOTIFY_TIMEOUT_S

    def __call__(self, summary: dict[str, Any]) -> None:
        data = (json.dumps(summary, default=str) + "\n").encode("utf-8")
        try:
            process = subprocess.Popen(
                self.command,
                shell=True,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # so a timeout can kill its children too
            )
        except OSError as error:
            raise NotifyFailed(f"cannot start {self.command!r}: {error}") from error
        # Threads feed its input and keep the end of its output, and the wait is for the command itself: a child
        # left running in the background (holding the output open) does not hold the run up, and a command that
        # prints without end costs a bounded tail, not memory.
        assert process.stdin is not None and process.stdout is not None
        kept = bytearray()
        threading.Thread(target=_feed, args=(process.stdin, data), daemon=True).start()
        reader = threading.Thread(target=_drain, args=(process.stdout, kept), daemon=True)
        reader.start()
        try:
            process.wait(timeout=self.timeout_s)
        except subprocess.TimeoutExpired as error:
            _kill(process)
            raise NotifyFailed(f"{self.command!r} did not finish within {self.timeout_s:g} s and was killed") from error
        except BaseException:
            _kill(process)
            raise
        # The rest of what it printed. A child it left running may hold its output open: then the reader goes on
        # in the background until that child ends, and the message has what was printed so far.
        reader.join(timeout=1)
        output = bytes(kept)
        if process.returncode != 0:
            shown = _tail(output)
            raise NotifyFailed(
                f"{self.command!r} exited with status {process.returncode}" + (f": {shown}" if shown else "")
            )

"""keysync schedule: reconcile on the config's cron schedule until stopped."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from keysync.application.bootstrap import build, run_settings
from keysync.application.schedule import (
    NotifyFailed,
    ScheduledRun,
    ScheduleError,
    Scheduler,
    ShellNotifier,
    Sleeper,
    next_fire_times,
    utc_now,
)
from keysync.cli.options import config_option, json_option, load, message, print_json, user_errors
from keysync.cli.run import outcome_json
from keysync.infrastructure.logs import setup_logging

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@click.command("schedule")
@config_option
@click.option("--once", is_flag=True, help="Run at the next fire time, then exit.")
@click.option("--max-runs", type=click.IntRange(min=1), metavar="N", help="Exit after N runs.")
@click.option(
    "--next", "show_next", type=click.IntRange(min=1, max=1000), metavar="N",
    help="Print the next N fire times (UTC) and exit without running.",
)  # fmt: skip
@click.option(
    "--notify-command", metavar="CMD",
    help="After each run, run CMD through the shell with the run's summary as JSON on its standard input "
    "(a failing notifier, or one still running after 30 s, is logged and ignored).",
)  # fmt: skip
@click.option("-v", "--verbose", is_flag=True, help="Log progress on the console.")
@json_option
@user_errors
def schedule_command(
    config_path: Path | None,
    once: bool,
    max_runs: int | None,
    show_next: int | None,
    notify_command: str | None,
    verbose: bool,
    as_json: bool,
) -> None:
    """Reconcile on the config's cron schedule (read in UTC) until SIGINT or SIGTERM.

    Shows the next fire time and each run's summary. A failed run is logged and the scheduler waits for the
    next fire time. A stop signal ends it after the run in progress (a second one aborts that run). With
    --json, each run's summary (or, with --next, the list of times) is printed as JSON on stdout. With --once
    or --max-runs, the exit status is 1 when a run failed.

    Example: keysync schedule --next 5
    """
    if once and max_runs not in (None, 1):
        raise click.UsageError("--once and --max-runs disagree; give one of them")
    if show_next is not None and (once or max_runs or notify_command):
        raise click.UsageError("--next only prints fire times; it cannot be combined with running options")
    config = load(config_path)
    setup_logging(config.logs_dir, verbose)
    try:
        if show_next is not None:
            times = [t.isoformat() for t in next_fire_times(config.schedule, utc_now(), show_next)]
            if as_json:
                print_json(times)
            else:
                click.echo("\n".join(times))
            return
        _serve(config, 1 if once else max_runs, notify_command or config.notify.command or None, as_json)
    except ScheduleError as error:
        raise click.ClickException(str(error)) from error


def _serve(config: Any, max_runs: int | None, notify_command: str | None, as_json: bool) -> None:
    keysync = build(config)
    settings = run_settings(config)

    def on_wait(fire: datetime) -> None:
        message(f"Next run at {fire.isoformat()} (schedule {config.schedule!r}, UTC); waiting. Ctrl-C stops.")

    def on_run(record: ScheduledRun) -> None:
        message(summary_line(record))
        if as_json:
            click.echo(json.dumps(scheduler.summary(record), default=str))

    def notify(summary: dict[str, Any]) -> None:
        try:
            ShellNotifier(notify_command or "")(summary)
        except NotifyFailed as error:
            message(f"Notifier failed (ignored): {error}")
            raise

    clock = utc_now  # looked up at call time, so the tests can put a fake clock here
    with Sleeper(clock) as sleeper:
        scheduler = Scheduler(
            config.schedule,
            lambda: keysync.run(settings),
            clock=clock,
            sleep_until=sleeper,
            wake=sleeper.wake,
            notify=notify if notify_command else None,
            summarize=outcome_json,
            on_wait=on_wait,
            on_run=on_run,
        )
        with stop_on_signals(scheduler) as received:
            records = scheduler.serve(max_runs)
    failed = sum(not r.ok for r in records)
    if received:
        message(f"Stopped by {received[0]} after {len(records)} run(s).")
    elif failed:
        message(f"{failed} of {len(records)} scheduled run(s) failed.")
        sys.exit(1)


@contextmanager
def stop_on_signals(scheduler: Scheduler) -> Iterator[list[str]]:
    """SIGINT and SIGTERM stop the scheduler (after the run in progress); a second one aborts at once.

    Yields the names of the signals received. The handlers only set flags and wake the sleeper: printing or
    logging from a signal handler can fail on a stream the main thread is writing to.
    """
    received: list[str] = []

    def handle(signum: int, _frame: Any) -> None:
        received.append(signal.Signals(signum).name)
        if scheduler.stopped:
            raise KeyboardInterrupt
        scheduler.stop()

    previous = {}
    try:
        for signum in STOP_SIGNALS:
            previous[signum] = signal.signal(signum, handle)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def summary_line(record: ScheduledRun) -> str:
    """One line about a scheduled run, for the terminal."""
    if record.outcome is None:
        return f"Run {record.run_id or '(no id)'} failed: {record.error}"
    result = record.outcome.result
    kpis = result.run.kpis
    took = (record.finished_at - record.started_at).total_seconds()
    line = (
        f"{'Resumed run' if result.resumed else 'Run'} {record.run_id} completed in {took:.1f} s: "
        f"{len(result.proposed)} new master key(s) proposed, {kpis['missing_in_A_count']} out-of-authority, "
        f"{kpis['missing_from_system_count']} propagation gaps, {kpis['duplicate_keys_count']} duplicates, "
        f"{kpis['rows_rejected_count']} rejected rows."
    )
    if kpis["systems_unavailable"]:
        line += f" Unavailable: {', '.join(kpis['systems_unavailable'])}."
    return line

"""keysync schedule: the cron loop with a fake clock (no real waiting), the real event store and real CSV files."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner, Result
from croniter import croniter

import keysync.cli.schedule as cli_schedule
from keysync.application.bootstrap import build
from keysync.application.schedule import NotifyFailed, Scheduler, ShellNotifier, Sleeper
from keysync.cli.schedule import schedule_command
from keysync.infrastructure.config import load_config
from keysync.infrastructure.run_lock import file_lock

A = ["CUST-00001", "CUST-00002", "PROD-ABC-789"]
START = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


class FakeTime:
    """A clock that only moves when the scheduler sleeps: each sleep jumps straight to its end.

    ``before_fire[n]`` is called at the start of the n-th sleep (0-based), to change the world between runs.
    """

    def __init__(self, start: datetime = START) -> None:
        self.now = start
        self.sleeps: list[datetime] = []
        self.before_fire: dict[int, Callable[[], None]] = {}

    def clock(self) -> datetime:
        return self.now

    def sleep_until(self, until: datetime) -> None:
        hook = self.before_fire.get(len(self.sleeps))
        self.sleeps.append(until)
        if hook is not None:
            hook()
        self.now = max(self.now, until)

    # What cli.schedule builds in place of the real Sleeper.
    def __call__(self, until: datetime) -> None:
        self.sleep_until(until)

    def sleeper(self, _clock: object) -> FakeTime:
        return self

    def wake(self) -> None:
        pass

    def __enter__(self) -> FakeTime:
        return self

    def __exit__(self, *_exc: object) -> None:
        pass


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(cli_schedule, "utc_now", fake.clock)
    monkeypatch.setattr(cli_schedule, "Sleeper", fake.sleeper)
    return fake


def schedule(project, *args: str, expect: int | None = 0) -> Result:
    result = CliRunner().invoke(schedule_command, [*args, "-c", str(project.config)], catch_exceptions=False)
    if expect is not None:
        assert result.exit_code == expect, (result.exit_code, result.stdout, result.stderr)
    return result


def stored_runs(project) -> list[dict]:
    """The runs in the event store, oldest first."""
    keysync = build(load_config(project.config))
    try:
        return list(reversed(keysync.runs()))
    finally:
        keysync.store.close()


def log_entries(project) -> list[dict]:
    lines = (project.root / "logs" / "keysync.log").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def write_all(project) -> None:
    for system in "ABCDE":
        project.write_system(system, [*A, "NEW-1"] if system == "B" else A)


# ------------------------------------------------------------------------------------------------------------
# --next


def test_next_prints_the_coming_fire_times_in_utc_and_runs_nothing(project, fake_time):
    project.write_config('schedule: "*/15 2 * * *"\n')
    text = schedule(project, "--next", "5").stdout.splitlines()
    assert text == [
        "2026-03-02T02:00:00+00:00",
        "2026-03-02T02:15:00+00:00",
        "2026-03-02T02:30:00+00:00",
        "2026-03-02T02:45:00+00:00",
        "2026-03-03T02:00:00+00:00",
    ]
    times = [datetime.fromisoformat(t) for t in text]
    assert all(t.utcoffset() == timedelta(0) and croniter.match("*/15 2 * * *", t) for t in times)
    assert times == sorted(set(times)) and times[0] > START
    assert json.loads(schedule(project, "--next", "5", "--json").stdout) == text
    assert not (project.root / "data").exists()  # no store opened, no run
    assert fake_time.sleeps == []


def test_next_with_the_real_clock_gives_increasing_times_that_match_the_cron(project):
    project.write_config('schedule: "0 2 * * *"\n')
    before = datetime.now(UTC)
    times = [datetime.fromisoformat(t) for t in json.loads(schedule(project, "--next", "5", "--json").stdout)]
    assert len(times) == 5 and times == sorted(set(times)) and times[0] > before
    assert all(t.utcoffset() == timedelta(0) and (t.hour, t.minute) == (2, 0) for t in times)


def test_a_cron_expression_that_never_fires_is_a_clear_error(project):
    project.write_config('schedule: "0 0 30 2 *"\n')  # valid fields, but February has no 30th
    result = schedule(project, "--next", "1", expect=1)
    assert "cannot be scheduled" in result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------------------------------------------------------------------
# Running on the schedule


def test_max_runs_runs_reconciliations_at_the_fire_times(project, fake_time):
    write_all(project)
    result = schedule(project, "--max-runs", "2", "--json")
    assert fake_time.sleeps == [datetime(2026, 3, 2, 2, tzinfo=UTC), datetime(2026, 3, 3, 2, tzinfo=UTC)]
    summaries = [json.loads(line) for line in result.stdout.splitlines()]
    assert [s["status"] for s in summaries] == ["completed", "completed"]
    assert [s["scheduled_for"] for s in summaries] == ["2026-03-02T02:00:00+00:00", "2026-03-03T02:00:00+00:00"]
    assert [s["proposed"] for s in summaries] == [1, 0]
    runs = stored_runs(project)
    assert [(r["run_id"], r["status"]) for r in runs] == [(s["run_id"], "completed") for s in summaries]
    assert "Next run at 2026-03-02T02:00:00+00:00" in result.stderr
    assert f"Run {summaries[0]['run_id']} completed" in result.stderr
    assert "1 new master key(s) proposed" in result.stderr


def test_once_runs_at_the_next_fire_time_and_exits(project, fake_time):
    write_all(project)
    schedule(project, "--once")
    assert fake_time.sleeps == [datetime(2026, 3, 2, 2, tzinfo=UTC)]
    assert [r["status"] for r in stored_runs(project)] == ["completed"]


def test_a_failed_run_is_logged_and_the_next_run_goes_ahead(project, fake_time):
    write_all(project)
    a_csv = project.input / "A.csv"
    saved = a_csv.read_bytes()
    a_csv.unlink()
    fake_time.before_fire[1] = lambda: a_csv.write_bytes(saved)  # A is back before the second fire time
    result = schedule(project, "--max-runs", "2", expect=1)  # a bounded session reports its failures
    runs = stored_runs(project)
    assert [r["status"] for r in runs] == ["failed", "completed"]
    assert f"Run {runs[0]['run_id']} failed: System A" in result.stderr
    assert f"Run {runs[1]['run_id']} completed" in result.stderr
    assert "1 of 2 scheduled run(s) failed." in result.stderr
    failures = [e for e in log_entries(project) if e["message"].startswith("scheduled run failed")]
    assert [(e["level"], e["run_id"]) for e in failures] == [("error", runs[0]["run_id"])]


def test_a_run_refused_by_the_run_lock_is_logged_and_the_next_run_goes_ahead(project, fake_time):
    write_all(project)
    held = file_lock(project.root / "data" / "keysync.sqlite.lock")  # another keysync run holds the store
    fake_time.before_fire[0] = held.__enter__
    fake_time.before_fire[1] = lambda: held.__exit__(None, None, None)
    result = schedule(project, "--max-runs", "2", expect=1)
    assert [r["status"] for r in stored_runs(project)] == ["completed"]
    assert "failed: another run is in progress" in result.stderr


def test_a_run_whose_reports_cannot_be_written_is_named_and_said_to_be_stored(project, fake_time, monkeypatch):
    write_all(project)
    monkeypatch.setenv("KEYSYNC_DISK_FULL_IN_REPORT", "*")

    result = schedule(project, "--once", expect=1)

    [run] = stored_runs(project)
    assert run["status"] == "completed"
    assert f"Run {run['run_id']} failed: run {run['run_id']} is stored; cannot write report" in result.stderr


def test_the_notifier_gets_each_runs_summary_as_json_on_stdin(project, fake_time, tmp_path):
    write_all(project)
    a_csv = project.input / "A.csv"
    saved = a_csv.read_bytes()
    a_csv.unlink()
    fake_time.before_fire[1] = lambda: a_csv.write_bytes(saved)
    out = tmp_path / "notified.jsonl"
    schedule(project, "--max-runs", "2", "--notify-command", f"cat >> {shlex.quote(str(out))}", expect=1)
    failed, completed = (json.loads(line) for line in out.read_text(encoding="utf-8").splitlines())
    runs = stored_runs(project)
    assert failed["run_id"] == runs[0]["run_id"] and failed["status"] == "failed"
    assert failed["error"].startswith("System A is the authority and could not be read")
    assert completed["run_id"] == runs[1]["run_id"] and completed["status"] == "completed"
    # cli.run.outcome_json's shape
    assert {"run_id", "dry_run", "kpis", "proposed", "timings_s", "reports"} <= set(completed)
    assert completed["dry_run"] is False and completed["kpis"]["systems"]["B"]["missing_in_A"] == 1


def test_a_failing_notifier_fails_neither_the_run_nor_the_scheduler(project, fake_time):
    write_all(project)
    result = schedule(project, "--max-runs", "2", "--notify-command", "echo 'no route to host' >&2; exit 7")
    assert [r["status"] for r in stored_runs(project)] == ["completed", "completed"]
    assert result.stderr.count("Notifier failed (ignored):") == 2
    assert "exited with status 7: no route to host" in result.stderr
    warnings = [e for e in log_entries(project) if e["message"].startswith("notifier failed")]
    assert len(warnings) == 2 and {e["level"] for e in warnings} == {"warning"}


def test_a_hanging_notifier_is_killed_with_its_children():
    begun = time.monotonic()
    # The shell waits for its child, which holds the output pipe: both must be killed for this to return.
    with pytest.raises(NotifyFailed, match=r"did not finish within 0\.3 s"):
        ShellNotifier("sleep 30; echo never", timeout_s=0.3)({"run_id": "x"})
    assert time.monotonic() - begun < 10


# ------------------------------------------------------------------------------------------------------------
# The Scheduler itself


def fake_scheduler(fake: FakeTime, job: Callable[[], Any]) -> Scheduler:
    # sleep_until is looked up on each call, so a test may replace fake.sleep_until.
    return Scheduler("0 2 * * *", job, clock=fake.clock, sleep_until=lambda until: fake.sleep_until(until))


def outcome(run_id: str = "r1") -> SimpleNamespace:
    return SimpleNamespace(run_id=run_id)


def test_stop_during_a_wait_ends_the_loop_without_running():
    fake = FakeTime()
    jobs: list[int] = []
    scheduler = fake_scheduler(fake, lambda: jobs.append(1) or outcome())
    fake.sleep_until = lambda _until: scheduler.stop()  # a signal arrives while waiting; the clock stands still
    assert scheduler.serve() == [] and jobs == [] and scheduler.stopped


def test_stop_during_a_run_ends_the_loop_after_that_run():
    fake = FakeTime()
    scheduler = fake_scheduler(fake, lambda: scheduler.stop() or 1 / 0)  # stops, then fails
    [record] = scheduler.serve()
    assert not record.ok and record.error == "ZeroDivisionError: division by zero"
    assert fake.sleeps == [datetime(2026, 3, 2, 2, tzinfo=UTC)]


def test_an_early_wake_without_a_stop_waits_again_for_the_same_fire_time():
    fake = FakeTime()
    real_sleep = fake.sleep_until
    wakes = iter([fake.clock() + timedelta(hours=1)])  # the first sleep ends an hour in, well before 02:00

    def sleep_until(until: datetime) -> None:
        early = next(wakes, None)
        if early is None:
            real_sleep(until)
        else:
            fake.sleeps.append(until)
            fake.now = early

    fake.sleep_until = sleep_until  # type: ignore[method-assign]
    runs: list[datetime] = []
    scheduler = fake_scheduler(fake, lambda: runs.append(fake.now) or outcome())
    scheduler.serve(max_runs=1)
    assert runs == [datetime(2026, 3, 2, 2, tzinfo=UTC)]
    assert fake.sleeps == [datetime(2026, 3, 2, 2, tzinfo=UTC)] * 2


def test_the_real_sleeper_returns_at_once_when_woken_or_when_the_time_has_passed():
    with Sleeper() as sleeper:
        begun = time.monotonic()
        sleeper(datetime.now(UTC) - timedelta(seconds=1))
        sleeper.wake()  # as stop() does, before or during the wait
        sleeper(datetime.now(UTC) + timedelta(days=1))
        assert time.monotonic() - begun < 5


# ------------------------------------------------------------------------------------------------------------
# A real process and a real signal


def test_sigterm_while_waiting_stops_the_scheduler_cleanly(project):
    project.write_config('schedule: "* * * * *"\n')
    code = "from keysync.cli.schedule import schedule_command; schedule_command()"
    process = subprocess.Popen(
        [sys.executable, "-c", code, "-c", str(project.config)],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        seen = []
        assert process.stderr is not None
        while line := process.stderr.readline():  # "" at end of file: the process ended
            seen.append(line)
            if "waiting" in line:
                break
        assert seen and "waiting" in seen[-1], seen
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, rest
    assert "Stopped by SIGTERM" in rest

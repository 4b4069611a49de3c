"""Crash loop: start a run or a sandbox edit as a real process, kill it (SIGKILL) at a random moment, let the next
command recover, again and again; then check that nothing was lost, nothing stored twice, and that the store's
reports say what an uninterrupted run on the same final input says.

The moment of each kill is drawn (seeded) between most of the interpreter's start-up and a little past the time
the command last took uninterrupted, so that most kills land inside KeySync's own work: while
reading, between two saves, in a save, while rendering reports, between the sandbox's file renames. One command in
four is killed instead right after a random save (``KEYSYNC_CRASH_AFTER_EVENTS``), the boundaries the timer is
least likely to hit. A command that finishes before its kill must have succeeded or failed clearly (exit 1, one
``Error:`` line: a sandbox key that a killed edit never added, say).

What "equal" means at the end, honestly:
- the store's own reports equal a rebuild from its log, byte for byte (``keysync doctor``, and ``keysync rebuild``
  compared file by file);
- the run-level reports (summary, both diffs, duplicates, rejected rows, the latest run's trend rows) equal those
  of a fresh store that ran once on the same final A-E files, ignoring only the columns that name the run or the
  moment (run_id, generated_at, first_detected_*, finished_at), the rejected rows' file path (another folder), and
  diff_missing_in_A's registry_status (a key deprecated in an earlier run stays Deprecated; a fresh store has
  only Proposed keys);
- the registry, the audit log and the changes since the previous run depend on the whole history, which the fresh
  store does not have: for those, the rebuild comparison above, and: every key the final run found out of
  authority is in the registry, and every registry key still alive (not Deprecated) is one of them (all five
  systems are read in every run, so a key gone from every system is deprecated).
"""

from __future__ import annotations

import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from keysync.projections.reports import (
    DUPLICATES,
    MISSING_FROM_SYSTEM,
    MISSING_IN_A,
    REJECTED,
    REPORTS,
    SUMMARY,
    TREND,
)
from tests.conftest import Project
from tests.e2e.reliability_support import (
    check_reports,
    check_sources,
    clear_failure,
    file_keys,
    keysync,
    kind,
    logged_events,
    read_report,
    sandbox_rows,
    start,
    temporaries,
)

# Columns that name the run or the moment, or depend on the store's history (see the module's docstring).
IGNORED = {
    SUMMARY: {"run_id", "generated_at"},
    MISSING_IN_A: {"first_detected_run_id", "first_detected_at", "registry_status"},
    MISSING_FROM_SYSTEM: {"first_detected_run_id", "first_detected_at"},
    DUPLICATES: {"first_detected_run_id", "first_detected_at"},
    REJECTED: {"first_detected_run_id", "first_detected_at", "file"},
    TREND: {"run_id", "finished_at"},
}
RECORDED = {"SourceRead", "SourceUnavailable", "SourceUnchanged", "SourceChanged"}  # a system's one record per run
TERMINAL = {"Completed", "Failed"}


def seconds_of(config: Path, *args: str) -> float:
    began = time.monotonic()
    done = keysync(config, *args)
    assert done.returncode == 0, done.stderr
    return time.monotonic() - began


class Loop:
    """Draws each iteration's command from what the files hold now, runs it, and kills it."""

    def __init__(self, project: Project, seed: int):
        self.project = project
        self.rng = random.Random(seed)
        self.added = 0
        self.outcomes: Counter[str] = Counter()
        self.commands: Counter[str] = Counter()

    def command(self) -> list[str]:
        choice = self.rng.random()
        present = file_keys(self.project.input)
        if choice < 0.4:
            return ["run"]
        if choice < 0.6 or not present["B"]:
            self.added += 1
            keys = [f"K{self.added}-{n}" for n in range(20)]
            return ["sandbox", "add-key", *keys, "--systems", self.rng.choice(["B", "B,C", "D", "C,D,E"])]
        if choice < 0.75:
            key = self.rng.choice(present["B"])
            return ["sandbox", "remove-key", key, "--systems", "B", "--yes"]
        if choice < 0.9:
            key = self.rng.choice(present["B"])
            return ["sandbox", "modify-key", key, "--systems", "B", "--to", f"{key}-M"]
        return ["sandbox", "undo"]

    def iterate(self, timings: dict[str, float], start_up: float) -> None:
        args = self.command()
        what = "run" if args[0] == "run" else args[1]
        self.commands[what] += 1
        env = {}
        if self.rng.random() < 0.25:
            env["KEYSYNC_CRASH_AFTER_EVENTS"] = str(self.rng.randint(1, 60 if what == "run" else 1))
            delay = None
        else:
            # A kill time, not a synchronisation: the process is killed whatever it is doing then.
            delay = self.rng.uniform(0.8 * start_up, 1.05 * timings[what])
        before = stored_events(self.project)
        began = time.monotonic()
        process = start(self.project.config, *args, env=env)
        try:
            out, err = process.communicate(timeout=delay if delay is not None else 300)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            out, err = process.communicate(timeout=60)
        stored = stored_events(self.project) - before
        if process.returncode == -signal.SIGKILL:
            self.outcomes["killed after storing events" if stored else "killed before storing anything"] += 1
        elif process.returncode == 0:
            self.outcomes["finished before its kill"] += 1
            # Later commands work on more keys and a longer history: the kill window follows how long they take.
            timings[what] = time.monotonic() - began
        else:
            clear_failure(subprocess.CompletedProcess(args, process.returncode, out, err))
            self.outcomes["refused clearly (finished before its kill)"] += 1


def stored_events(project: Project) -> int:
    """How many events the (SQLite) log holds: counted, not decoded, as this is asked twice per iteration."""
    with closing(sqlite3.connect(project.root / "data" / "keysync.sqlite")) as db:
        return db.execute("SELECT COUNT(*) FROM stored_events").fetchone()[0]


def check_log(config: Path) -> dict[str, int]:
    """Nothing twice and nothing half: per run, each system recorded once (once more after each recording a resumed
    run set aside), each file line of its rows stored once, at most one ending; per sandbox operation, one event."""
    recorded: Counter[tuple[Any, str]] = Counter()
    endings: Counter[Any] = Counter()
    rows_read: dict[tuple[Any, str], int] = {}
    lines: defaultdict[tuple[Any, str], list[int]] = defaultdict(list)
    errors: Counter[tuple[Any, str]] = Counter()
    operations: Counter[str] = Counter()
    runs = set()
    for event in logged_events(config):
        name, run = kind(event), event.originator_id
        if name == "Started":
            runs.add(run)
        elif name == "SourceSuperseded":  # a resumed run reads a changed export again: its older record set aside
            recorded[run, event.system] -= 1
            lines.pop((run, event.system), None)
            errors.pop((run, event.system), None)
        elif name in RECORDED:
            recorded[run, event.system] += 1
            if name == "SourceRead":
                rows_read[run, event.system] = event.rows_read
        elif name == "RowsObserved":
            lines[run, event.system] += event.rows.column("line").to_pylist()
        elif name == "RowsRejected":
            errors[run, event.system] += sum(1 for row in event.rows if row[1] == "error")
        elif name in TERMINAL:
            endings[run] += 1
        if hasattr(event, "operation_id"):
            operations[event.operation_id] += 1
    assert all(n == 1 for n in recorded.values()), [k for k, n in recorded.items() if n > 1]
    assert all(n == 1 for n in endings.values()), [k for k, n in endings.items() if n > 1]
    assert set(endings) == runs, "a run was left neither completed nor failed"
    for key, total in rows_read.items():
        assert len(set(lines[key])) == len(lines[key]), f"run {key[0]}: rows of {key[1]} stored twice"
        assert len(lines[key]) + errors[key] == total, f"run {key[0]}: rows of {key[1]} lost"
    assert all(n == 1 for n in operations.values()), [k for k, n in operations.items() if n > 1]
    return {"runs": len(runs), "sandbox operations": len(operations)}


def run_level(output: Path) -> dict[str, list[dict[str, str]]]:
    reports = {}
    for name, ignored in IGNORED.items():
        rows = read_report(output / name)
        if name == TREND:
            latest = rows[-1]["run_id"] if rows else ""
            rows = [r for r in rows if r["run_id"] == latest]
        reports[name] = [{k: v for k, v in row.items() if k not in ignored} for row in rows]
    return reports


def crash_loop(project: Project, tmp_path_factory: pytest.TempPathFactory, *, iterations: int, seed: int) -> None:
    project.write_config("processing: {batch_size: 40}\n")  # a few dozen saves per run: many boundaries
    config = project.config
    timings = {"sandbox init": seconds_of(config, "sandbox", "init", "--keys", "400")}
    start_up = _start_up()
    timings["run"] = seconds_of(config, "run")
    timings["add-key"] = seconds_of(config, "sandbox", "add-key", "FIRST-1", "--systems", "B")
    timings["remove-key"] = timings["modify-key"] = timings["undo"] = timings["add-key"]

    loop = Loop(project, seed)
    began = time.monotonic()
    for _ in range(iterations):
        loop.iterate(timings, start_up)
    elapsed = time.monotonic() - began
    killed = sum(n for outcome, n in loop.outcomes.items() if outcome.startswith("killed"))
    assert killed >= iterations // 2, loop.outcomes  # the loop did kill, mostly

    # Recovery: one sandbox edit (every edit writes all five files from the log), one run that finishes whatever a
    # kill interrupted, then the uninterrupted run on the final input that the comparison is about.
    for args in (["sandbox", "add-key", "LAST-1", "--systems", "C"], ["run"], ["run"]):
        done = keysync(config, *args)
        assert done.returncode == 0, (args, done.stderr)
    assert sandbox_rows(config) == file_keys(project.input)
    counts = check_log(config)
    project.invoke("doctor")  # in this process from here on: what is checked is the store, not the command
    check_reports(project.output)
    check_sources(project.input)

    # The reports equal a rebuild from the log, byte for byte.
    live = {name: (project.output / name).read_bytes() for name in REPORTS}
    project.invoke("rebuild")
    assert {name: (project.output / name).read_bytes() for name in REPORTS} == live

    # The run-level reports equal a fresh store's single run on the same final files.
    fresh = Project(tmp_path_factory.mktemp("fresh"))
    fresh.write_config("processing: {batch_size: 40}\n")
    for system in "ABCDE":
        shutil.copyfile(project.input / f"{system}.csv", fresh.input / f"{system}.csv")
    fresh.invoke("run")
    assert run_level(project.output) == run_level(fresh.output)

    # The registry: every key found out of authority is in it, and every live key in it was found.
    found = {row["proposed_master_key"] for row in read_report(project.output / MISSING_IN_A)}
    registry = {row["master_key"]: row["status"] for row in read_report(project.output / "master_key_registry.csv")}
    assert found <= set(registry)
    assert {key for key, status in registry.items() if status != "Deprecated"} <= found

    # A kill leaves the temporary file it was writing; the next write of that file on this host removes it.
    assert not list(temporaries(project.input, project.output))
    print(
        f"\ncrash loop: {iterations} commands in {elapsed:.0f} s ({dict(loop.commands)}); {killed} killed; "
        f"outcomes {dict(loop.outcomes)}; in the log {counts}; lost 0, stored twice 0, temporary files left 0"
    )


def _start_up() -> float:
    """How long the interpreter takes to load KeySync (``keysync --version``)."""
    began = time.monotonic()
    command = [sys.executable, "-c", "from keysync.cli.main import main; main()", "--version"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return time.monotonic() - began


def test_25_commands_killed_at_random_moments_lose_nothing(project, tmp_path_factory):
    crash_loop(project, tmp_path_factory, iterations=25, seed=11)


@pytest.mark.slow
def test_200_commands_killed_at_random_moments_lose_nothing(project, tmp_path_factory):
    crash_loop(project, tmp_path_factory, iterations=200, seed=12)

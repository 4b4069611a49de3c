"""Concurrency stress: eight processes run keysync run, sandbox edits and registry approvals on one store at once.

Each worker process (tests/e2e/stress_worker.py) loops over real ``keysync`` processes until its deadline and logs
every command it started with its outcome: succeeded, or a clear refusal (a conflict, the run lock held, the
sandbox lock waited for too long, a registry transition another process made first). Afterwards the store is
audited from the outside:

- nothing unclear: every command exited 0, or 1 with one ``Error:`` line naming a known refusal; no traceback, no
  command stuck (a worker kills one that takes 45 s);
- ``keysync doctor`` passes: every aggregate replays, the projections are at the log's end, the read models and
  the report files equal a fresh rebuild;
- every acknowledged operation is in the log exactly once, and nothing is in the log that no command acknowledged:
  run ids (``Started``), sandbox operation ids (with the key each one added, renamed or removed), approved keys
  (``MasterKeysActivated`` with reason "approved");
- the sandbox's files are what its log says;
- no report or source file is ever half-written: a thread of the test reads every one of them, over and over,
  while the workers run, and each must parse as CSV under its header.

The short version runs in the normal suite; the long one (30 s) is marked slow (run it with ``-m slow``). It prints
what it did: operations, outcomes, operations per second (each one a process of its own: on two cores, most of a
command's time is starting Python and loading KeySync).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from keysync.domain.registry import batch_keys
from tests.e2e.reliability_support import (
    check_reports,
    check_sources,
    file_keys,
    kind,
    logged_events,
    sandbox_rows,
)

WORKER = Path(__file__).with_name("stress_worker.py")
SANDBOX_OPS = ("add-key", "remove-key", "modify-key")
PRESEEDED = 3  # keys of each worker in System B (and so in the registry) before the workers start


class FileWatcher(threading.Thread):
    """Reads every report and source file again and again until stopped; keeps the first problem it finds."""

    def __init__(self, output: Path, sources: Path):
        super().__init__(daemon=True)
        self.output, self.sources = output, sources
        self.stopped = threading.Event()
        self.problem: BaseException | None = None
        self.passes = 0

    def run(self) -> None:
        while not self.stopped.is_set() and self.problem is None:
            try:
                check_reports(self.output)
                check_sources(self.sources)
                self.passes += 1
            except (AssertionError, ValueError, OSError) as error:
                self.problem = error
            self.stopped.wait(0.05)  # a polling interval (the workers need the CPU), not a synchronisation


def stress(project: Any, *, workers: int, seconds: float, seed: int) -> dict[str, Any]:
    """Start the workers, watch the files while they run, and return their logged operations and the figures."""
    logs = [project.root / f"worker-{n}.jsonl" for n in range(workers)]
    watcher = FileWatcher(project.output, project.input)
    watcher.start()
    began = time.monotonic()
    processes = [
        subprocess.Popen([sys.executable, str(WORKER), str(project.config), str(n), str(seconds), str(seed),
                          str(log), str(PRESEEDED)], stderr=subprocess.PIPE, text=True, env=os.environ.copy())
        for n, log in enumerate(logs)
    ]  # fmt: skip
    try:
        for process in processes:
            _, err = process.communicate(timeout=seconds + 600)
            assert process.returncode == 0, err
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        watcher.stopped.set()
        watcher.join()
    elapsed = time.monotonic() - began
    assert watcher.problem is None, f"a file was seen half-written: {watcher.problem!r}"
    assert watcher.passes > 0
    operations = [json.loads(line) for log in logs for line in log.read_text(encoding="utf-8").splitlines()]
    outcomes = Counter(op["outcome"] for op in operations)
    return {
        "operations": operations,
        "elapsed": elapsed,
        "outcomes": outcomes,
        "per_second": len(operations) / elapsed,
        "succeeded_per_second": outcomes["succeeded"] / elapsed,
        "watcher_passes": watcher.passes,
    }


def audit_store(project: Any, operations: list[dict[str, Any]]) -> dict[str, Any]:
    """Check the store after a stress run; return the counts of what is in its log."""
    unclear = [op for op in operations if op["outcome"] in ("unclear", "hung")]
    assert not unclear, [(op["op"], op["exit"], op["stderr"]) for op in unclear[:3]]
    succeeded = [op for op in operations if op["outcome"] == "succeeded"]

    # From here on in this process: what is checked is the store, not these commands.
    if any("Warning" in op.get("stderr", "") for op in succeeded):
        # A sandbox edit was saved but could not bring the reports up to date, and said so: as it said, `keysync
        # reports` does it (a later command may not have).
        project.invoke("reports")
    doctor = project.invoke("doctor", "--json", expect=None)
    assert doctor.exit_code == 0, doctor.stdout

    events = logged_events(project.config)
    # Runs: every acknowledged run id started once and completed; no run in the log that nobody acknowledged.
    started = Counter(e.run_id for e in events if kind(e) == "Started")
    acknowledged_runs = {op["run_id"] for op in succeeded if op["op"] == "run"}
    assert all(started[run_id] == 1 for run_id in acknowledged_runs), started
    unacknowledged = set(started) - acknowledged_runs
    history = {r["run_id"]: r["status"] for r in json.loads(project.invoke("history", "--json").stdout)}
    assert all(history[run_id] == "completed" for run_id in acknowledged_runs)
    # A run whose registry update lost every retry to approvals stays resumable; its command said so clearly.
    for run_id in unacknowledged:
        assert history[run_id] == "running", (run_id, history[run_id])
        assert any(op["op"] == "run" and op["outcome"] == "conflict" for op in operations)

    # Sandbox operations: each acknowledged one is one event, with the key its command named; no other events.
    changes = {e.operation_id: e for e in events if hasattr(e, "operation_id") and kind(e) != "Initialized"}
    per_id = Counter(e.operation_id for e in events if hasattr(e, "operation_id"))
    assert all(n == 1 for n in per_id.values()), per_id.most_common(3)
    acknowledged_edits = {op["operation_id"]: op for op in succeeded if op["op"] in SANDBOX_OPS}
    assert set(changes) == set(acknowledged_edits)
    for operation_id, op in acknowledged_edits.items():
        event, key = changes[operation_id], op["args"][2]
        if op["op"] == "add-key":
            assert [row[2] for row in event.added] == op.get("keys", [key]) and not event.removed
        elif op["op"] == "remove-key":
            assert [row[2] for row in event.removed] == [key] and not event.added
        else:
            assert [row[2] for row in event.removed] == [key]
            assert [row[2] for row in event.added] == [op["args"][op["args"].index("--to") + 1]]

    # Approvals: each approved key is activated exactly once, by an approval that some command acknowledged.
    approvals = [e for e in events if kind(e) == "MasterKeysActivated" and e.reason == "approved"]
    activated = Counter(key for e in approvals for key in batch_keys(e.master_keys))
    acknowledged_keys = [key for op in succeeded if op["op"] == "approve" for key in op["keys"]]
    assert Counter(acknowledged_keys) == activated

    assert sandbox_rows(project.config) == file_keys(project.input)  # the files are what the log says
    check_reports(project.output)
    check_sources(project.input)
    return {"events": len(events), "runs": len(started), "edits": len(changes), "approved": len(activated)}


def run_stress(project: Any, *, workers: int, seconds: float, seed: int) -> None:
    # Small exports and small observation batches: each run stores a few dozen events, so saves interleave.
    project.write_config("processing: {batch_size: 50, lock_timeout_s: 60}\n")
    project.invoke("sandbox", "init", "--keys", "300")
    preseeded = [f"W{n}-{i:04d}" for n in range(workers) for i in range(PRESEEDED)]
    added = project.invoke("sandbox", "add-key", *preseeded, "--systems", "B", "--json")
    first = project.invoke("run", "--json")  # proposes them all, so that approvals can start at once
    figures = stress(project, workers=workers, seconds=seconds, seed=seed)
    setup = [
        {"op": "add-key", "outcome": "succeeded", "args": ["sandbox", "add-key", *preseeded], "keys": preseeded,
         "operation_id": json.loads(added.stdout)["operations"][-1]["operation_id"]},
        {"op": "run", "outcome": "succeeded", "run_id": json.loads(first.stdout)["run_id"]},
    ]  # fmt: skip
    by_op = Counter((op["op"], op["outcome"]) for op in figures["operations"])
    warned = sum(1 for op in figures["operations"] if "Warning" in op["stderr"])
    print(
        f"\nstress: {workers} processes x {seconds:g} s on {project.store.split(',')[0].strip('{')}: "
        f"{len(figures['operations'])} operations in {figures['elapsed']:.1f} s = {figures['per_second']:.2f}/s "
        f"({figures['succeeded_per_second']:.2f}/s succeeded); outcomes {dict(figures['outcomes'])}; "
        f"per operation {dict(sorted(by_op.items()))}; files checked {figures['watcher_passes']} times; "
        f"edits saved with reports left behind {warned}"
    )
    stored = audit_store(project, [*setup, *figures["operations"]])
    print(f"stress: in the log {stored}; lost 0")
    # Something of each kind got through: the test did exercise what it claims to.
    done = {op["op"] for op in figures["operations"] if op["outcome"] == "succeeded"}
    assert {"run", "add-key"} <= done, by_op


def test_eight_processes_for_a_few_seconds_lose_nothing(any_project):
    run_stress(any_project, workers=8, seconds=float(os.environ.get("KEYSYNC_STRESS_SECONDS", "8")), seed=1)


@pytest.mark.slow
def test_eight_processes_for_thirty_seconds_lose_nothing(any_project):
    run_stress(any_project, workers=8, seconds=30, seed=2)

"""One process of the concurrency stress test (tests/e2e/test_stress.py): until its deadline, it runs keysync
commands one after the other on a shared store, and logs each one as a JSON line.

    python stress_worker.py CONFIG WORKER SECONDS SEED LOG PRESEEDED

Each command is a real ``keysync`` process (its exit code and stderr are what a user would see). The worker
only touches keys it added itself (named ``W<worker>-<n>``; the test adds the first PRESEEDED of them before the
workers start, so that every kind of command has something to work on at once), so it knows what each of its
commands must have done; the registry and the sandbox aggregates are still shared by every worker, so their saves
race.
Nothing from keysync is imported here: a worker is light, the commands it starts do the work.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from typing import Any

# Each clear refusal a command may give when another process got there first, as words of its message.
CLEAR = {
    "conflict": ("at the same moment",),  # optimistic concurrency: nothing saved
    "run in progress": ("another run is in progress",),  # the run lock is held (runs do not queue)
    "sandbox busy": ("another sandbox command has held the sandbox",),  # waited for the sandbox lock, gave up
    "store busy": ("the event store is busy",),  # SQLite's lock timed out: nothing saved
    "refused": ("cannot make", "unknown master key"),  # a registry transition another process made first
}


# Far longer than any command takes on a loaded machine (a few seconds): one that takes longer is stuck.
COMMAND_TIMEOUT_S = 45
HUNG = -1000  # the exit code logged for a command killed at COMMAND_TIMEOUT_S


def keysync(config: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from keysync.cli.main import main; main()", *args, "-c", config]
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired as expired:  # subprocess.run has killed it
        stderr = expired.stderr.decode() if isinstance(expired.stderr, bytes) else expired.stderr or ""
        return subprocess.CompletedProcess(command, HUNG, "", stderr)


def outcome(done: subprocess.CompletedProcess[str]) -> str:
    """succeeded, one of the CLEAR refusals, 'hung', or 'unclear' (a traceback, another exit code, another
    message)."""
    if done.returncode == HUNG:
        return "hung"
    if "Traceback" in done.stderr:
        return "unclear"
    if done.returncode == 0:
        return "succeeded"
    last = done.stderr.strip().splitlines()[-1:] or [""]
    if done.returncode == 1 and last[0].startswith("Error: "):
        for kind, words in CLEAR.items():
            if any(w in last[0] for w in words):
                return kind
    return "unclear"


class Worker:
    def __init__(self, config: str, index: int, seed: int, log: Any, preseeded: int):
        self.config = config
        self.index = index
        self.rng = random.Random(seed * 1000 + index)
        self.log = log
        self.added = preseeded
        # Keys this worker added to System B and has not removed.
        self.mine: list[str] = [key_name(index, n) for n in range(preseeded)]
        self.seq = 0

    def step(self) -> None:
        # The first command of worker n is of kind n (mod 5), so that even a short stress starts every kind at
        # once; after that the kind is drawn at random.
        choice = (self.index % 5 + 0.5) / 5 if self.seq == 0 else self.rng.random()
        if choice < 0.2:
            self.run()
        elif choice < 0.4 or len(self.mine) < 2:
            self.add_key()
        elif choice < 0.6:
            self.remove_key()
        elif choice < 0.8:
            self.modify_key()
        else:
            self.approve()

    def record(self, op: str, args: list[str], done: subprocess.CompletedProcess[str], started: float,
               **detail: Any) -> str:  # fmt: skip
        result = outcome(done)
        entry = {"worker": self.index, "seq": self.seq, "op": op, "args": args, "exit": done.returncode,
                 "outcome": result, "started": started, "seconds": round(time.monotonic() - started, 3),
                 "stderr": done.stderr[-2000:] if result != "succeeded" or "Warning" in done.stderr else "",
                 **detail}  # fmt: skip
        self.log.write(json.dumps(entry) + "\n")
        self.log.flush()
        self.seq += 1
        return result

    def command(self, op: str, *args: str) -> tuple[str, subprocess.CompletedProcess[str], dict[str, Any]]:
        started = time.monotonic()
        done = keysync(self.config, *args)
        detail: dict[str, Any] = {}
        if done.returncode == 0 and "--json" in args:
            parsed = json.loads(done.stdout)
            if op == "run":
                detail["run_id"] = parsed["run_id"]
            elif op != "list":
                detail["operation_id"] = parsed["operations"][-1]["operation_id"]
        return self.record(op, list(args), done, started, **detail), done, detail

    def run(self) -> None:
        self.command("run", "run", "--json")

    def add_key(self) -> None:
        key = key_name(self.index, self.added)
        self.added += 1
        result, _, _ = self.command("add-key", "sandbox", "add-key", key, "--systems", "B", "--json")
        if result == "succeeded":
            self.mine.append(key)

    def remove_key(self) -> None:
        key = self.mine[self.rng.randrange(len(self.mine))]
        result, _, _ = self.command("remove-key", "sandbox", "remove-key", key, "--systems", "B", "--yes", "--json")
        if result == "succeeded":
            self.mine.remove(key)

    def modify_key(self) -> None:
        key = self.mine[self.rng.randrange(len(self.mine))]
        new = f"{key}-M"
        result, _, _ = self.command("modify-key", "sandbox", "modify-key", key, "--systems", "B", "--to", new, "--json")
        if result == "succeeded":
            self.mine[self.mine.index(key)] = new

    def approve(self) -> None:
        result, done, _ = self.command("list", "registry", "list", "--status", "Proposed", "--json")
        if result != "succeeded":
            return
        proposed = [row["master_key"] for row in json.loads(done.stdout)]
        own = [k for k in proposed if k.startswith(f"W{self.index}-")]
        if not own:
            return
        keys = self.rng.sample(own, min(len(own), self.rng.randint(1, 2)))
        started = time.monotonic()
        done = keysync(self.config, "registry", "approve", *keys)
        self.record("approve", keys, done, started, keys=keys)


def key_name(worker: int, n: int) -> str:
    return f"W{worker}-{n:04d}"


def main() -> None:
    config, index, seconds, seed, log_path, preseeded = sys.argv[1:7]
    deadline = time.monotonic() + float(seconds)
    with open(log_path, "a", encoding="utf-8") as log:
        worker = Worker(config, int(index), int(seed), log, int(preseeded))
        while time.monotonic() < deadline:
            worker.step()


if __name__ == "__main__":
    main()

"""Resume benchmark: kill a run (SIGKILL) after it has recorded every system, then time what resuming costs.

    .venv/bin/python bench/bench_resume.py              # 100,000 keys per system
    .venv/bin/python bench/bench_resume.py --keys 5000

The overhead is finding the interrupted run and reloading what it had recorded (instead of reading the
sources again); the table also shows the whole resumed run and an uninterrupted run for comparison.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table


def keysync(config: Path, *args: str, env: dict[str, str] | None = None) -> int:
    command = [sys.executable, "-c", "from keysync.cli.main import main; main()", *args, "-c", str(config)]
    return subprocess.run(command, env={**os.environ, **(env or {})}, capture_output=True).returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000, help="keys per system")
    args = parser.parse_args()

    from keysync.application.bootstrap import build, run_settings
    from keysync.infrastructure.config import load_config
    from keysync.infrastructure.mockdata import generate

    with tempfile.TemporaryDirectory() as folder:
        config_path = Path(folder) / "keysync-config.yaml"
        config_path.write_text("output_dir: ./output\n", encoding="utf-8")
        config = load_config(config_path)
        generate(config.input_dir, keys=args.keys, seed=1)

        begun = time.perf_counter()
        assert keysync(config_path, "run") == 0
        uninterrupted = time.perf_counter() - begun
        with sqlite3.connect(config.store.path) as db:
            topics = [topic for (topic,) in db.execute("SELECT topic FROM stored_events ORDER BY rowid")]
        shutil.rmtree(config.store.path.parent)

        # Kill the next run right after its last checkpoint: everything read, nothing concluded. The final
        # save holds the run's Completed event and the registry's events.
        final = sum(1 for t in topics if t.endswith(".Completed") or ":Registry." in t)
        before_final = len(topics) - final
        assert keysync(config_path, "run", env={"KEYSYNC_CRASH_AFTER_EVENTS": str(before_final)}) == -9

        keysync_app = build(config)
        begun = time.perf_counter()
        observation = keysync_app._unfinished(resume=True)  # the step this benchmark measures
        overhead = time.perf_counter() - begun
        assert observation is not None and not observation.pending
        begun = time.perf_counter()
        keysync_app.run(run_settings(config))
        resumed = time.perf_counter() - begun

    table = Table(title=f"Resume after a crash, {args.keys:,} keys/system ({platform.machine()})")
    for column in ("uninterrupted run (process)", "resume overhead", "resumed run, in-process"):
        table.add_column(column, justify="right")
    table.add_row(f"{uninterrupted:.2f} s", f"{overhead:.2f} s", f"{resumed:.2f} s")
    Console(width=140).print(table)


if __name__ == "__main__":
    main()

"""Sandbox benchmark: seconds per operation at N keys per system (default 10,000), against the targets
(every operation < 2 s, save-state and load-state < 5 s).

    .venv/bin/python bench/bench_sandbox.py
    .venv/bin/python bench/bench_sandbox.py --keys 20000 --cli

"in-process" times the use case alone (load the aggregate, check, write and verify the five files, save); each
figure is the slowest of three repetitions. "after 60 ops" repeats add-key once the log holds 60 more
operations, to show that snapshots keep loading the sandbox flat. --cli adds the wall time of the real command
in a fresh process (Python and library start-up included).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

OPERATION_TARGET_S, STATE_TARGET_S = 2.0, 5.0


def slowest(action: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        begun = time.perf_counter()
        action()
        times.append(time.perf_counter() - begun)
    return max(times)


def cli_seconds(config: Path, *args: str) -> float:
    code = "import sys; from keysync.cli.sandbox import sandbox_group; sandbox_group.main(sys.argv[1:])"
    begun = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *args, "-c", str(config)], capture_output=True, env=os.environ)
    assert done.returncode == 0, done.stderr
    return time.perf_counter() - begun


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=10_000, help="keys per system")
    parser.add_argument("--cli", action="store_true", help="also time each command in a fresh process")
    args = parser.parse_args()

    from keysync.application.sandbox_bootstrap import build_sandbox
    from keysync.infrastructure.config import load_config

    with tempfile.TemporaryDirectory() as folder:
        config_path = Path(folder) / "keysync-config.yaml"
        config_path.write_text("output_dir: ./output\n", encoding="utf-8")
        sandbox = build_sandbox(load_config(config_path), actor="bench")
        n = args.keys
        sandbox.init(n, 1)
        first = sandbox.sandbox().rows["A"][0][0]
        counter = iter(range(10**9))

        def add() -> object:
            return sandbox.add_keys([f"NEW-{next(counter)}-{i}" for i in range(100)], ["B", "C"])

        def remove_and_restore() -> object:
            sandbox.remove_keys(["D"], [], ["CUST-*"])
            return sandbox.undo()

        def modify() -> object:
            sandbox.modify_key(first, ["E"], kind="lower")
            return sandbox.undo()

        rows: list[tuple[str, float, float]] = [
            (f"init ({n:,} keys x 5 systems)", slowest(lambda: sandbox.init(n, 1)), OPERATION_TARGET_S),
            ("add-key (100 keys to B,C)", slowest(add), OPERATION_TARGET_S),
        ]
        begun = time.perf_counter()
        sandbox.remove_keys(["D"], [], ["CUST-*"])
        removed = sandbox.sandbox().operations[-1]["keys"]
        rows.append(
            (f"remove-key --pattern 'CUST-*' ({removed:,} keys)", time.perf_counter() - begun, OPERATION_TARGET_S)
        )
        rows.append(("undo (of that removal)", slowest(sandbox.undo, 1), OPERATION_TARGET_S))
        rows.append(("remove + undo, repeated", slowest(remove_and_restore) / 2, OPERATION_TARGET_S))
        rows.append(("modify-key --variant lower", slowest(modify) / 2, OPERATION_TARGET_S))
        rows.append(("status", slowest(sandbox.status), OPERATION_TARGET_S))
        rows.append(("predict", slowest(sandbox.predict), OPERATION_TARGET_S))
        rows.append(("history", slowest(sandbox.history), OPERATION_TARGET_S))
        rows.append(("save-state", slowest(lambda: sandbox.save_state("bench", force=True)), STATE_TARGET_S))
        rows.append(("load-state", slowest(lambda: sandbox.load_state("bench")), STATE_TARGET_S))
        for _ in range(60):
            add()
        rows.append(("add-key, after 60 more operations", slowest(add), OPERATION_TARGET_S))

        cli: dict[str, float] = {}
        if args.cli:
            cli["init"] = cli_seconds(config_path, "init", "--keys", str(n))
            cli["add-key"] = cli_seconds(config_path, "add-key", "CLI-1", "--systems", "B")
            cli["status"] = cli_seconds(config_path, "status", "--json")
            cli["undo"] = cli_seconds(config_path, "undo")
            cli["save-state"] = cli_seconds(config_path, "save-state", "cli", "--force")
            cli["load-state"] = cli_seconds(config_path, "load-state", "cli")

    table = Table(
        title=f"Sandbox at {n:,} keys per system ({platform.python_implementation()} {platform.python_version()})"
    )
    for column in ("operation", "in-process s", "target s", ""):
        table.add_column(column, justify="left" if column == "operation" else "right")
    for name, seconds, target in rows:
        table.add_row(name, f"{seconds:.3f}", f"< {target:g}", "ok" if seconds < target else "SLOW")
    console = Console()
    console.print(table)
    if cli:
        console.print("Wall time of the command in a fresh process (start-up included):")
        console.print(", ".join(f"{name} {seconds:.2f} s" for name, seconds in cli.items()))
    if any(seconds >= target for _name, seconds, target in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()

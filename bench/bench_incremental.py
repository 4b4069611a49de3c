"""Incremental-run benchmark: a full run against an incremental one, on unchanged exports and with 1% of each
system's rows changed, in-process, on SQLite.

    .venv/bin/python bench/bench_incremental.py                  # 100,000 keys per system
    .venv/bin/python bench/bench_incremental.py --keys 10000 100000 --repeat 5

Each timing is the median of --repeat runs, and each run is a whole `keysync run` (read, store, reports) on a
store that already holds a completed run. "1% changed": every hundredth row of every system gets a new key.
The incremental runs follow each other in one application, as `keysync schedule` and `keysync replay-history`
run them; "new process" builds a new application for each run, as a `keysync run` command does, and compares an
incremental command with a full one. A changed export is read and recorded whole; the unchanged systems' rows are
read back from the event log.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table


def change_one_percent(folder: Path, round_: int) -> None:
    """Replace every hundredth data line of each export by a row with a new key (a different hundredth each
    round). Bytes, not text: the mock exports hold corrupt lines on purpose."""
    for path in sorted(folder.glob("*.csv")):
        lines = path.read_bytes().split(b"\n")
        for i in range(1 + round_ % 100, len(lines) - 1, 100):
            lines[i] = f"{path.stem},NEW-{round_}-{i},customer,,".encode()
        path.write_bytes(b"\n".join(lines))


def measure(keys: int, repeat: int) -> dict[str, float]:
    import attrs

    from keysync.application.bootstrap import build, run_settings
    from keysync.infrastructure.config import load_config
    from keysync.infrastructure.mockdata import generate

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "keysync-config.yaml").write_text("output_dir: ./output\nstore: {backend: sqlite}\n", encoding="utf-8")
        config = load_config(root / "keysync-config.yaml")
        generate(config.input_dir, keys=keys, seed=1)
        keysync = build(config, create_tables=True)
        full = run_settings(config)
        incremental = attrs.evolve(full, mode="incremental")
        keysync.run(full)

        def timed(settings, before=lambda: None) -> tuple[float, float]:
            before()
            size = keysync.store_status()["size_bytes"]
            begun = time.perf_counter()
            keysync.run(settings)
            return time.perf_counter() - begun, (keysync.store_status()["size_bytes"] - size) / 1e6

        full_runs = [timed(full) for _ in range(repeat)]
        unchanged = [timed(incremental) for _ in range(repeat)]
        changed = [timed(incremental, lambda r=r: change_one_percent(config.input_dir, r)) for r in range(repeat)]
        changed_full = [timed(full, lambda r=r: change_one_percent(config.input_dir, 50 + r)) for r in range(repeat)]
        cold: dict[str, list[float]] = {"incremental": [], "full": []}
        for settings in (incremental, full):  # each in a new application, as each `keysync run` command is
            for r in range(repeat):
                change_one_percent(config.input_dir, 70 + r + (settings is full) * repeat)
                keysync = build(config)
                begun = time.perf_counter()
                keysync.run(settings)
                cold[settings.mode].append(time.perf_counter() - begun)
    return {
        "full": statistics.median(t for t, _ in full_runs),
        "full_mb": statistics.median(m for _, m in full_runs),
        "unchanged": statistics.median(t for t, _ in unchanged),
        "unchanged_mb": statistics.median(m for _, m in unchanged),
        "changed": statistics.median(t for t, _ in changed),
        "changed_mb": statistics.median(m for _, m in changed),
        "changed_full": statistics.median(t for t, _ in changed_full),
        "changed_cold": statistics.median(cold["incremental"]),
        "changed_cold_full": statistics.median(cold["full"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, nargs="*", default=[100_000], help="keys per system")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the median is shown")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.repeat)))
        return
    table = Table(title=f"Incremental runs on SQLite, in-process ({platform.machine()}, {platform.python_version()})")
    for column in (
        "keys/system", "full s", "unchanged s", "speed-up", "1% changed s", "full on 1% s", "speed-up",
        "1% changed, new process s", "full, new process s", "speed-up", "log MB/run full", "unchanged", "1% changed",
    ):  # fmt: skip
        table.add_column(column, justify="right")
    for keys in args.keys:
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(keys), "--repeat", str(args.repeat)],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        r = json.loads(out.strip().splitlines()[-1])
        table.add_row(
            f"{keys:,}", f"{r['full']:.2f}", f"{r['unchanged']:.3f}", f"{r['full'] / r['unchanged']:.0f}x",
            f"{r['changed']:.2f}", f"{r['changed_full']:.2f}", f"{r['changed_full'] / r['changed']:.1f}x",
            f"{r['changed_cold']:.2f}", f"{r['changed_cold_full']:.2f}",
            f"{r['changed_cold_full'] / r['changed_cold']:.1f}x",
            f"{r['full_mb']:.2f}", f"{r['unchanged_mb']:.3f}", f"{r['changed_mb']:.2f}",
        )  # fmt: skip
    Console(width=160).print(table)


if __name__ == "__main__":
    main()

"""Full-run benchmark: generate N keys per system, reconcile in-process, print seconds per phase and peak memory.

    .venv/bin/python bench/bench_run.py                 # N = 5,000, 100,000 and 1,000,000
    .venv/bin/python bench/bench_run.py --keys 5000     # one size
    .venv/bin/python bench/bench_run.py --postgres postgresql://postgres@127.0.0.1:5432/postgres

Each size runs in its own process, so that the peak memory (max RSS) is that size's alone.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from rich.console import Console
from rich.table import Table

SIZES = (5_000, 100_000, 1_000_000)
PHASES = ("read", "store", "compare", "reports")


def measure(keys: int, repeat: int, dsn: str) -> dict[str, float]:
    from keysync.application.bootstrap import build, postgres_target, run_settings
    from keysync.infrastructure.config import load_config
    from keysync.infrastructure.mockdata import generate

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        schema = f"keysync_bench_{uuid.uuid4().hex[:8]}"
        store = f'{{backend: postgres, dsn: "{dsn}?schema={schema}"}}' if dsn else "{backend: sqlite}"
        (root / "keysync-config.yaml").write_text(f"output_dir: ./output\nstore: {store}\n", encoding="utf-8")
        config = load_config(root / "keysync-config.yaml")
        if dsn:
            postgres_target(config).ensure_schema()
        generate(config.input_dir, keys=keys, seed=1)
        best: dict[str, float] = {}
        for _ in range(repeat):
            begun = time.perf_counter()
            keysync = build(config, create_tables=True)
            outcome = keysync.run(run_settings(config))
            total = time.perf_counter() - begun
            if not best or total < best["total"]:
                best = {**outcome.result.timings, "total": total}
        best["store_mb"] = keysync.store_status()["size_bytes"] / 1e6
        if dsn:
            with psycopg.connect(dsn) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    best["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, nargs="*", default=list(SIZES), help="keys per system")
    parser.add_argument("--repeat", type=int, default=1, help="runs per size; the fastest is shown")
    parser.add_argument("--postgres", metavar="DSN", default="", help="run on this PostgreSQL database instead")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.repeat, args.postgres)))
        return
    backend = "PostgreSQL" if args.postgres else "SQLite"
    table = Table(title=f"Full run on {backend}, in-process ({platform.machine()}, {platform.python_version()})")
    for column in ("keys/system", *PHASES, "total s", "peak MB", "store MB"):
        table.add_column(column, justify="right")
    for keys in args.keys:
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(keys), "--repeat", str(args.repeat), "--postgres", args.postgres],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        r = json.loads(out.strip().splitlines()[-1])
        table.add_row(f"{keys:,}", *(f"{r.get(p, 0):.2f}" for p in PHASES), f"{r['total']:.2f}",
                      f"{r['peak_mb']:.0f}", f"{r['store_mb']:.1f}")  # fmt: skip
    Console(width=140).print(table)


if __name__ == "__main__":
    main()

"""Listing benchmark: `keysync registry list` over a registry of about 37,000 master keys, in every format.

    .venv/bin/python bench/bench_listing.py               # generate 100,000 keys per system (37,451 master keys)
    .venv/bin/python bench/bench_listing.py --keys 40000  # a smaller registry

Each format runs the real command in its own process (start-up included), output to /dev/null; the best of
--repeat runs is printed, as wall-clock and CPU seconds (a busy machine stretches the first, not the second).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FORMATS = {
    "table (first 50)": [],
    "table --limit 0": ["--limit", "0"],
    "table --limit 0 --wide": ["--limit", "0", "--wide"],
    "json": ["--json"],
    "csv": ["--csv"],
}


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    begun = time.perf_counter()
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - begun
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000, help="mock keys per system")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    keysync = str(Path(sys.executable).with_name("keysync"))
    env = {**os.environ, "COLUMNS": "80"}
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "keysync-config.yaml"
        config.write_text("output_dir: ./output\nstore: {backend: sqlite}\n", encoding="utf-8")
        subprocess.run([keysync, "run", "-c", str(config), "--generate-data", "--keys", str(args.keys),
                        "--auto-approve"], env=env, stdout=subprocess.DEVNULL, check=True)  # fmt: skip
        listed = subprocess.run([keysync, "registry", "list", "-c", str(config), "--json"], env=env,
                                capture_output=True, text=True, check=True)  # fmt: skip
        print(f"registry list over {len(json.loads(listed.stdout)):,} master keys (best of {args.repeat}):")
        for name, flags in FORMATS.items():
            best = min(timed([keysync, "registry", "list", "-c", str(config), *flags], env) for _ in range(args.repeat))
            print(f"  {name:24} {best[0]:6.2f} s wall  {best[1]:6.2f} s CPU")
        start = min(timed([keysync, "--version"], env) for _ in range(args.repeat))
        print(f"  {'(keysync --version)':24} {start[0]:6.2f} s wall  {start[1]:6.2f} s CPU")


if __name__ == "__main__":
    main()

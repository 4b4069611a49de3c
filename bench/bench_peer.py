"""KeySync against a peer script: the same messy exports, the same run, whole processes, alternating.

    .venv/bin/pip install -e ".[bench]"                      # polars and duckdb
    .venv/bin/python bench/bench_peer.py                     # 1,000,000 keys per system, 3 repeats
    .venv/bin/python bench/bench_peer.py --keys 100000 1000000 --repeat 3
    .venv/bin/python bench/bench_peer.py --keys 1000000 --incremental

For each size, bench/messy_data.py writes the exports once (kept under --data for the next invocation); then
each repeat runs `keysync run` (full, a fresh SQLite store, default settings, the .venv's keysync with a
temporary config naming the exports) and bench/peer_polars.py (the same config), one after the other, each a
fresh process. Wall time is the whole process (interpreter start-up included); peak memory is the process's
max RSS as os.wait4 reports it. The table shows medians, KeySync/peer ratios, and whether the peer's diff rows
(system, normalized key) of missing_in_A and missing_from_system, and its duplicates, equal KeySync's.

--incremental then copies the exports, runs KeySync in full once on each of two stores, and per repeat changes
1% of every export (messy_data.change) and times `keysync run -m incremental` on the one and a full `keysync
run` on the other (a store with the same history and the same exports: the yardstick), the incremental run again
with nothing changed, and `keysync --version`, beside the floor: a process that reads the changed exports and
hashes every line (polars).
The figures are set against the targets of the core redesign: a full run no slower than the peer, at most 1.5 GB
at 1M keys (6 GB at 10M, and 10M within 12x the 1M time); 1% changed within floor + 10% of a full run, nothing
changed within 2 x `keysync --version` + 0.1 s; at 10M, 1% changed >= 10x and nothing changed >= 50x faster than
a full run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import messy_data  # noqa: E402  (a sibling script, not a package)

SYSTEMS = messy_data.SYSTEMS
BIN = Path(sys.executable).parent  # the .venv's bin: keysync lives beside its python
GB = 1024.0  # MB


# --- whole processes ----------------------------------------------------------------------------------------


def timed(command: list[str], cwd: Path, label: str) -> tuple[float, float, float]:
    """Run ``command`` to its end: (wall seconds, peak RSS in MB, CPU seconds), of the process and the children
    it waited for. On a shared machine CPU seconds move less than wall time."""
    out, err = cwd / f"{label}.stdout", cwd / f"{label}.stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        begun = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - begun
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = err.read_text(errors="replace").strip().splitlines()[-5:]
        raise SystemExit(f"{' '.join(command)} exited {process.returncode}:\n" + "\n".join(tail))
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime  # Linux reports KiB


def write_config(folder: Path, data: Path, pad_numbers: int) -> Path:
    """A KeySync config in ``folder`` naming the exports in ``data``; everything else at its default."""
    sources = "\n".join(f"  {s}: {{type: csv, path: {json.dumps(str(data / f'{s}.csv'))}}}" for s in SYSTEMS)
    normalize = f"normalize: {{pad_numbers: {pad_numbers}}}\n" if pad_numbers else ""
    config = folder / "keysync-config.yaml"
    config.write_text(
        f"{normalize}sources:\n{sources}\noutput_dir: ./output\nlogs_dir: ./logs\n"
        "store: {backend: sqlite, path: ./data/keysync.sqlite}\n",
        encoding="utf-8",
    )
    return config


def keysync(*args: str) -> list[str]:
    return [str(BIN / "keysync"), *args]


def peer(config: Path, output: Path) -> list[str]:
    return [sys.executable, str(BENCH / "peer_polars.py"), "-c", str(config), "-o", str(output)]


# --- data ---------------------------------------------------------------------------------------------------


def messy_exports(root: Path, keys: int, seed: int, pad: bool) -> Path:
    """The folder of messy exports for these arguments, written unless an earlier invocation left them."""
    folder = root / f"messy-{keys}-seed{seed}{'-pad' if pad else ''}"
    manifest = folder / "messy.json"
    if not manifest.exists():
        begun = time.perf_counter()
        messy_data.generate(folder, keys, seed, pad)
        print(f"wrote {keys:,} keys per system to {folder} in {time.perf_counter() - begun:.1f} s", file=sys.stderr)
    return folder


# --- do the diffs agree? ------------------------------------------------------------------------------------


def diff_rows(folder: Path) -> dict[str, set[tuple[str, ...]]]:
    """(system, normalized key) of missing_in_A and missing_from_system, (system, key, occurrences) of duplicates."""
    import polars as pl

    def rows(name: str, *columns: str) -> set[tuple[str, ...]]:
        table = pl.read_csv(folder / name, infer_schema=False, columns=list(columns))
        return set(table.select(columns).iter_rows())

    return {
        "missing_in_A": rows("diff_missing_in_A.csv", "system", "normalized_key"),
        "missing_from_system": rows("diff_missing_from_system.csv", "system", "master_key"),
        "duplicates": rows("duplicate_keys.csv", "system", "normalized_key", "occurrences"),
    }


def agreement(keysync_output: Path, peer_output: Path) -> str:
    """ "agree", or the first differences between KeySync's diff rows and the peer's."""
    ours, theirs = diff_rows(keysync_output), diff_rows(peer_output)
    problems = []
    for name in ours:
        only_ours, only_theirs = sorted(ours[name] - theirs[name]), sorted(theirs[name] - ours[name])
        if only_ours or only_theirs:
            problems.append(
                f"{name}: {len(only_ours)} only in KeySync {only_ours[:3]}, {len(only_theirs)} only in the peer "
                f"{only_theirs[:3]}"
            )
    return "agree" if not problems else "; ".join(problems)


# --- full runs ----------------------------------------------------------------------------------------------


def full_runs(data: Path, repeat: int, pad_numbers: int) -> dict[str, object]:
    """Median wall time and peak memory of KeySync's full run and of the peer, alternating, fresh each time."""
    figures: dict[str, list[float]] = {name: [] for name in ("keysync_s", "keysync_mb", "keysync_cpu", "peer_s",
                                                             "peer_mb", "peer_cpu")}  # fmt: skip
    check = ""
    for i in range(repeat):
        with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
            folder = Path(tmp)
            config = write_config(folder, data, pad_numbers)
            order = ("keysync", "peer") if i % 2 == 0 else ("peer", "keysync")  # neither always goes first
            for who in order:
                command = keysync("run", "-c", str(config)) if who == "keysync" else peer(config, folder / "peer")
                seconds, peak, cpu = timed(command, folder, who)
                figures[f"{who}_s"].append(seconds)
                figures[f"{who}_mb"].append(peak)
                figures[f"{who}_cpu"].append(cpu)
                print(f"  {who}: {seconds:.2f} s, {peak:.0f} MB, {cpu:.2f} CPU s", file=sys.stderr)
            if not check:
                check = agreement(folder / "output", folder / "peer")
    medians: dict[str, object] = {name: statistics.median(values) for name, values in figures.items()}
    medians["check"] = check
    return medians


# --- incremental runs ---------------------------------------------------------------------------------------

FLOOR = """
import sys, time
import polars as pl
begun = time.perf_counter()
plans = [pl.scan_lines(f, name="line").select(pl.col("line").hash().sum()) for f in sys.argv[1:]]
pl.collect_all(plans)
print(f"{time.perf_counter() - begun:.3f}")
"""


def incremental_runs(data: Path, repeat: int, pad_numbers: int, rate: float, seed: int) -> dict[str, object]:
    """Median seconds of `keysync run -m incremental` with ``rate`` of every export changed and with nothing
    changed, of a full run on a store with the same history and the same changed exports, of `keysync --version`,
    and of the floor (reading and hashing the changed exports' lines); and whether the peer, run on the changed
    exports, agrees with KeySync's incremental reports."""
    figures: dict[str, list[float]] = {"full": [], "changed": [], "changed_mb": [], "unchanged": [], "version": [],
                                       "floor": []}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-peer-incr-") as tmp:
        folder, twin = Path(tmp), Path(tmp) / "full"
        exports = folder / "input"
        exports.mkdir()
        twin.mkdir()
        for system in SYSTEMS:
            shutil.copyfile(data / f"{system}.csv", exports / f"{system}.csv")
        config, full_config = write_config(folder, exports, pad_numbers), write_config(twin, exports, pad_numbers)
        # The incremental store's history is incremental runs (the first reads every export whole, as a full run).
        first, full_mb, _ = timed(keysync("run", "-c", str(config), "-m", "incremental"), folder, "first")
        timed(keysync("run", "-c", str(full_config)), twin, "first")
        print(f"  first full run: {first:.2f} s, {full_mb:.0f} MB", file=sys.stderr)
        for round_ in range(1, repeat + 1):
            messy_data.change(exports, rate, seed, round_)
            # The yardstick: a full run on a store of the same history (the twin's), on the same changed exports.
            incremental = (keysync("run", "-c", str(config), "-m", "incremental"), folder, "changed")
            full = (keysync("run", "-c", str(full_config)), twin, "full")
            for command in (incremental, full) if round_ % 2 else (full, incremental):
                seconds, peak, _ = timed(*command)
                figures[command[2]].append(seconds)
                if command is incremental:
                    figures["changed_mb"].append(peak)
            figures["unchanged"].append(
                timed(keysync("run", "-c", str(config), "-m", "incremental"), folder, "same")[0]
            )
            figures["version"].append(timed(keysync("--version"), folder, "version")[0])
            files = [str(exports / f"{s}.csv") for s in SYSTEMS]
            figures["floor"].append(timed([sys.executable, "-c", FLOOR, *files], folder, "floor")[0])
            print("  " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in figures.items()), file=sys.stderr)
        # The incremental reports must still be what a full reconciliation of the changed exports gives.
        timed(peer(config, folder / "peer"), folder, "peer")
        check = agreement(folder / "output", folder / "peer")
    medians = {name: statistics.median(v) for name, v in figures.items()}
    return {"first": first, "full_mb": full_mb, **medians, "check": check}


# --- report -------------------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "[green]met[/]" if ok else "[red]missed[/]"


def print_full(console: Console, results: dict[int, dict[str, object]], repeat: int) -> None:
    table = Table(title=f"Full run: KeySync against the polars peer (medians of {repeat})")
    columns = ("keys/system", "KeySync s", "peer s", "ratio", "KeySync peak MB", "peer peak MB", "KeySync CPU s",
               "peer CPU s", "diff rows")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == "diff rows" else "right")
    for keys, r in results.items():
        table.add_row(
            f"{keys:,}",
            f"{r['keysync_s']:.2f}",
            f"{r['peer_s']:.2f}",
            f"{r['keysync_s'] / r['peer_s']:.2f}",
            f"{r['keysync_mb']:.0f}",
            f"{r['peer_mb']:.0f}",
            f"{r['keysync_cpu']:.1f}",
            f"{r['peer_cpu']:.1f}",
            str(r["check"]),
        )
    console.print(table)
    for keys, r in results.items():
        ratio, peak = r["keysync_s"] / r["peer_s"], r["keysync_mb"]
        if keys == 1_000_000:
            console.print(f"1M: ratio {ratio:.2f} <= 1.0 {verdict(ratio <= 1.0)}; peak {peak:.0f} MB <= 1.5 GB "
                          f"{verdict(peak <= 1.5 * GB)}")  # fmt: skip
        if keys == 10_000_000:
            console.print(f"10M: peak {peak:.0f} MB <= 6 GB {verdict(peak <= 6 * GB)}")
            if 1_000_000 in results:
                times = r["keysync_s"] / results[1_000_000]["keysync_s"]
                console.print(f"10M: time {times:.1f}x the 1M time <= 12x {verdict(times <= 12)}")


def print_incremental(console: Console, results: dict[int, dict[str, object]], rate: float, repeat: int) -> None:
    table = Table(title=f"Incremental runs, {rate:.0%} of every export changed (medians of {repeat})")
    columns = ("keys/system", "first full s", "full s", "changed s", "changed peak MB", "floor s", "target s",
               "unchanged s", "--version s", "target s", "full/changed", "full/unchanged", "diff rows")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    for keys, r in results.items():
        changed_target = r["floor"] + 0.1 * r["full"]
        same_target = 2 * r["version"] + 0.1
        table.add_row(
            f"{keys:,}",
            f"{r['first']:.2f}",
            f"{r['full']:.2f}",
            f"{r['changed']:.2f}",
            f"{r['changed_mb']:.0f}",
            f"{r['floor']:.2f}",
            f"{changed_target:.2f} {verdict(r['changed'] <= changed_target)}",
            f"{r['unchanged']:.2f}",
            f"{r['version']:.2f}",
            f"{same_target:.2f} {verdict(r['unchanged'] <= same_target)}",
            f"{r['full'] / r['changed']:.1f}x"
            + (f" {verdict(r['full'] / r['changed'] >= 10)}" if keys >= 10**7 else ""),
            f"{r['full'] / r['unchanged']:.1f}x"
            + (f" {verdict(r['full'] / r['unchanged'] >= 50)}" if keys >= 10**7 else ""),
            str(r["check"]),
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, nargs="+", default=[1_000_000], help="keys per system (several sizes)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; medians are shown")
    parser.add_argument("--seed", type=int, default=1, help="seed of the messy data")
    parser.add_argument("--pad-numbers", action="store_true",
                        help=f"unpadded digits in the data, pad_numbers: {messy_data.DIGITS}")  # fmt: skip
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "keysync-bench-data",
                        help="where the messy exports are kept between invocations")  # fmt: skip
    parser.add_argument("--incremental", action="store_true", help="time incremental runs too")
    parser.add_argument("--change", type=float, default=0.01, help="share of each export changed (--incremental)")
    parser.add_argument("--skip-full", action="store_true", help="with --incremental: only the incremental runs")
    args = parser.parse_args()
    pad = messy_data.DIGITS if args.pad_numbers else 0
    console = Console(width=160)
    console.print(
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}, pad_numbers {pad}"
    )
    full: dict[int, dict[str, object]] = {}
    incremental: dict[int, dict[str, object]] = {}
    for keys in args.keys:
        data = messy_exports(args.data, keys, args.seed, args.pad_numbers)
        if not args.skip_full:
            print(f"{keys:,} keys per system: full runs", file=sys.stderr)
            full[keys] = full_runs(data, args.repeat, pad)
        if args.incremental:
            print(f"{keys:,} keys per system: incremental runs", file=sys.stderr)
            incremental[keys] = incremental_runs(data, args.repeat, pad, args.change, args.seed)
    if full:
        print_full(console, full, args.repeat)
    if incremental:
        print_incremental(console, incremental, args.change, args.repeat)


if __name__ == "__main__":
    main()

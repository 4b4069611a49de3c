"""Normalization benchmark: normalize_keys on a Python list against normalize_array on an Arrow array.

    .venv/bin/python bench/bench_normalize.py                  # 1M and 5M keys
    .venv/bin/python bench/bench_normalize.py --keys 100000    # one size

"before" is normalize_keys as it was at commit BEFORE, read from git; "now" is normalize_keys today (both: bytes and
numpy passes over the list joined into one byte string; now non-ASCII keys are NFKC-composed before, so full-width
ones join those passes instead of going one by one).

The keys are realistic messy data: mostly canonical (CUST-00012, PROD-ABC-00789, TXN-20240517-00042), with about
20 % variations spread over lower case, surrounding spaces, underscores for hyphens, full-width forms and
unpadded numbers. Each cell is the best of --repeat timings; all three are checked to agree.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import time
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Console
from rich.table import Table

from keysync.domain.normalization import NormalizationRules, normalize_array, normalize_keys

BEFORE = "78ba182"  # the last commit before normalize_array
SIZES = (1_000_000, 5_000_000)
RULES = {"default": NormalizationRules(), "pad_numbers: 5": NormalizationRules(pad_numbers=5)}
VARIATION_SHARE = 0.20
_FULL_WIDTH = str.maketrans({chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)} | {" ": "\u3000"})


def messy_keys(count: int, seed: int = 1) -> pa.Array:
    """``count`` raw keys: canonical ones, and VARIATION_SHARE of them varied in one of five ways."""
    rng = np.random.default_rng(seed)
    ids = (10 ** rng.uniform(0, 5, count)).astype(np.int64)  # as many below 10 as from 10,000 up: many zeros
    number = pc.utf8_lpad(pa.array(ids).cast(pa.string()), 5, "0")
    kind = rng.choice(3, size=count, p=(0.5, 0.3, 0.2))
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))[rng.integers(0, 26, (count, 3))]
    code = pa.array(np.char.add(np.char.add(letters[:, 0], letters[:, 1]), letters[:, 2]))
    day = np.datetime64("2019-01-01") + rng.integers(0, 7 * 365, count)
    date = pc.replace_substring(pa.array(day).cast(pa.string()), "-", "")
    prefix = pc.if_else(
        pa.array(kind == 0),
        "CUST-",
        pc.if_else(pa.array(kind == 1), pc.binary_join_element_wise("PROD-", code, "-", ""), "TXN-"),
    )
    prefix = pc.if_else(pa.array(kind == 2), pc.binary_join_element_wise(prefix, date, "-", ""), prefix)
    keys = pc.binary_join_element_wise(prefix, number, "")
    varied = np.flatnonzero(rng.random(count) < VARIATION_SHARE)
    how = rng.integers(0, 5, len(varied))
    chosen = keys.take(pa.array(varied))
    unpadded = pc.replace_substring_regex(chosen, "-0+([1-9])", "-\\1")
    spaced = pc.binary_join_element_wise(" ", chosen, "  ", "")
    variants = pc.case_when(
        pc.make_struct(*(pa.array(how == i) for i in range(4))),
        pc.ascii_lower(chosen),
        spaced,
        pc.replace_substring(chosen, "-", "_"),
        unpadded,
        pa.array([key.translate(_FULL_WIDTH) for key in chosen.to_pylist()]),
    )
    mask = np.zeros(count, dtype=bool)
    mask[varied] = True
    return pc.replace_with_mask(keys, pa.array(mask), variants)


def normalize_keys_before(commit: str) -> Callable[[list[str], NormalizationRules], list[str]]:
    """normalize_keys as it was at ``commit``."""
    source = subprocess.run(
        ["git", "show", f"{commit}:domain/normalization.py"],
        cwd=Path(__file__).parent, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    module = types.ModuleType("normalization_before")
    exec(compile(source, f"{commit}:domain/normalization.py", "exec"), module.__dict__)
    return module.normalize_keys


def best_of(repeat: int, *works: Callable[[], object]) -> list[tuple[float, object]]:
    """The fastest of ``repeat`` timings of each work, and its result. The works take turns, so that a change in
    the machine's load falls on all of them alike."""
    best: list[tuple[float, object]] = [(float("inf"), None)] * len(works)
    for _ in range(repeat):
        for i, work in enumerate(works):
            begun = time.perf_counter()
            result = work()
            best[i] = min(best[i], (time.perf_counter() - begun, result), key=lambda timed: timed[0])
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, nargs="*", default=list(SIZES))
    parser.add_argument("--repeat", type=int, default=5, help="timings per cell; the fastest is shown")
    parser.add_argument("--before", default=BEFORE, help="the commit whose normalize_keys is 'before'")
    args = parser.parse_args()
    before = normalize_keys_before(args.before)
    table = Table(title=f"Normalizing keys, seconds ({platform.machine()}, Python {platform.python_version()})")
    columns = ("keys", "rules", "before: normalize_keys (list)", "now: normalize_keys (list)",
               "normalize_array (Arrow)", "before / normalize_array")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    for count in args.keys:
        array = messy_keys(count)
        keys = array.to_pylist()
        for name, rules in RULES.items():
            (old, expected), (now, listed), (new, got) = best_of(
                args.repeat,
                lambda keys=keys, rules=rules: before(keys, rules),
                lambda keys=keys, rules=rules: normalize_keys(keys, rules),
                lambda array=array, rules=rules: normalize_array(array, rules),
            )
            if not got.to_pylist() == listed == expected:  # type: ignore[union-attr]
                raise SystemExit(f"the three disagree on {count:,} keys under {name}")
            table.add_row(f"{count:,}", name, f"{old:.3f}", f"{now:.3f}", f"{new:.3f}", f"{old / new:.1f}x")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()

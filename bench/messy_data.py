"""Messy exports for the peer benchmark: N keys per system for A-E, in KeySync's CSV input format, seeded.

    .venv/bin/python bench/messy_data.py --keys 1000000 --out /tmp/messy-1m
    .venv/bin/python bench/messy_data.py --keys 1000000 --out /tmp/messy-1m --pad-numbers 9
    .venv/bin/python bench/messy_data.py --out /tmp/messy-1m --change 0.01      # 1% of every export changed

What the files hold, per system (header ``source_system,source_key,entity_type,location_ref,last_seen_at``):

* canonical keys ``CUST-000123456``, ``PROD-QXZ-000123456``, ``TXN-2023-000123456`` (the last digit run is
  always DIGITS wide and unique over the whole universe of keys);
* A has N distinct keys; each downstream system about N, most of them A's (so A's other keys are its gaps)
  and a few from a shared pool of out-of-authority keys, so one unauthorized key often shows up in several;
* raw-form variations that KeySync's default rules reconcile: lower case, surrounding whitespace (spaces,
  a tab), other delimiters (``_``, ``.``, two spaces, ``/``, doubled ``--``), full-width characters (NFKC),
  and with --pad-numbers unpadded digits (``CUST-123456``, which pad_numbers: DIGITS pads back);
* about 1% duplicate rows (each in a raw form of its own, often another one than the first sighting);
* a few bad rows (about 0.1%): an empty key, a blank key, a control character in the key, a key with no
  letter or digit (empty after normalization), and a wrong number of fields (at the end of the file).

Everything is vectorised (numpy, pyarrow.compute) except the full-width rows (a Python str.translate over that
small subset), and the files are written with pyarrow.csv, unquoted: no field needs quotes.

``--change RATE`` rewrites every export in place with RATE of its lines changed: a third removed, a third
modified (a new last_seen_at; every other one also a new key), a third added at random places (new keys from
a pool shared by all systems, so A and the downstream systems mostly agree on them). ``--round`` makes each
rewrite different.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

SYSTEMS = ("A", "B", "C", "D", "E")
HEADER = b"source_system,source_key,entity_type,location_ref,last_seen_at\n"
DIGITS = 9  # width of each key's unique digit run; the pad_numbers that reconciles unpadded keys
AS_OF = 1_767_225_600  # 2026-01-01T00:00:00Z
HISTORY_S = 30 * 86_400
ENTITY_TYPES = ("customer", "product", "transaction")
LOCATIONS = ("", "WH-01", "WH-02", "WH-07", "REGION-EU", "REGION-US", "REGION-APAC")

FROM_A = 0.90  # share of a downstream system's keys that A has (jittered per system)
POOL = 0.15  # out-of-authority pool, as a share of N
DUPLICATES = 0.01
BAD = 0.001
# Per system: how often a row's raw form varies (lower case, delimiters, whitespace, full-width, unpadded).
STYLES = {
    "A": (0.02, 0.02, 0.01, 0.002, 0.02),
    "B": (0.10, 0.10, 0.05, 0.01, 0.10),
    "C": (0.40, 0.10, 0.05, 0.01, 0.10),
    "D": (0.10, 0.40, 0.10, 0.02, 0.20),
    "E": (0.30, 0.30, 0.25, 0.03, 0.30),
}
DELIMITERS = ("_", ".", "  ", "/", "--", " ")
SURROUNDINGS = ((" ", ""), ("", " "), ("  ", "  "), ("\t", ""), ("", "\t "))
# ASCII ! .. ~ to full-width U+FF01 .. U+FF5E, space to the ideographic space: NFKC maps each back.
FULL_WIDTH = {c: c + 0xFEE0 for c in range(0x21, 0x7F)} | {0x20: 0x3000}


def generate(out: Path, keys: int, seed: int = 1, pad_numbers: bool = False) -> dict[str, Path]:
    """Write A.csv .. E.csv into ``out``; return system -> path. The same arguments give the same bytes."""
    rng = np.random.default_rng(seed)
    pool = math.ceil(POOL * keys)
    universe, types = _universe(rng, keys + pool)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for system, system_rng in zip(SYSTEMS, rng.spawn(len(SYSTEMS)), strict=True):
        if system == "A":
            members = system_rng.permutation(keys)
        else:
            from_a = round(keys * min(0.99, FROM_A + system_rng.uniform(-0.03, 0.03)))
            members = np.concatenate(
                [system_rng.permutation(keys)[:from_a], keys + system_rng.permutation(pool)[: keys - from_a]]
            )
            members = system_rng.permutation(members)
        duplicates = system_rng.choice(members, size=round(DUPLICATES * len(members)))
        members = np.concatenate([members, duplicates])
        raw = _vary(system_rng, universe.take(pa.array(members)), STYLES[system], pad_numbers)
        table = _table(system_rng, system, raw, types[members])
        table, ragged = _bad_rows(system_rng, system, table)
        table = table.take(pa.array(system_rng.permutation(table.num_rows)))
        path = out / f"{system}.csv"
        with pa.OSFile(str(path), "wb") as sink:
            sink.write(HEADER)
            _write(table, sink)
            for extra in ragged:
                _write(extra, sink)
        written[system] = path
    (out / "messy.json").write_text(
        json.dumps({"keys": keys, "seed": seed, "pad_numbers": DIGITS if pad_numbers else 0}), encoding="utf-8"
    )
    return written


def _write(table: pa.Table, sink: pa.NativeFile) -> None:
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="none"))


# --- keys ---------------------------------------------------------------------------------------------------


def _universe(rng: np.random.Generator, count: int) -> tuple[pa.Array, np.ndarray]:
    """``count`` distinct canonical keys in random order, and their entity type codes."""
    ids = np.cumsum(rng.integers(1, 20, size=count, dtype=np.int64))  # increasing, so distinct
    if ids[-1] >= 10**DIGITS:
        raise ValueError(f"too many keys for {DIGITS} digits")
    ids = rng.permutation(ids)
    types = rng.choice(len(ENTITY_TYPES), size=count, p=(0.5, 0.3, 0.2)).astype(np.int8)
    keys, order = [], []
    for code in range(len(ENTITY_TYPES)):
        picked = np.flatnonzero(types == code)
        keys.append(_keys_of_type(code, ids[picked]))
        order.append(picked)
    where = np.empty(count, dtype=np.int64)
    where[np.concatenate(order)] = np.arange(count)
    return pa.concat_arrays(keys).take(pa.array(where)), types


def _keys_of_type(code: int, ids: np.ndarray) -> pa.Array:
    n = len(ids)
    digits = _digits(ids, DIGITS)
    if code == 0:
        return _fixed_width(_text("CUST-", n), digits)
    if code == 1:
        letters = (ids[:, None] // 26 ** np.arange(3) % 26 + ord("A")).astype(np.uint8)
        return _fixed_width(_text("PROD-", n), letters, _text("-", n), digits)
    year = _digits(2019 + ids % 7, 4)
    return _fixed_width(_text("TXN-", n), year, _text("-", n), digits)


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (values[:, None] // powers % 10 + ord("0")).astype(np.uint8)


def _text(text: str, rows: int) -> np.ndarray:
    return np.broadcast_to(np.frombuffer(text.encode("ascii"), dtype=np.uint8), (rows, len(text)))


def _fixed_width(*parts: np.ndarray) -> pa.Array:
    matrix = np.ascontiguousarray(np.hstack(parts), dtype=np.uint8)
    rows, width = matrix.shape
    offsets = np.arange(rows + 1, dtype=np.int32) * np.int32(width)
    return pa.Array.from_buffers(pa.string(), rows, [None, pa.py_buffer(offsets), pa.py_buffer(matrix)])


# --- variations ---------------------------------------------------------------------------------------------


def _vary(rng: np.random.Generator, raw: pa.Array, style: tuple[float, ...], pad_numbers: bool) -> pa.Array:
    lower, delimiters, whitespace, full_width, unpadded = style
    n = len(raw)
    if pad_numbers:
        raw = _where(raw, rng.random(n) < unpadded, lambda k: pc.replace_substring_regex(k, r"-0+([0-9]+)$", r"-\1"))
    choice = rng.integers(0, len(DELIMITERS), size=n)
    varied = rng.random(n) < delimiters
    for i, delimiter in enumerate(DELIMITERS):
        raw = _where(raw, varied & (choice == i), lambda k, d=delimiter: pc.replace_substring(k, "-", d))
    raw = _where(raw, rng.random(n) < lower, pc.ascii_lower)
    raw = _where(raw, rng.random(n) < full_width, _full_width)
    choice = rng.integers(0, len(SURROUNDINGS), size=n)
    varied = rng.random(n) < whitespace
    for i, (before, after) in enumerate(SURROUNDINGS):
        raw = _where(raw, varied & (choice == i), lambda k, b=before, a=after: pc.binary_join_element_wise(b, k, a, ""))
    return raw


def _where(values: pa.Array, mask: np.ndarray, change: Callable[[pa.Array], pa.Array]) -> pa.Array:
    """``values`` with ``change`` applied to the masked rows only (the change runs on that subset)."""
    if not mask.any():
        return values
    arrow_mask = pa.array(mask)
    return pc.replace_with_mask(values, arrow_mask, change(values.filter(arrow_mask)))


def _full_width(keys: pa.Array) -> pa.Array:
    return pa.array([k.translate(FULL_WIDTH) for k in keys.to_pylist()], pa.string())


# --- rows ---------------------------------------------------------------------------------------------------


def _table(rng: np.random.Generator, system: str, raw: pa.Array, types: np.ndarray) -> pa.Table:
    n = len(raw)
    seen = pc.cast(pa.array(AS_OF - rng.integers(0, HISTORY_S, size=n), pa.timestamp("s")), pa.string())
    seen = pc.binary_join_element_wise(pc.replace_substring(seen, " ", "T"), "+00:00", "")
    return pa.table(
        {
            "source_system": pa.array(np.full(n, system)),
            "source_key": raw,
            "entity_type": pa.array(np.array(ENTITY_TYPES)[types]),
            "location_ref": pa.array(np.array(LOCATIONS)[rng.integers(0, len(LOCATIONS), size=n)]),
            "last_seen_at": seen,
        }
    )


def _bad_rows(rng: np.random.Generator, system: str, table: pa.Table) -> tuple[pa.Table, list[pa.Table]]:
    """Replace a few rows' keys by bad ones; return the table and the rows with a wrong number of fields."""
    n_bad = max(5, round(BAD * table.num_rows))
    picks = rng.choice(table.num_rows, size=n_bad, replace=False)
    keys = table["source_key"].to_pylist()
    ragged = []
    for j, i in enumerate(picks.tolist()):
        kind = j % 5
        if kind == 0:
            keys[i] = ""
        elif kind == 1:
            keys[i] = "   "
        elif kind == 2:
            middle = len(keys[i]) // 2
            keys[i] = keys[i][:middle] + ("\x00", "\x07", "\x1b", "\x7f")[j % 4] + keys[i][middle:]
        elif kind == 3:
            keys[i] = ("***", "--", "#!")[j % 3]
        else:
            fields = [table[c][i].as_py() for c in table.column_names]
            fields[1] = keys[i]
            row = fields[:3] if j % 2 else [*fields, "EXTRA"]
            ragged.append(pa.table({f"c{k}": [v] for k, v in enumerate(row)}))
    good = np.ones(table.num_rows, dtype=bool)
    good[picks[4::5]] = False  # the ragged rows appear at the end of the file instead
    table = table.set_column(1, "source_key", pa.array(keys, pa.string())).filter(pa.array(good))
    return table, ragged


# --- changes for incremental runs ---------------------------------------------------------------------------


def change(folder: Path, rate: float, seed: int = 1, round_: int = 1) -> dict[str, int]:
    """Rewrite every export in ``folder`` with ``rate`` of its data lines changed; return system -> lines changed."""
    rng = np.random.default_rng([seed, round_])
    sizes = {s: _line_count(folder / f"{s}.csv") for s in SYSTEMS}
    per_system = {s: max(3, round(rate * n)) for s, n in sizes.items()}
    added = {s: per_system[s] - 2 * (per_system[s] // 3) for s in SYSTEMS}
    pool_size = max(added.values())
    pool = pa.array([f"NEW{round_}-{i:0{DIGITS}d}" for i in range(pool_size)])  # small: 1% of N
    for system, system_rng in zip(SYSTEMS, rng.spawn(len(SYSTEMS)), strict=True):
        path = folder / f"{system}.csv"
        data = path.read_bytes()
        lines, start = _lines(data)
        n = len(lines)
        n_removed = n_modified = per_system[system] // 3
        chosen = system_rng.choice(n, size=n_removed + n_modified, replace=False)
        removed, modified = chosen[:n_removed], chosen[n_removed:]
        modified_lines = _modify(system_rng, lines.take(pa.array(modified)), round_)
        lines = pc.replace_with_mask(lines, _mask(n, modified), modified_lines)
        new_keys = pool.take(pa.array(system_rng.choice(pool_size, size=added[system], replace=False)))
        new_lines = _new_lines(system_rng, system, new_keys, round_)
        keep = ~_mask(n, removed).to_numpy(zero_copy_only=False)
        # Added lines land at random places among the kept ones: sort by position, added ones just before theirs.
        place = np.concatenate([np.flatnonzero(keep) * 2 + 1, system_rng.integers(0, n, size=len(new_lines)) * 2])
        everything = pa.concat_arrays([lines.filter(pa.array(keep)), new_lines.cast(pa.large_binary())])
        everything = everything.take(pa.array(np.argsort(place, kind="stable")))
        with pa.OSFile(str(path), "wb") as sink:
            sink.write(data[:start])
            _, offsets, body = everything.buffers()
            if len(everything):
                bounds = np.frombuffer(offsets, dtype=np.int64)
                sink.write(memoryview(body)[int(bounds[0]) : int(bounds[len(everything)])])
    return per_system


def _line_count(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 24), b"")) - 1


def _lines(data: bytes) -> tuple[pa.LargeBinaryArray, int]:
    """The data lines (each with its line end) as one zero-copy arrow array, and where the first starts."""
    buf = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(buf == ord("\n")) + 1
    if len(data) and data[-1:] != b"\n":
        ends = np.append(ends, len(data))
    start = int(ends[0])
    offsets = np.concatenate([[start], ends[1:]]).astype(np.int64)
    n = len(offsets) - 1
    return pa.Array.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)]), start


def _mask(n: int, rows: np.ndarray) -> pa.Array:
    mask = np.zeros(n, dtype=bool)
    mask[rows] = True
    return pa.array(mask)


def _modify(rng: np.random.Generator, lines: pa.Array, round_: int) -> pa.Array:
    """New last_seen_at for each line with five fields; every other one gets a new key too."""
    text = pc.cast(lines, pa.string())
    fields = pc.split_pattern(pc.utf8_rtrim(text, "\n"), ",")
    ok = pc.equal(pc.list_value_length(fields), 5)
    safe = pc.if_else(ok, fields, pa.scalar(["", "", "", "", ""], pa.list_(pa.string())))
    part = [pc.list_element(safe, i) for i in range(5)]
    fresh = pa.array([f"CHG{round_}-{i:0{DIGITS}d}" for i in range(len(lines))], pa.string())
    new_key = pa.array(rng.random(len(lines)) < 0.5)
    key = pc.if_else(new_key, fresh, part[1])
    seen = _stamps(rng, len(lines), round_)
    rebuilt = pc.binary_join_element_wise(part[0], key, part[2], part[3], seen, ",")
    rebuilt = pc.binary_join_element_wise(rebuilt, "\n", "")
    return pc.if_else(ok, rebuilt, text).cast(pa.large_binary())


def _new_lines(rng: np.random.Generator, system: str, keys: pa.Array, round_: int) -> pa.Array:
    n = len(keys)
    location = pa.array(np.array(LOCATIONS)[rng.integers(0, len(LOCATIONS), size=n)])
    seen = _stamps(rng, n, round_)
    return pc.binary_join_element_wise(
        system, keys, "customer", location, pc.binary_join_element_wise(seen, "\n", ""), ","
    )


def _stamps(rng: np.random.Generator, n: int, round_: int) -> pa.Array:
    moments = AS_OF + round_ * 86_400 + rng.integers(0, 86_400, size=n)
    seen = pc.cast(pa.array(moments, pa.timestamp("s")), pa.string())
    return pc.binary_join_element_wise(pc.replace_substring(seen, " ", "T"), "+00:00", "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for A.csv .. E.csv")
    parser.add_argument("--keys", type=int, default=1_000_000, help="keys per system")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--pad-numbers", action="store_true", help=f"write unpadded digits too (for pad_numbers: {DIGITS})"
    )
    parser.add_argument("--change", type=float, metavar="RATE", help="rewrite the exports in --out with RATE changed")
    parser.add_argument("--round", type=int, default=1, help="which rewrite (--change): each round differs")
    args = parser.parse_args()
    begun = time.perf_counter()
    if args.change is not None:
        changed = change(args.out, args.change, args.seed, args.round)
        print(f"changed {sum(changed.values()):,} lines in {time.perf_counter() - begun:.1f} s")
    else:
        generate(args.out, args.keys, args.seed, args.pad_numbers)
        print(f"wrote {args.keys:,} keys per system to {args.out} in {time.perf_counter() - begun:.1f} s")


if __name__ == "__main__":
    main()

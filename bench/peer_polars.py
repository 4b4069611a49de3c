"""The peer for the benchmark: what KeySync's full run must beat, written as a competent engineer would in polars.

    .venv/bin/python bench/peer_polars.py -c keysync-config.yaml -o peer-output/

Reads the five exports named in a KeySync config, rejects the rows KeySync rejects (wrong number of fields, a
control character in the key, an empty or blank key, a key too long, a foreign source_system, a key empty after
normalization), normalizes the keys by the config's rules (NFKC, trim, uppercase, strip_non_alnum keeping
delimiters, delimiter runs collapsed and stripped at the ends, pad_numbers; see keysync.domain.normalization's
``normalize_key``), classifies per downstream system S (missing_in_A = S - A, missing_from_system = A - S,
duplicates) and writes diff_missing_in_A.csv, diff_missing_from_system.csv, duplicate_keys.csv and
rejected_rows.csv. Nothing else: no event store, no registry, no history. It needs polars (the `bench` extra).

Every step is a polars expression over all systems' rows at once, except the two that polars has no expression
for, which run on the few rows that need them (found with a vectorised test first):
* NFKC: only keys that are not ASCII need it (NFKC leaves ASCII alone); those go through
  pyarrow.compute.utf8_normalize (utf8proc, in C), which on this data agrees with Python's unicodedata;
* pad_numbers: only keys with a digit run shorter than the width; there the key is cut into digit and
  non-digit runs, the digit runs zero-filled, and the runs joined again.
The exports are read as lines (polars' read_lines) and split on commas: KeySync's exports in the benchmark hold
no quoted fields, and a line's comma count is how a wrong number of fields shows. (A file with bytes that are not
UTF-8 fails here as a whole, where KeySync rejects the rows; the benchmark's data holds none.)
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pyarrow.compute as pc
import yaml

FIELDS = ("source_system", "source_key", "entity_type", "location_ref", "last_seen_at")
DELIMITERS = r"\s\-_./\\:|"  # the class KeySync collapses: whitespace and - _ . / \ : |
CONTROL = r"[\x00-\x08\x0a-\x1f\x7f-\x9f]"
DEFAULT_RULES = {"trim": True, "uppercase": True, "strip_non_alnum": True, "collapse_delims": "-", "pad_numbers": 0}


def load_config(path: Path) -> tuple[dict[str, Path], dict, int]:
    """(system -> export path, normalization rules, max_key_length) from a KeySync config file."""
    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    rules = {**DEFAULT_RULES, **(config.get("normalize") or {})}
    if rules.get("ascii_fold") or rules.get("letters", "ascii") != "ascii":
        raise SystemExit("the peer implements the default letters: ascii, ascii_fold: false only")
    if rules["collapse_delims"] is False:
        rules["collapse_delims"] = ""
    sources = {
        system: (path.parent / source["path"]).resolve() for system, source in (config.get("sources") or {}).items()
    }
    max_key_length = int((config.get("processing") or {}).get("max_key_length", 256))
    return sources, rules, max_key_length


# --- read -------------------------------------------------------------------------------------------------


def scan_export(system: str, path: Path, max_key_length: int) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """(usable rows: system, line, the five fields; rejected rows: system, line, reason), lazily."""
    with path.open("rb") as fh:
        first = fh.readline().decode("utf-8")
    header = [name.strip().lower() for name in first.rstrip("\r\n").split(",")]
    n = len(header)
    body = pl.scan_lines(path, name="text", row_index_name="line", row_index_offset=1).slice(1)
    if first.endswith("\r\n"):  # scan_lines ends lines at "\n"; stripping every line costs, so only if needed
        body = body.with_columns(pl.col("text").str.strip_suffix("\r"))
    body = body.with_columns(
        pl.col("line").cast(pl.Int64), pl.col("text").str.count_matches(",", literal=True).alias("commas")
    )
    fields = pl.col("text").str.split_exact(",", n - 1).struct.rename_fields(header)
    rows = body.filter(pl.col("commas") == n - 1).select("line", fields.alias("f")).unnest("f")
    rows = rows.select(
        pl.lit(system).alias("system"), "line", *(pl.col(c) if c in header else pl.lit("").alias(c) for c in FIELDS)
    )
    key = pl.col("source_key")
    reason = (
        pl.when(key.str.contains(CONTROL))
        .then(pl.lit("control character in key"))
        .when(key.str.strip_chars() == "")
        .then(pl.lit("empty key"))
        .when(key.str.len_chars() > max_key_length)
        .then(pl.lit(f"key longer than {max_key_length} characters"))
        .when(~pl.col("source_system").is_in(["", system]))
        .then(pl.lit("source_system differs from the system being read"))
    )
    rows = rows.with_columns(reason.alias("reason"))
    ragged = (
        body.filter(pl.col("commas") != n - 1)
        .filter(pl.col("text").str.strip_chars() != "")  # a blank line is no row (KeySync warns of it)
        .select(
            pl.lit(system).alias("system"),
            "line",
            pl.format("wrong number of fields: {}", pl.col("commas") + 1).alias("reason"),
        )
    )
    rejected = rows.filter(pl.col("reason").is_not_null()).select("system", "line", "reason")
    return rows.filter(pl.col("reason").is_null()).drop("reason"), pl.concat([ragged, rejected])


# --- normalize ----------------------------------------------------------------------------------------------


def on_subset(series: pl.Series, mask: pl.Series, change: Callable[[pl.Series], pl.Series]) -> pl.Series:
    """``series`` with ``change`` applied to the rows of ``mask`` only."""
    if not mask.any():
        return series
    return series.scatter(mask.arg_true(), change(series.filter(mask)))


def nfkc(keys: pl.Series) -> pl.Series:
    """Unicode NFKC: the identity on ASCII, so only the other keys go through utf8proc."""
    return on_subset(
        keys,
        keys.str.len_bytes() != keys.str.len_chars(),
        lambda s: pl.Series(pc.utf8_normalize(s.to_arrow(), "NFKC")),
    )


def pad_numbers(keys: pl.Series, width: int) -> pl.Series:
    """Every run of ASCII digits shorter than ``width`` zero-filled to it."""
    short = keys.str.contains(rf"(?:^|[^0-9])[0-9]{{1,{width - 1}}}(?:[^0-9]|$)")

    def pad(s: pl.Series) -> pl.Series:
        runs = s.str.extract_all(r"[0-9]+|[^0-9]+")
        padded = runs.list.eval(
            pl.when(pl.element().str.contains("^[0-9]")).then(pl.element().str.zfill(width)).otherwise(pl.element())
        )
        return padded.list.join("")

    return on_subset(keys, short, pad)


def normalize(keys: pl.Series, rules: dict) -> pl.Series:
    """KeySync's normalize_key over a column (default letters: ascii, no ascii_fold).

    Most keys are already in normal form (upper-case ASCII letters and digits, single delimiters as
    collapse_delims writes them): a regex test finds them and only the others go through the rules."""
    collapse = rules["collapse_delims"]
    if rules["uppercase"] and rules["strip_non_alnum"] and collapse:
        settled = keys.str.contains(rf"^[A-Z0-9]+(?:{re.escape(collapse)}[A-Z0-9]+)*$")
        keys = on_subset(keys, ~settled, lambda s: _apply_rules(s, rules))
    else:
        keys = _apply_rules(keys, rules)
    if rules["pad_numbers"]:
        keys = pad_numbers(keys, int(rules["pad_numbers"]))
    return keys


def _apply_rules(keys: pl.Series, rules: dict) -> pl.Series:
    keys = nfkc(keys)
    if rules["trim"]:
        keys = keys.str.strip_chars()
    if rules["uppercase"]:
        keys = nfkc(keys.str.to_uppercase())  # upper() can leave NFKC text non-normal, as KeySync notes
    collapse = rules["collapse_delims"]
    if rules["strip_non_alnum"]:
        keys = keys.str.replace_all(rf"[^A-Za-z0-9{DELIMITERS}]+" if collapse else "[^A-Za-z0-9]+", "")
    if collapse:
        keys = keys.str.replace_all(rf"[{DELIMITERS}]+", collapse, literal=False).str.strip_chars(collapse)
    return keys


# --- classify and write -----------------------------------------------------------------------------------


def classify(rows: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """The diff tables of one run, from the usable rows of every system with their normalized keys.

    The normalized keys are dictionary-encoded once (a Categorical's integer codes), and then grouped and
    anti-joined one system at a time on those codes: in polars that is several times faster than grouping and
    joining on strings, or on (system, key)."""
    rows = rows.with_columns(pl.col("normalized_key").cast(pl.Categorical).to_physical().alias("code"))
    per_system = {system: frame for (system,), frame in rows.partition_by("system", as_dict=True).items()}
    unique = {system: _unique_keys(frame) for system, frame in per_system.items()}
    authority = unique.pop("A")
    codes_of_a = authority.select("code")
    missing_in_a, missing_from_system, duplicates = [], [], []
    for system in sorted(unique):
        found = unique[system]
        missing_in_a.append(found.join(codes_of_a, on="code", how="anti").with_columns(system=pl.lit(system)))
        gap = authority.join(found.select("code"), on="code", how="anti")
        missing_from_system.append(gap.with_columns(system=pl.lit(system)))
    for system, found in sorted({**unique, "A": authority}.items()):
        duplicates.append(found.filter(pl.col("occurrences") > 1).with_columns(system=pl.lit(system)))
    return {
        "diff_missing_in_A.csv": _in_order(missing_in_a).select(
            "system", "source_key", "normalized_key", "entity_type", "last_seen_at"
        ),
        "diff_missing_from_system.csv": _in_order(missing_from_system).select(
            "system",
            pl.col("normalized_key").alias("master_key"),
            pl.col("source_key").alias("source_key_in_A"),
            "entity_type",
            pl.col("last_seen_at").alias("last_seen_in_A"),
        ),
        "duplicate_keys.csv": _in_order(duplicates).select("system", "normalized_key", "occurrences"),
    }


def _in_order(tables: list[pl.DataFrame]) -> pl.DataFrame:
    """The systems' tables, in A-E order, each sorted by normalized key as KeySync's reports are."""
    return pl.concat([table.sort("normalized_key") for table in tables])


def _unique_keys(rows: pl.DataFrame) -> pl.DataFrame:
    """One row per normalized key (code): its first raw form and entity type, its number of rows, and its latest
    last_seen_at (a max over strings is slow in polars, so it is taken over the duplicated keys' rows only)."""
    unique = rows.group_by("code").agg(
        pl.col("normalized_key").first(),
        pl.col("source_key").first(),
        pl.col("entity_type").first(),
        pl.col("last_seen_at").first(),
        pl.len().alias("occurrences"),
    )
    duplicated = unique.filter(pl.col("occurrences") > 1).select("code")
    latest = (
        rows.join(duplicated, on="code", how="semi").group_by("code").agg(pl.col("last_seen_at").max().alias("latest"))
    )
    return (
        unique.join(latest, on="code", how="left")
        .with_columns(pl.coalesce("latest", "last_seen_at").alias("last_seen_at"))
        .drop("latest")
    )


def run(config: Path, output: Path, timings: dict[str, float] | None = None) -> dict[str, int]:
    """Read, normalize, classify, write; the seconds each phase took go into ``timings``."""
    timings = {} if timings is None else timings
    clock = time.perf_counter()

    def lap(phase: str) -> None:
        nonlocal clock
        timings[phase], clock = time.perf_counter() - clock, time.perf_counter()

    sources, rules, max_key_length = load_config(config)
    parts = [scan_export(system, path, max_key_length) for system, path in sources.items()]
    # One plan for the five exports: polars reads and splits them in parallel.
    frames = pl.collect_all([usable for usable, _ in parts] + [rejected for _, rejected in parts])
    rows = pl.concat(frames[: len(parts)])
    lap("read")
    rows = rows.with_columns(normalize(rows["source_key"], rules).alias("normalized_key"))
    emptied = rows.filter(pl.col("normalized_key") == "").select(
        "system", "line", pl.lit("key is empty after normalization").alias("reason")
    )
    lap("normalize")
    tables = classify(rows.filter(pl.col("normalized_key") != ""))
    tables["rejected_rows.csv"] = pl.concat([*frames[len(parts) :], emptied]).sort("system", "line")
    lap("classify")
    output.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        table.write_csv(output / name)
    lap("write")
    return {name: table.height for name, table in tables.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", type=Path, required=True, help="a KeySync config naming the exports")
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder for the diff files")
    args = parser.parse_args()
    begun = time.perf_counter()
    timings: dict[str, float] = {}
    counts = run(args.config, args.output, timings)
    print(", ".join(f"{name} {count:,}" for name, count in counts.items()))
    print(
        ", ".join(f"{phase} {s:.2f} s" for phase, s in timings.items()), f"(total {time.perf_counter() - begun:.2f} s)"
    )


if __name__ == "__main__":
    main()

"""Seeded mock data: the exports of System A and of the downstream systems B..E, in the input contract.

``generate`` writes one file per system (``A.csv`` .. ``E.csv``, or ``A.json`` .. ``E.json`` as JSON Lines)
with the columns ``source_system,source_key,entity_type,location_ref,last_seen_at``. What it puts in them:

* realistic keys per entity type: ``CUST-12345``, ``PROD-ABC-789``, ``TXN-2024-001`` (the digit runs widen
  when many keys are asked for, e.g. ``CUST-1234567`` for a million keys); a key keeps its entity type
  in every system;
* raw-format variations that the default normalization rules reconcile (lower/title/swapped case,
  leading and trailing spaces, ``_ . space / :`` or doubled delimiters in place of ``-``); digits never vary;
* per downstream system S, on the unique normalized keys, ``|S∩A|/|S∪A|`` equal to the scenario's match
  share (normal 80 %, drift 60 %, failure 50 %, recovery 75 %, each system jittered by at most one point),
  the rest split about equally between keys only in S (out of authority) and keys only in A (gap);
  out-of-authority keys are drawn from one shared pool, so the same unauthorized key often shows up in
  several downstream systems;
* a few duplicate rows per system (0.5-1 %), half of them in another raw form than the first sighting;
* ``corruption_rate`` x (valid rows) extra rows that a reader must reject: a control character in the key,
  an empty key, a key over 256 characters, bytes that are not UTF-8 in the key, or a wrong number of fields
  (in JSON Lines: an object cut short after a complete member). No row ever leaves a quote open.

Everything derives from ``numpy.random.default_rng(seed)`` and the arguments: the same arguments give
byte-identical files on any day, a different seed gives different files. The bulk work is vectorized
(numpy for numbers, pyarrow.compute for strings); only the corrupt rows are built one by one.
The valid CSV lines are exactly what ``csv.writer(lineterminator="\\n")`` writes for the same fields
(QUOTE_MINIMAL, RFC 4180), and every JSON line is exactly ``json.dumps(record, ensure_ascii=False)``;
absent values are empty strings in both formats.
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from keysync.domain.observations import AUTHORITY, DOWNSTREAM, SYSTEMS
from keysync.infrastructure.mock_options import DEFAULT_AS_OF, SCENARIOS

KINDS = ("csv", "json")
COLUMNS = ("source_system", "source_key", "entity_type", "location_ref", "last_seen_at")
ENTITY_TYPES = ("customer", "product", "transaction")
CORRUPTIONS = ("control_char", "empty_key", "too_long", "not_utf8", "field_count")
MAX_KEY_LENGTH = 256

# Share of each downstream system's keys (union with A) that A also has; the rest is split about equally
# between out-of-authority keys and gaps.
_MATCH_SHARE = {"normal": 0.80, "drift": 0.60, "failure": 0.50, "recovery": 0.75}
_SHARE_JITTER = 0.01
# Out-of-authority keys are drawn from a pool this many times larger than the largest draw, so an
# unauthorized key is usually in one or two downstream systems, sometimes in three or four.
_OOA_POOL_FACTOR = 2.5

_ENTITY_WEIGHTS = (0.5, 0.3, 0.2)
_SPARSITY = 8  # an id space holds at least this many times the ids drawn from it: keys look scattered
_TXN_FIRST_YEAR, _TXN_YEARS = 2019, 7  # transaction keys carry a year in 2019..2025
_LETTERS = 26

_DUPLICATE_SHARE = (0.005, 0.01)
_DUPLICATE_SAME_RAW = 0.5
_EMPTY_TIMESTAMP_SHARE = (0.02, 0.08)  # downstream systems only; A always has a timestamp
_LOCATIONS = (
    "",
    *(f"WH-{n:02d}" for n in range(1, 13)),
    "REGION-EU",
    "REGION-US",
    "REGION-APAC",
    "REGION-LATAM",
)
_EMPTY_LOCATION_SHARE = 0.15

# How often each system varies the raw form of a key: (case, delimiters, surrounding spaces).
_STYLES = {
    "A": (0.02, 0.02, 0.01),
    "B": (0.10, 0.10, 0.05),
    "C": (0.45, 0.10, 0.05),
    "D": (0.10, 0.50, 0.10),
    "E": (0.30, 0.30, 0.25),
}
_DUPLICATE_STYLE = (0.6, 0.6, 0.3)  # a duplicate that is not a verbatim copy is written by someone else

_Op = Callable[[pa.Array], pa.Array]


def _swapped_title(values: pa.Array) -> pa.Array:
    return pc.ascii_swapcase(pc.ascii_title(values))


def _replace_delimiter(replacement: str, first_only: bool = False) -> _Op:
    limit = 1 if first_only else None
    return lambda values: pc.replace_substring(values, "-", replacement, max_replacements=limit)


def _pad(prefix: str, suffix: str) -> _Op:
    return lambda values: pc.binary_join_element_wise(prefix, values, suffix, "")


_CASE_OPS: tuple[_Op, ...] = (pc.ascii_lower, pc.ascii_title, pc.ascii_capitalize, _swapped_title)
_DELIMITER_OPS: tuple[_Op, ...] = (
    *(_replace_delimiter(d) for d in ("_", ".", " ", "/", ":", "--", "__", " - ", "-_")),
    _replace_delimiter("_", first_only=True),
    _replace_delimiter("/", first_only=True),
)
_PAD_OPS: tuple[_Op, ...] = (_pad(" ", ""), _pad("", " "), _pad("  ", " "), _pad(" ", "   "))

_CONTROL_CHARS = ("\x00", "\x1b", "\x07", "\x08", "\x7f")
# Byte sequences that are not UTF-8, held as surrogate escapes until the file is encoded.
_NOT_UTF8 = tuple(raw.decode("utf-8", "surrogateescape") for raw in (b"\xff\xfe", b"\xe9", b"\xc3\x28", b"\x80"))
_LONG_KEY_ALPHABET = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", dtype=np.uint8)


def generate(
    output_dir: Path,
    *,
    scenario: str = "normal",
    keys: int = 1000,
    seed: int = 42,
    corruption_rate: float = 0.01,
    days_of_history: int = 30,
    as_of: datetime | None = None,
    kind: str = "csv",
    match_share: float | None = None,
    spread_history: bool = True,
) -> dict[str, Path]:
    """Write one mock export per system into ``output_dir``; return system -> file written.

    ``keys`` is the number of unique keys of System A (each downstream system has about as many);
    ``corruption_rate`` x (valid rows of a system) corrupt rows are added to that system's file;
    ``last_seen_at`` lies within the ``days_of_history`` days before ``as_of`` (default
    2026-01-01T00:00:00+00:00; a naive ``as_of`` is taken as UTC), or is ``as_of`` itself for every key without
    ``spread_history`` (simulation.temporal.simulate_history: false). ``kind`` is ``csv`` or ``json``
    (JSON Lines). ``match_share`` overrides the scenario's match share (for day-by-day histories): with
    the same seed, a lower share keeps a subset of the matching keys and adds to the out-of-authority ones,
    so consecutive snapshots change gradually. Raises ValueError for an argument outside what is allowed.
    """
    _validate(scenario, keys, seed, corruption_rate, days_of_history, as_of, kind)
    as_of_seconds = _epoch_seconds(DEFAULT_AS_OF if as_of is None else as_of)
    history_seconds = int(days_of_history) * 86_400 if spread_history else 0
    keys = int(keys)

    root = np.random.default_rng(int(seed))
    system_rngs = dict(zip(SYSTEMS, root.spawn(len(SYSTEMS)), strict=True))
    share = _MATCH_SHARE[scenario] if match_share is None else float(match_share)
    if not 0.05 <= share <= 1.0:
        raise ValueError(f"match_share must be a number from 0.05 to 1; got {match_share!r}")
    sizes = _downstream_sizes(root, share, keys)
    # The pool is sized for the lowest share a scenario reaches (50 %), whatever this share is, so that
    # the same seed gives the same universe of keys on every day of a history.
    pool_size = math.ceil(_OOA_POOL_FACTOR * keys / 3) + 1
    universe, entity_codes = _universe(root, keys + pool_size)

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for system in SYSTEMS:
        rows_rng, corrupt_rng = system_rngs[system].spawn(2)
        if system == AUTHORITY:
            members = np.arange(keys, dtype=np.int64)
        else:
            n_match, n_ooa = sizes[system]
            # Prefixes of fixed permutations: a smaller share keeps a subset of the same keys.
            members = np.concatenate(
                [
                    rows_rng.permutation(keys)[:n_match],
                    keys + rows_rng.permutation(pool_size)[: min(n_ooa, pool_size)],
                ]
            )
        rows = _valid_rows(rows_rng, system, members, universe, entity_codes, as_of_seconds, history_seconds)
        n_corrupt = round(corruption_rate * len(rows[1]))
        corrupt = _corrupt_rows(corrupt_rng, rows, n_corrupt, kind)
        lines = _valid_lines(rows, kind)
        everything = pa.concat_arrays([lines.cast(pa.large_binary()), pa.array(corrupt, pa.large_binary())])
        everything = everything.take(pa.array(corrupt_rng.permutation(len(everything))))

        path = output_dir / f"{system}.{kind}"
        with path.open("wb") as fh:
            if kind == "csv":
                fh.write(_csv_line(COLUMNS).encode("utf-8"))
            _write_lines(fh, everything)
        written[system] = path
    return written


# --- arguments ----------------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _validate(
    scenario: object,
    keys: object,
    seed: object,
    corruption_rate: object,
    days_of_history: object,
    as_of: object,
    kind: object,
) -> None:
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}; got {scenario!r}")
    if not _is_int(keys) or keys < 1:  # type: ignore[operator]
        raise ValueError(f"keys must be an integer >= 1; got {keys!r}")
    if not _is_int(seed) or seed < 0:  # type: ignore[operator]
        raise ValueError(f"seed must be an integer >= 0; got {seed!r}")
    if (
        not isinstance(corruption_rate, numbers.Real)
        or isinstance(corruption_rate, bool)
        or not 0.0 <= float(corruption_rate) <= 1.0
    ):
        raise ValueError(f"corruption_rate must be a number from 0 to 1 (inclusive); got {corruption_rate!r}")
    if not _is_int(days_of_history) or days_of_history < 1:  # type: ignore[operator]
        raise ValueError(f"days_of_history must be an integer >= 1; got {days_of_history!r}")
    if as_of is not None and not isinstance(as_of, datetime):
        raise ValueError(f"as_of must be a datetime or None; got {as_of!r}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")


def _epoch_seconds(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return math.floor(moment.timestamp())


# --- which keys each system has -----------------------------------------------------------------------


def _downstream_sizes(rng: np.random.Generator, share: float, keys: int) -> dict[str, tuple[int, int]]:
    """(keys shared with A, keys not in A) per downstream system, so that the shares of S∪A come out
    as the scenario asks while A keeps exactly ``keys`` keys and S gets about as many."""
    sizes = {}
    for system in DOWNSTREAM:
        match = min(1.0, share + rng.uniform(-_SHARE_JITTER, _SHARE_JITTER))
        out_of_authority = max(0.0, (1.0 - match) / 2 + rng.uniform(-_SHARE_JITTER, _SHARE_JITTER))
        gap = 1.0 - match - out_of_authority
        union = keys / (match + gap)
        sizes[system] = (min(keys, round(match * union)), round(out_of_authority * union))
    return sizes


def _universe(rng: np.random.Generator, count: int) -> tuple[pa.Array, np.ndarray]:
    """``count`` distinct canonical keys in random order, with their entity type codes."""
    per_type = rng.multinomial(count, _ENTITY_WEIGHTS)
    keys = pa.concat_arrays(
        [
            _customer_keys(rng, int(per_type[0])),
            _product_keys(rng, int(per_type[1])),
            _transaction_keys(rng, int(per_type[2])),
        ]
    )
    codes = np.repeat(np.arange(len(ENTITY_TYPES), dtype=np.int8), per_type)
    order = rng.permutation(count)
    return keys.take(pa.array(order)), codes[order]


def _width(minimum: int, space: Callable[[int], int], count: int) -> int:
    width = minimum
    while space(width) < _SPARSITY * count:
        width += 1
    return width


def _unique_ints(rng: np.random.Generator, space: int, count: int) -> np.ndarray:
    """``count`` distinct integers from ``range(space)`` in random order, without materializing the space."""
    drawn = np.empty(0, dtype=np.int64)
    while len(drawn) < count:
        extra = rng.integers(0, space, size=(count - len(drawn)) * 5 // 4 + 16, dtype=np.int64)
        candidates = np.concatenate([drawn, extra])
        _, first = np.unique(candidates, return_index=True)
        drawn = candidates[np.sort(first)][:count]  # earlier draws stay first, in their order
    return drawn


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (values[:, None] // powers % 10 + ord("0")).astype(np.uint8)


def _text(text: str, rows: int) -> np.ndarray:
    return np.broadcast_to(np.frombuffer(text.encode("ascii"), dtype=np.uint8), (rows, len(text)))


def _fixed_width_strings(*parts: np.ndarray) -> pa.Array:
    """A string array from byte matrices laid side by side (every string has the same length)."""
    matrix = np.ascontiguousarray(np.hstack(parts), dtype=np.uint8)
    rows, width = matrix.shape
    offsets = np.arange(rows + 1, dtype=np.int32) * np.int32(width)
    return pa.Array.from_buffers(pa.string(), rows, [None, pa.py_buffer(offsets), pa.py_buffer(matrix)])


def _customer_keys(rng: np.random.Generator, count: int) -> pa.Array:
    width = _width(5, lambda w: 9 * 10 ** (w - 1), count)
    ids = 10 ** (width - 1) + _unique_ints(rng, 9 * 10 ** (width - 1), count)
    return _fixed_width_strings(_text("CUST-", count), _digits(ids, width))


def _product_keys(rng: np.random.Generator, count: int) -> pa.Array:
    width = _width(3, lambda w: _LETTERS**3 * 9 * 10 ** (w - 1), count)
    numbers_per_code = 9 * 10 ** (width - 1)
    ids = _unique_ints(rng, _LETTERS**3 * numbers_per_code, count)
    code = ids // numbers_per_code
    letters = (code[:, None] // _LETTERS ** np.arange(2, -1, -1) % _LETTERS + ord("A")).astype(np.uint8)
    number = 10 ** (width - 1) + ids % numbers_per_code
    return _fixed_width_strings(_text("PROD-", count), letters, _text("-", count), _digits(number, width))


def _transaction_keys(rng: np.random.Generator, count: int) -> pa.Array:
    width = _width(3, lambda w: _TXN_YEARS * (10**w - 1), count)
    per_year = 10**width - 1
    ids = _unique_ints(rng, _TXN_YEARS * per_year, count)
    year = _TXN_FIRST_YEAR + ids // per_year
    sequence = 1 + ids % per_year
    return _fixed_width_strings(_text("TXN-", count), _digits(year, 4), _text("-", count), _digits(sequence, width))


# --- the rows of one system ---------------------------------------------------------------------------

# (system, raw keys, canonical keys, entity types, location refs, last_seen_at), one entry per valid row.
_Rows = tuple[str, pa.Array, pa.Array, pa.Array, pa.Array, pa.Array]


def _valid_rows(
    rng: np.random.Generator,
    system: str,
    members: np.ndarray,
    universe: pa.Array,
    entity_codes: np.ndarray,
    as_of_seconds: int,
    history_seconds: int,
) -> _Rows:
    canonical = universe.take(pa.array(members))
    raw = _vary(rng, canonical, _STYLES[system])

    n_dup = round(len(members) * rng.uniform(*_DUPLICATE_SHARE))
    source = rng.choice(len(members), size=n_dup, replace=False)
    same_raw = pa.array(rng.random(n_dup) < _DUPLICATE_SAME_RAW)
    dup_canonical = canonical.take(pa.array(source))
    dup_raw = pc.if_else(same_raw, raw.take(pa.array(source)), _vary(rng, dup_canonical, _DUPLICATE_STYLE))

    members = np.concatenate([members, members[source]])
    raw = pa.concat_arrays([raw, dup_raw])
    canonical = pa.concat_arrays([canonical, dup_canonical])
    entity_types = pa.array(ENTITY_TYPES).take(pa.array(entity_codes[members]))

    n = len(members)
    location_weights = np.full(len(_LOCATIONS), (1 - _EMPTY_LOCATION_SHARE) / (len(_LOCATIONS) - 1))
    location_weights[0] = _EMPTY_LOCATION_SHARE
    locations = pa.array(_LOCATIONS).take(pa.array(rng.choice(len(_LOCATIONS), size=n, p=location_weights)))

    # Uniform doubles, not bounded integers: the draws do not depend on as_of or days_of_history.
    back = np.floor(rng.random(n) * history_seconds).astype(np.int64) + (1 if history_seconds else 0)
    seen = pc.cast(pa.array(as_of_seconds - back, pa.timestamp("s")), pa.string())
    seen = pc.binary_join_element_wise(pc.replace_substring(seen, " ", "T"), "+00:00", "")
    empty_share = rng.uniform(*_EMPTY_TIMESTAMP_SHARE)
    if system != AUTHORITY:
        seen = pc.if_else(pa.array(rng.random(n) < empty_share), "", seen)
    return system, raw, canonical, entity_types, locations, seen


def _vary(rng: np.random.Generator, keys: pa.Array, style: tuple[float, float, float]) -> pa.Array:
    """Rewrite some canonical keys in another raw form that normalizes back to them."""
    n = len(keys)
    for share, ops in zip(style, (_CASE_OPS, _DELIMITER_OPS, _PAD_OPS), strict=True):
        chosen = rng.random(n) < share
        which = rng.integers(0, len(ops), size=n)
        rows = np.flatnonzero(chosen)
        if len(rows) == 0:
            continue
        # Group the chosen rows by operation, rewrite each group, then put the results back in row order.
        order = np.argsort(which[rows], kind="stable")
        grouped = rows[order]
        bounds = np.searchsorted(which[grouped], np.arange(len(ops) + 1))
        rewritten = pa.concat_arrays(
            [
                op(keys.take(pa.array(grouped[bounds[i] : bounds[i + 1]])))
                for i, op in enumerate(ops)
                if bounds[i + 1] > bounds[i]
            ]
        )
        keys = pc.replace_with_mask(keys, pa.array(chosen), rewritten.take(pa.array(np.argsort(order))))
    return keys


def _corrupt_rows(rng: np.random.Generator, rows: _Rows, count: int, kind: str) -> list[bytes]:
    """``count`` encoded lines a reader must reject, each made from a random valid row of the system."""
    system, raw, _, entity_types, locations, seen = rows
    if count == 0 or len(raw) == 0:
        return []
    picks = pa.array(rng.integers(0, len(raw), size=count))
    kinds = rng.integers(0, len(CORRUPTIONS), size=count)
    columns = [c.take(picks).to_pylist() for c in (raw, entity_types, locations, seen)]
    lines = []
    for corruption, key, entity_type, location, last_seen in zip(
        (CORRUPTIONS[k] for k in kinds), *columns, strict=True
    ):
        fields = [system, _corrupt_key(rng, corruption, key), entity_type, location, last_seen]
        if corruption != "field_count":
            text = _csv_line(fields) if kind == "csv" else _json_line(fields)
        elif kind == "csv":
            text = _csv_line(_wrong_field_count(rng, fields))
        else:
            text = _truncated_json_line(rng, fields)
        lines.append(text.encode("utf-8", "surrogateescape"))
    return lines


def _corrupt_key(rng: np.random.Generator, corruption: str, key: str) -> str:
    position = 1 + int(rng.integers(0, max(len(key) - 1, 1)))
    if corruption == "control_char":
        return key[:position] + _CONTROL_CHARS[rng.integers(0, len(_CONTROL_CHARS))] + key[position:]
    if corruption == "not_utf8":
        return key[:position] + _NOT_UTF8[rng.integers(0, len(_NOT_UTF8))] + key[position:]
    if corruption == "empty_key":
        return ""
    if corruption == "too_long":
        length = int(rng.integers(MAX_KEY_LENGTH + 1, MAX_KEY_LENGTH + 145))
        filler = _LONG_KEY_ALPHABET[rng.integers(0, len(_LONG_KEY_ALPHABET), size=max(length - len(key) - 1, 1))]
        return f"{key}-{filler.tobytes().decode('ascii')}"
    return key  # field_count: the key is fine, the row is not


def _wrong_field_count(rng: np.random.Generator, fields: list[str]) -> list[str]:
    choice = rng.integers(0, 3)
    if choice == 0:
        return fields[:4]  # last_seen_at missing
    if choice == 1:
        return fields[:3]
    return [*fields, "EXTRA"]


def _truncated_json_line(rng: np.random.Generator, fields: list[str]) -> str:
    """A JSON object cut short right after a complete member: malformed, and no quote is left open."""
    members = int(rng.integers(2, len(COLUMNS)))  # keeps source_key, never all of them
    record = json.dumps(dict(zip(COLUMNS[:members], fields[:members], strict=True)), ensure_ascii=False)
    return record[:-1] + ",\n"


# --- writing ------------------------------------------------------------------------------------------


def _csv_line(fields: Sequence[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(fields)
    return buffer.getvalue()


def _json_line(fields: Sequence[str]) -> str:
    return json.dumps(dict(zip(COLUMNS, fields, strict=True)), ensure_ascii=False) + "\n"


def _valid_lines(rows: _Rows, kind: str) -> pa.Array:
    """One line per valid row, built column-wise; byte for byte what csv.writer / json.dumps give."""
    system, raw, _, entity_types, locations, seen = rows
    if kind == "csv":
        # Only the key can hold characters that need quoting; generated keys never do, but stay exact.
        key = _quoted(raw, raw, r'[,"\r\n]', lambda k: _csv_line([k])[:-1])
        line = pc.binary_join_element_wise(system, key, entity_types, locations, seen, ",")
        return pc.binary_join_element_wise(line, "\n", "")
    plain = pc.binary_join_element_wise('"', raw, '"', "")
    key = _quoted(raw, plain, r'["\\\x00-\x1f]', json.dumps)
    return pc.binary_join_element_wise(
        '{"source_system": "',
        system,
        '", "source_key": ',
        key,
        ', "entity_type": "',
        entity_types,
        '", "location_ref": "',
        locations,
        '", "last_seen_at": "',
        seen,
        '"}\n',
        "",
    )


def _quoted(raw: pa.Array, plain: pa.Array, pattern: str, quote: Callable[[str], str]) -> pa.Array:
    """``plain``, except where ``raw`` matches ``pattern``: there ``quote(raw)``, row by row (rare)."""
    mask = pc.match_substring_regex(raw, pattern)
    if not pc.any(mask).as_py():
        return plain
    return pc.replace_with_mask(plain, mask, pa.array([quote(v) for v in raw.filter(mask).to_pylist()]))


def _write_lines(fh: BinaryIO, lines: pa.LargeBinaryArray) -> None:
    """Write the bytes of every line, in order, straight from the array's data buffer."""
    if len(lines) == 0:
        return
    _, offsets, data = lines.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int64)[lines.offset : lines.offset + len(lines) + 1]
    if data is not None and bounds[-1] > bounds[0]:
        fh.write(memoryview(data)[int(bounds[0]) : int(bounds[-1])])

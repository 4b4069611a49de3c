"""The sandbox's rows: how one row of a system's export is held, changed, classified and generated.

A row is a list of strings ``[key, entity_type, location_ref, last_seen_at]``. The event store keeps JSON text,
which cannot hold bytes that are not UTF-8, so a key holding such bytes (corruption injection) is kept as
``[shown_key, entity_type, location_ref, last_seen_at, key_bytes_hex]``: the fifth field holds the exact bytes,
the first their printable form (``\\xff`` for the byte 0xFF), which is also how users name such a key.

In memory, and in the files, such a key is a ``str`` with surrogate escapes (``"\\udcff"`` for 0xFF), exactly as
the reader (``keysync.infrastructure.sources``) decodes it; ``file_key`` gives that form.

A change is a diff of positioned rows, ``[system, index, *row]``: ``removed`` indexes count in the rows before the
change, ``added`` ones in the rows after it. Applying the diff with the two lists swapped undoes it exactly, rows
back in their places, which is what undo and redo rely on.
"""

from __future__ import annotations

import fnmatch
import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from keysync.domain.keys import CONTROL, key_problem
from keysync.domain.observations import SYSTEMS, RejectedRow, SourceSnapshot

Row = list[str]
Entry = list  # [system, index, *row]: a row and its position in its system

# What makes a key unusable is keysync.domain.keys' to say, for the reader and the sandbox alike; every file the
# sandbox writes is read back with the real reader and compared, so a divergence between what the sandbox predicts
# and what the reader does fails the operation instead of going unseen.
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, as surrogateescape decodes them
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# entity_type, location_ref and last_seen_at are the sandbox's own; a state file may not smuggle in anything that
# would make the reader see another row than the sandbox holds.
_FIELD_PROBLEM = re.compile(r'[\x00-\x1f\x7f-\x9f",]')
_CANONICAL_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")

ENTITY_PREFIXES = {"CUST": "customer", "PROD": "product", "TXN": "transaction"}
VARIANTS = ("lower", "upper", "spaces", "delims", "pad", "corrupt")
CORRUPTIONS = ("control", "empty", "long", "bytes")
DEFAULT_KEYS, DEFAULT_SEED = 1000, 42  # what sandbox init generates unless told otherwise: keys per system, seed
_DELIMITERS = "-_./:| "
_BASELINE_END = datetime(2026, 1, 1, tzinfo=UTC)
_LOCATIONS = ("", "WH-01", "WH-02", "WH-03", "REGION-EU", "REGION-US")


class InvalidRowError(ValueError):
    """A row that cannot be held (not strings, a bad timestamp, a lone surrogate that is not a byte...)."""


# ---- one row ----------------------------------------------------------------------------------------------


def make_row(key: str, entity_type: str = "", location_ref: str = "", last_seen_at: str = "") -> Row:
    """A row for ``key`` as the files would hold it (a str, possibly with surrogate-escaped bytes)."""
    if _UNDECODABLE.search(key):
        raw = key.encode("utf-8", "surrogateescape")
        return [shown(key), entity_type, location_ref, last_seen_at, raw.hex()]
    if _LONE_SURROGATE.search(key):
        raise InvalidRowError(f"key {shown(key)!r} holds a lone surrogate that is not a byte")
    return [key, entity_type, location_ref, last_seen_at]


def file_key(row: Sequence[str]) -> str:
    """The key as it goes into the file: with surrogate escapes for bytes that are not UTF-8."""
    if len(row) > 4:
        return bytes.fromhex(row[4]).decode("utf-8", "surrogateescape")
    return row[0]


def shown(key: str) -> str:
    """A key with its undecodable bytes written as \\xNN (how the reader shows them too)."""
    return _UNDECODABLE.sub(lambda m: f"\\x{ord(m.group()) - 0xDC00:02x}", key)


def entity_type_of(key: str) -> str:
    prefix = re.split(r"[-_./:| ]", key.strip().upper(), maxsplit=1)[0]
    return ENTITY_PREFIXES.get(prefix, "")


def checked_rows(values: object) -> list[Row]:
    """Rows read from outside (a state file), checked: lists of four strings, or five with the key's bytes in hex;
    InvalidRowError if any is not. Whole-column checks first, so a clean state costs little per row."""
    if not isinstance(values, list):
        raise InvalidRowError("not a list of rows")
    odd = {i for i, value in enumerate(values) if type(value) is not list or len(value) != 4}
    plain = [value for i, value in enumerate(values) if i not in odd] if odd else values
    keys = "".join(row[0] for row in plain if type(row[0]) is str)
    others = "".join(f for row in plain for f in row[1:3] if type(f) is str)
    if (
        not all(type(f) is str for row in plain for f in row)
        or _LONE_SURROGATE.search(keys)
        or _FIELD_PROBLEM.search(others)
        or _LONE_SURROGATE.search(others)
    ):
        return [checked_row(value) for value in values]  # find the culprit, row by row
    for stamp in {row[3] for row in plain}:  # few distinct values
        _check_field(stamp, timestamp=True)
    return [checked_row(value) if i in odd else list(value) for i, value in enumerate(values)]


def checked_row(value: object) -> Row:
    """One row read from outside, checked (see ``checked_rows``)."""
    if not isinstance(value, list) or len(value) not in (4, 5) or not all(isinstance(v, str) for v in value):
        raise InvalidRowError(f"not a row of 4 or 5 strings: {str(value)[:80]}")
    for field in value[1:3]:
        _check_field(field)
    _check_field(value[3], timestamp=True)
    if len(value) == 5:
        try:
            key = bytes.fromhex(value[4]).decode("utf-8", "surrogateescape")
        except ValueError as error:
            raise InvalidRowError(f"key bytes {value[4][:40]!r} are not hex") from error
        return make_row(key, *value[1:4])
    if _LONE_SURROGATE.search(value[0]):
        raise InvalidRowError(f"key {shown(value[0])[:40]!r} holds a lone surrogate")
    return list(value)


def _check_field(field: str, *, timestamp: bool = False) -> None:
    if _FIELD_PROBLEM.search(field) or _LONE_SURROGATE.search(field):
        raise InvalidRowError(f"field {field[:40]!r} holds a control character, a quote or a comma")
    if timestamp and field and not _valid_timestamp(field):
        raise InvalidRowError(f"last_seen_at {field[:40]!r} is not YYYY-MM-DDTHH:MM:SS+00:00")


def _valid_timestamp(text: str) -> bool:
    if not _CANONICAL_UTC.fullmatch(text):
        return False
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


# ---- what the reader makes of rows ------------------------------------------------------------------------


def row_problem(row: Sequence[str], max_key_length: int) -> str:
    """Why the reader rejects this row ("" if it accepts it), in the reader's words."""
    if len(row) > 4:
        return "key is not valid UTF-8"
    return key_problem(row[0], max_key_length) or ""


def snapshot(system: str, rows: Sequence[Sequence[str]], max_key_length: int, file: str = "") -> SourceSnapshot:
    """What ``read_source`` returns for the file the sandbox writes from ``rows``: accepted rows, rejected ones."""
    keys = [row[0] for row in rows]
    problems = _problems(rows, keys, max_key_length)
    lines = _lines(keys)
    kept = [i for i in range(len(rows)) if i not in problems] if problems else range(len(rows))
    return SourceSnapshot.of(
        system,
        file,
        len(rows),
        [keys[i] for i in kept],
        [rows[i][1] for i in kept],
        [rows[i][2] for i in kept],
        [rows[i][3] for i in kept],
        [lines[i] for i in kept],
        [RejectedRow(system, file, lines[i], "error", reason, shown(keys[i])[:200]) for i, reason in problems.items()],
    )


def _problems(rows: Sequence[Sequence[str]], keys: list[str], max_key_length: int) -> dict[int, str]:
    """Rejected rows by index, with the reason. Whole-column checks at C speed first: clean rows cost no Python."""
    suspects: set[int] = set()
    if rows and max(map(len, rows)) > 4:
        suspects.update(i for i, row in enumerate(rows) if len(row) > 4)
    if CONTROL.search("".join(keys)):
        suspects.update(i for i, key in enumerate(keys) if CONTROL.search(key))
    if not all(map(str.strip, keys)):
        suspects.update(i for i, key in enumerate(keys) if not key.strip())
    if keys and max(map(len, keys)) > max_key_length:
        suspects.update(i for i, key in enumerate(keys) if len(key) > max_key_length)
    return {i: row_problem(rows[i], max_key_length) for i in sorted(suspects)}


def _lines(keys: list[str]) -> Sequence[int]:
    """Each row's physical line in the file: a key's quoted line break pushes the rows after it down."""
    if not _LINE_BREAK.search("".join(keys)):
        return range(2, len(keys) + 2)
    lines, line = [], 2  # the header is line 1
    for key in keys:
        lines.append(line)
        line += 1 + len(_LINE_BREAK.findall(key))
    return lines


# ---- choosing and changing rows ---------------------------------------------------------------------------


def key_matcher(keys: Iterable[str], patterns: Sequence[str]) -> Callable[[str], bool]:
    """Whether a key is one of ``keys`` or matches one of the glob ``patterns`` (case-sensitive, like the keys)."""
    wanted = set(keys)
    if not patterns:
        return wanted.__contains__
    glob = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns), re.DOTALL)
    return lambda key: key in wanted or glob.match(key) is not None


def variant(key: str, kind: str, *, corruption: str = "control", max_key_length: int = 256) -> str:
    """A formatting variation of ``key`` (normalization testing) or a corrupted form (rejection testing).

    lower/upper: the case; spaces: surrounded by spaces; delims: another delimiter (or a trailing one);
    pad: digit runs without their leading zeros (equal again only under normalize.pad_numbers);
    corrupt: control (an ESC), empty, long (one character over max_key_length), bytes (0xFF, not UTF-8).
    """
    if kind == "lower":
        return key.lower()
    if kind == "upper":
        return key.upper()
    if kind == "spaces":
        return f"  {key} "
    if kind == "delims":
        present = [d for d in _DELIMITERS if d in key]
        if not present:
            return key + "_"
        replacement = next(d for d in "_./-" if d not in present)
        return re.sub(f"[{re.escape(''.join(present))}]", replacement, key)
    if kind == "pad":
        return re.sub(r"\d+", lambda m: m.group().lstrip("0") or "0", key)
    if kind == "corrupt":
        if corruption == "control":
            return key + "\x1b"
        if corruption == "empty":
            return ""
        if corruption == "long":
            return key + "X" * max(1, max_key_length + 1 - len(key))
        if corruption == "bytes":
            return key + "\udcff"
        raise ValueError(f"unknown corruption {corruption!r}: expected one of {', '.join(CORRUPTIONS)}")
    raise ValueError(f"unknown variant {kind!r}: expected one of {', '.join(VARIANTS)}")


# ---- diffs ------------------------------------------------------------------------------------------------


def apply_diff(rows: dict[str, list[Row]], removed: Sequence[Entry], added: Sequence[Entry]) -> None:
    """Apply a diff in place: drop the removed positions (in the old rows), then insert the added rows at their
    positions (in the new rows). O(rows), however many entries."""
    drops: dict[str, set[int]] = defaultdict(set)
    for entry in removed:
        drops[entry[0]].add(entry[1])
    for system, drop in drops.items():
        old = rows[system]
        rows[system] = [] if len(drop) == len(old) else [row for i, row in enumerate(old) if i not in drop]
    inserts: dict[str, list[Entry]] = defaultdict(list)
    for entry in added:
        inserts[entry[0]].append(entry)
    for system, entries in inserts.items():
        rows[system] = _inserted(rows[system], entries)


def _inserted(old: list[Row], entries: list[Entry]) -> list[Row]:
    first = entries[0][1]
    if first <= len(old) and [e[1] for e in entries] == list(range(first, first + len(entries))):
        # One block (an append, a whole new set of rows): the usual case, spliced in at C speed.
        return [*old[:first], *(e[2:] for e in entries), *old[first:]]
    at = {e[1]: e[2:] for e in entries}
    rest = iter(old)
    return [at[i] if i in at else next(rest) for i in range(len(old) + len(at))]


def replacement(rows: Mapping[str, Sequence[Row]], new: Mapping[str, Sequence[Row]]) -> tuple[list, list]:
    """The diff that replaces every system's rows by ``new``'s."""
    removed = [[s, i, *row] for s in SYSTEMS for i, row in enumerate(rows.get(s, ()))]
    added = [[s, i, *row] for s in SYSTEMS for i, row in enumerate(new.get(s, ()))]
    return removed, added


def entry_row(entry: Entry) -> Row:
    return list(entry[2:])


# ---- a synchronised baseline ------------------------------------------------------------------------------


def baseline(count: int, seed: int) -> list[Row]:
    """``count`` distinct keys in their canonical form (normalization leaves them as they are), sorted, the same
    for a given seed on any machine: customers (CUST-00042), products (PROD-ABC-042), transactions
    (TXN-2024-0042), with an entity type, a location and a last-seen time within the 30 days before 2026."""
    rng = random.Random(seed)
    kinds = rng.choices(range(3), weights=(6, 3, 1), k=count)
    wanted = [kinds.count(k) for k in range(3)]
    width = max(5, len(str(8 * max(wanted))))  # ids drawn from a space 8x larger: they look scattered
    customers = (f"CUST-{n:0{width}d}" for n in rng.sample(range(1, 10**width), wanted[0]))
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    products = (
        f"PROD-{letters[n // 26**2 % 26]}{letters[n // 26 % 26]}{letters[n % 26]}-{n // 26**3:0{width - 2}d}"
        for n in rng.sample(range(26**3 * 10 ** (width - 2)), wanted[1])
    )
    transactions = (
        f"TXN-{2019 + n % 7}-{n // 7:0{width - 1}d}" for n in rng.sample(range(7 * 10 ** (width - 1)), wanted[2])
    )
    keyed = [*((k, "customer") for k in customers), *((k, "product") for k in products)]
    keyed += ((k, "transaction") for k in transactions)
    keyed.sort()
    seconds = rng.choices(range(30 * 86_400), k=count)
    places = rng.choices(_LOCATIONS, k=count)
    return [
        [key, entity, place, (_BASELINE_END - timedelta(seconds=s)).isoformat()]
        for (key, entity), place, s in zip(keyed, places, seconds, strict=True)
    ]

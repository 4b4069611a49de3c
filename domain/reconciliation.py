"""Reconciliation: compare each downstream system's normalized keys with System A's, column by column.

Keys compare as unique normalized keys per system. For a downstream system S:
matched = |S and A|, missing_in_A = S - A (out of authority), missing_from_system = A - S (propagation gap),
match_rate = matched / |S union A|. Duplicates are normalized keys that occur more than once in one system.

How, at a million keys per system: every available system's normalized keys are dictionary-encoded together,
so each distinct key gets one integer code. From then on a system is a count per code, and its keys, its
discrepancies and its duplicates are numpy masks over the codes. Only what is shown is sorted: the discrepancies
and duplicates, not every key (sorting a dictionary of a million keys costs a third of the comparison, and
more than that at ten million). Python sees only the rows already known to be special: the rows of duplicated
keys (their raw forms) and the rows whose key normalized away (rejected).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from keysync.domain.normalization import (
    NormalizationRules,
    keys_that_lost_letters,
    letter_loss_candidates,
    normalize_array,
)
from keysync.domain.observations import AUTHORITY, SYSTEMS, RejectedRow, SourceSnapshot

STRATEGIES = ("mirror", "namespaced")
KEY_COLUMNS = ("normalized_key", "source_key", "entity_type", "last_seen_at", "occurrences")
DUPLICATE_COLUMNS = ("normalized_key", "occurrences", "source_keys")
_STRING = pa.string()
WIDE_TEXT = 2**31  # bytes of keys from which their dictionary takes 64-bit offsets


def master_key_for(system: str, normalized_key: str, strategy: str) -> str:
    """The master key proposed for an out-of-authority key: mirror it, or namespace it by system."""
    if strategy == "namespaced":
        return f"A-{system}-{normalized_key}"
    return normalized_key


def _no_keys() -> pa.Table:
    return pa.table({c: pa.array([], pa.int64() if c == "occurrences" else _STRING) for c in KEY_COLUMNS})


def _no_duplicates() -> pa.Table:
    return pa.table({c: pa.array([], pa.int64() if c == "occurrences" else _STRING) for c in DUPLICATE_COLUMNS})


@attrs.frozen
class Keys:
    """A system's distinct normalized keys, as codes into the reconciliation's dictionary (in no particular order),
    with where
    each one's values are: its first row, how many rows hold it, and (for a key several rows hold) its latest
    last_seen_at. Tables of them are built only for the keys asked for: a report needs its discrepancies' values,
    not every key's."""

    dictionary: pa.Array
    codes: np.ndarray
    first_rows: np.ndarray
    occurrences: np.ndarray
    latest: Mapping[int, str]  # code -> the latest last_seen_at among its rows, for codes held by several rows
    snapshot: SourceSnapshot

    def __len__(self) -> int:
        return len(self.codes)

    def names(self) -> pa.Array:
        """Every key, in no particular order."""
        return self.dictionary.take(pa.array(self.codes)).cast(_STRING)

    def table(self, mask: np.ndarray | None = None) -> pa.Table:
        """KEY_COLUMNS of every key, or of the keys ``mask`` selects, sorted by key."""
        at = np.arange(len(self.codes)) if mask is None else np.flatnonzero(mask)
        names = self.dictionary.take(pa.array(self.codes[at])).cast(_STRING)
        order = pc.sort_indices(names)
        names, at = names.take(order), at[order.to_numpy()]
        codes, occurrences, rows = self.codes[at], self.occurrences[at], pa.array(self.first_rows[at])
        snapshot = self.snapshot
        seen = _text(snapshot.last_seen_at).take(rows)
        if self.latest:
            at = np.flatnonzero(np.isin(codes, np.fromiter(self.latest, dtype=np.int64, count=len(self.latest))))
            if len(at):
                first = seen.take(pa.array(at)).to_pylist()
                values = [self.latest[c] or f for c, f in zip(codes[at].tolist(), first, strict=True)]
                replace = np.zeros(len(codes), dtype=bool)
                replace[at] = True
                seen = pc.replace_with_mask(seen, pa.array(replace), pa.array(values, _STRING))
        return pa.table(
            [names, _text(snapshot.keys).take(rows), _text(snapshot.entity_types).take(rows), seen,
             pa.array(occurrences, pa.int64())],
            names=list(KEY_COLUMNS),
        )  # fmt: skip


@attrs.frozen
class SystemResult:
    """One system's side of a reconciliation. An unavailable system has ``snapshot`` None and no diffs.

    ``keys``: the system's distinct normalized keys, sorted, each with the raw key and entity type of its first
    row, its latest last_seen_at (ISO 8601 in UTC compares as text) and how many rows hold it (KEY_COLUMNS).
    ``missing_in_a`` holds the rows of ``keys`` that System A lacks; ``missing_from_system`` the rows of A's
    ``keys`` this system lacks (A's raw key, entity type and last seen). ``duplicates``: the keys held by more
    than one row, with every raw form in file order, joined by " | " ("CUST-1 | cust-1 (x2)")."""

    system: str
    snapshot: SourceSnapshot | None
    unavailable_reason: str = ""
    found: Keys | None = None
    rejected: list[RejectedRow] = attrs.field(factory=list)  # reader rejections plus empty-after-normalization
    duplicates: pa.Table = attrs.field(factory=_no_duplicates)
    missing_in_a: pa.Table = attrs.field(factory=_no_keys)
    missing_from_system: pa.Table = attrs.field(factory=_no_keys)

    @property
    def available(self) -> bool:
        return self.snapshot is not None

    @property
    def keys(self) -> pa.Table:
        return self.found.table() if self.found is not None else _no_keys()

    @property
    def unique_keys(self) -> int:
        return len(self.found) if self.found is not None else 0

    @property
    def rows_rejected(self) -> int:
        return sum(1 for r in self.rejected if r.severity == "error")

    @property
    def matched(self) -> int:
        return self.unique_keys - self.missing_in_a.num_rows

    @property
    def match_rate(self) -> float:
        union = self.unique_keys + self.missing_from_system.num_rows
        return self.matched / union if union else 1.0

    def key_array(self) -> pa.Array:
        """The system's normalized keys, in no particular order, as Arrow strings."""
        return self.found.names() if self.found is not None else pa.array([], _STRING)

    def key_list(self) -> list[str]:
        """The system's normalized keys, in no particular order, as Python strings."""
        return self.found.names().to_pylist() if self.found is not None else []

    def missing_in_a_keys(self) -> list[str]:
        return self.missing_in_a["normalized_key"].to_pylist()

    def missing_from_system_keys(self) -> list[str]:
        return self.missing_from_system["normalized_key"].to_pylist()

    def duplicate_keys(self) -> list[str]:
        return self.duplicates["normalized_key"].to_pylist()


# The out-of-authority keys of a run, one row per proposed master key: its normalized key, its source systems
# ("B|D", in A-E order) and its first raw form (from the first system in A-E order).
OUT_OF_AUTHORITY = ("master_key", "normalized_key", "systems", "source_key")
_OUT_OF_AUTHORITY_SCHEMA = pa.schema([(name, _STRING) for name in OUT_OF_AUTHORITY])


def out_of_authority_table(rows: Sequence[Sequence[str]] = ()) -> pa.Table:
    """A table of out-of-authority keys from [master_key, normalized_key, systems, source_key] rows."""
    return pa.table([pa.array([r[i] for r in rows], _STRING) for i in range(4)], names=list(OUT_OF_AUTHORITY))


@attrs.frozen
class Reconciliation:
    rules: NormalizationRules
    strategy: str
    systems: dict[str, SystemResult]
    # Per available system (A-E order), the raw keys that may lose letters (normalization.letter_loss_candidates),
    # found while the keys were normalized, so that the rows need not be read again; empty unless the rules drop
    # letters.
    unusual: Mapping[str, list[str]] = attrs.Factory(dict)

    @property
    def authority(self) -> SystemResult:
        return self.systems[AUTHORITY]

    @property
    def downstream(self) -> list[SystemResult]:
        return [r for s, r in self.systems.items() if s != AUTHORITY]

    @property
    def available_systems(self) -> set[str]:
        return {s for s, r in self.systems.items() if r.available}

    def out_of_authority(self) -> pa.Table:
        """The out-of-authority keys (``OUT_OF_AUTHORITY``) over every available downstream system, in the order
        first met (systems in A-E order, each one's missing keys in key order).

        Worked out in Arrow and numpy, as a run meets millions of them: the master keys are encoded once (codes in
        the order first met, so each code's first row is where the running maximum of the codes grows), and the
        systems holding a master key are bits (a master key occurs once in a system). A namespaced master key
        names its system: no two systems share one, and there is nothing to merge."""
        shown = [r for r in self.downstream if r.missing_in_a.num_rows]
        if not shown:
            return out_of_authority_table()
        if self.strategy == "namespaced":
            parts = [
                pa.table(
                    [
                        pc.binary_join_element_wise(f"A-{r.system}-", r.missing_in_a["normalized_key"], ""),
                        r.missing_in_a["normalized_key"],
                        pa.nulls(r.missing_in_a.num_rows, _STRING).fill_null(r.system),
                        r.missing_in_a["source_key"],
                    ],
                    names=list(OUT_OF_AUTHORITY),
                )
                for r in shown
            ]
            return pa.concat_tables([p.cast(_OUT_OF_AUTHORITY_SCHEMA) for p in parts])
        masters = [r.missing_in_a["normalized_key"] for r in shown]  # mirrored: the normalized keys themselves
        encoded = pc.dictionary_encode(pa.chunked_array([c for m in masters for c in m.chunks], _STRING))
        codes = np.concatenate([c.indices.to_numpy(zero_copy_only=False) for c in encoded.chunks])
        held = np.zeros(len(encoded.chunk(0).dictionary), dtype=np.uint64)
        bounds = np.cumsum([0, *(len(m) for m in masters)])
        for i, r in enumerate(shown):
            held[codes[bounds[i] : bounds[i + 1]]] |= np.uint64(1 << SYSTEMS.index(r.system))
        firsts = pa.array(np.flatnonzero(np.diff(np.maximum.accumulate(codes), prepend=-1) > 0))
        raws = pa.chunked_array([c for r in shown for c in r.missing_in_a["source_key"].chunks], _STRING)
        combos, bits = np.unique(held, return_inverse=True)  # few: the combinations of systems met
        names = pa.array(["|".join(s for i, s in enumerate(SYSTEMS) if b >> i & 1) for b in combos.tolist()], _STRING)
        unique = encoded.chunk(0).dictionary.cast(_STRING)
        return pa.table(
            [unique, unique, names.take(pa.array(bits.astype(np.int32))), raws.take(firsts).combine_chunks()],
            names=list(OUT_OF_AUTHORITY),
        ).cast(_OUT_OF_AUTHORITY_SCHEMA)

    def keys_that_lost_letters(self) -> list[str]:
        """The distinct raw keys, over the available systems in A-E order, from which strip_non_alnum dropped a
        letter or digit that normalize.ascii_fold or normalize.letters "unicode" would have kept."""
        found: dict[str, None] = {}
        if not self.rules.drops_letters:
            return []
        for unusual in self.unusual.values():
            found.update(dict.fromkeys(keys_that_lost_letters(unusual, self.rules)))
        return list(found)

    def totals(self) -> dict[str, int]:
        return {
            "missing_in_A_count": sum(r.missing_in_a.num_rows for r in self.downstream),
            "missing_from_system_count": sum(r.missing_from_system.num_rows for r in self.downstream),
            "duplicate_keys_count": sum(r.duplicates.num_rows for r in self.systems.values()),
            "rows_rejected_count": sum(r.rows_rejected for r in self.systems.values()),
        }


@attrs.frozen
class PreparedKeys:
    """One snapshot's keys normalized, and its raw keys that may lose letters (None: not looked for): what
    reconcile needs of a snapshot's rows before it compares them, worked out as soon as they are read."""

    normalized: pa.Array
    unusual: list[str] | None


def prepare(snapshot: SourceSnapshot, rules: NormalizationRules, since: pa.Array | None = None) -> PreparedKeys:
    """``since``: the keys, normalized under ``rules``, of the rows that ``snapshot.delta`` is a delta on; then only
    the keys of the rows added are normalized."""
    raw = _text(snapshot.keys)
    delta = snapshot.delta
    if since is not None and delta is not None:
        from keysync.domain.run import spliced_column

        added = normalize_array(raw.take(pa.array(delta.added_at, pa.int64())), rules).cast(since.type)
        normalized = spliced_column(since, delta.removed, added, delta.added_at)
    else:
        normalized = normalize_array(raw, rules)
    return PreparedKeys(normalized, letter_loss_candidates(raw) if rules.drops_letters else None)


def reconcile(
    snapshots: Mapping[str, SourceSnapshot | None],
    rules: NormalizationRules,
    strategy: str = "mirror",
    *,
    unavailable_reasons: Mapping[str, str] | None = None,
    between_steps: Callable[[], object] = lambda: None,
    prepared: MutableMapping[str, PreparedKeys] | None = None,
) -> Reconciliation:
    """Classify every system's keys against System A's. ``snapshots[s]`` is None for an unavailable system.
    ``between_steps`` is called after each step that read a snapshot's columns: a caller keeping the rows in
    memory-mapped files gives back the pages the step touched (keysync.infrastructure.spill). ``prepared``: the
    keys of some snapshots already prepared (``prepare``) under these rules, taken over: each is removed from it
    once used, so that the comparison alone holds them and lets them go when their codes stand for them."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}")
    reasons = unavailable_reasons or {}
    read = {s: snapshot for s in SYSTEMS if (snapshot := snapshots.get(s)) is not None}
    normalized: dict[str, pa.Array] = {}
    unusual: dict[str, list[str]] = {}  # the raw keys that may lose letters: looked for while the keys are at hand
    for system, snapshot in read.items():
        keys = prepared.pop(system, None) if prepared is not None else None
        if keys is None:
            keys = prepare(snapshot, rules)
            between_steps()
        normalized[system] = keys.normalized
        if keys.unusual is not None:
            unusual[system] = keys.unusual
    coded = _Codes.of(normalized)
    del normalized  # the codes stand for them now
    results: dict[str, SystemResult] = {
        s: SystemResult(s, None, reasons.get(s, "not read")) for s in SYSTEMS if s not in read
    }
    holds: dict[str, np.ndarray] = {}  # system -> whether it holds each code (a byte per distinct key)
    for system, snapshot in read.items():
        counts = coded.counts(system)
        results[system] = _index(system, snapshot, coded, counts)
        holds[system] = counts > 0
        between_steps()
    authority = holds.get(AUTHORITY, np.zeros(coded.size, dtype=bool))
    for system in read:
        result = results[system]
        if system == AUTHORITY or result.found is None:
            continue
        gaps = _no_keys()
        if AUTHORITY in read and (a := results[AUTHORITY].found) is not None:
            gaps = a.table(~holds[system][a.codes])
        results[system] = attrs.evolve(result, missing_in_a=result.found.table(~authority[result.found.codes]),
                                       missing_from_system=gaps)  # fmt: skip
        between_steps()
    return Reconciliation(rules=rules, strategy=strategy, systems={s: results[s] for s in SYSTEMS}, unusual=unusual)


@attrs.frozen
class _Codes:
    """Every system's normalized keys as integer codes into one shared dictionary of distinct keys."""

    dictionary: pa.Array
    codes: dict[str, np.ndarray]  # system -> one code per row
    empty: int  # the code of "" (a key that normalized away), -1 if none did

    @property
    def size(self) -> int:
        return len(self.dictionary)

    @classmethod
    def of(cls, normalized: Mapping[str, pa.Array]) -> _Codes:
        if not normalized:
            return cls(pa.array([], _STRING), {}, -1)
        # Encoded as chunks of one array: one dictionary for all, without copying the keys into one array first.
        # 64-bit offsets only when the keys' text could pass 2 GiB (about 100M keys): 32-bit ones are faster.
        kind = pa.large_string() if sum(a.nbytes for a in normalized.values()) >= WIDE_TEXT else _STRING
        encoded = pc.dictionary_encode(pa.chunked_array([a.cast(kind) for a in normalized.values()], kind))
        if not encoded.num_chunks:  # no keys at all (Arrow drops empty chunks)
            return cls(pa.array([], _STRING), {s: np.zeros(0, np.int32) for s in normalized}, -1)
        dictionary = encoded.chunk(0).dictionary
        codes = np.concatenate([c.indices.to_numpy(zero_copy_only=False) for c in encoded.chunks])
        bounds = np.cumsum([0, *map(len, normalized.values())])
        per_system = {s: codes[bounds[i] : bounds[i + 1]] for i, s in enumerate(normalized)}
        empty = pc.index(dictionary, "").as_py()
        return cls(dictionary, per_system, empty)

    def counts(self, system: str) -> np.ndarray:
        """How many of the system's rows hold each code; the empty key counts for none (its rows are rejected)."""
        counts = np.bincount(self.codes[system], minlength=self.size)
        if self.empty >= 0:
            counts[self.empty] = 0
        return counts


def _index(system: str, snapshot: SourceSnapshot, coded: _Codes, counts: np.ndarray) -> SystemResult:
    codes = coded.codes[system]
    mine = np.flatnonzero(counts > 0)  # the system's codes
    first_row = np.full(coded.size, len(codes), dtype=np.int32)  # 32 bits: an export holds < 2**31 rows
    np.minimum.at(first_row, codes, np.arange(len(codes), dtype=np.int32))  # each code's first row, fast
    latest: dict[int, str] = {}
    duplicates = _no_duplicates()
    if (counts[mine] > 1).any():
        latest, duplicates = _duplicated(codes, counts, mine, coded.dictionary, snapshot)
    found = Keys(coded.dictionary, mine, first_row[mine], counts[mine].astype(np.int32), latest, snapshot)
    emptied = np.flatnonzero(codes == coded.empty) if coded.empty >= 0 else np.zeros(0, dtype=np.int64)
    return SystemResult(
        system=system,
        snapshot=snapshot,
        found=found,
        rejected=_rejected(system, snapshot, emptied),
        duplicates=duplicates,
    )


def _duplicated(
    codes: np.ndarray, counts: np.ndarray, mine: np.ndarray, dictionary: pa.Array, snapshot: SourceSnapshot
) -> tuple[dict[int, str], pa.Table]:
    """The latest last_seen_at of each duplicated key, and the duplicates table. Only the duplicated keys' rows are
    visited in Python."""
    at = pa.array(np.flatnonzero(counts[codes] > 1))  # the rows of duplicated keys, in file order
    dup_codes = codes[at.to_numpy()].tolist()
    raw, seen = _text(snapshot.keys).take(at).to_pylist(), _text(snapshot.last_seen_at).take(at).to_pylist()
    forms: dict[int, Counter[str]] = {}
    newest: dict[int, str] = {}
    for code, key, when in zip(dup_codes, raw, seen, strict=True):
        if code not in forms:
            forms[code] = Counter()
            newest[code] = ""
        forms[code][key] += 1
        if when > newest[code]:
            newest[code] = when
    duplicated = mine[counts[mine] > 1]
    names = dictionary.take(pa.array(duplicated)).cast(_STRING)
    order = pc.sort_indices(names).to_numpy()
    duplicated = duplicated[order]
    table = pa.table(
        {
            "normalized_key": names.take(pa.array(order)),
            "occurrences": pa.array(counts[duplicated], pa.int64()),
            "source_keys": pa.array([_raw_forms(forms[c]) for c in duplicated.tolist()], _STRING),
        }
    )
    return newest, table


def _raw_forms(forms: Counter[str]) -> str:
    """Every raw form of a duplicated key, in file order, joined by " | "; one held by several rows says how many
    ("CUST-1 | cust-1 (x2)"), so that occurrences always add up to what the cell shows."""
    return " | ".join(key if n == 1 else f"{key} (x{n})" for key, n in forms.items())


def _rejected(system: str, snapshot: SourceSnapshot, emptied: np.ndarray) -> list[RejectedRow]:
    """The reader's rejections and the rows whose key normalized away, in line order."""
    rejected = list(snapshot.rejected)
    if len(emptied):
        at = pa.array(emptied)
        columns = [_text(c).take(at).to_pylist() for c in (snapshot.keys, snapshot.entity_types,
                                                            snapshot.location_refs, snapshot.last_seen_at)]  # fmt: skip
        lines = _numbers(snapshot.lines)[emptied].tolist()
        for line, *fields in zip(lines, *columns, strict=True):
            # The snapshot keeps fields, not lines: the row is shown as its fields in the contract's column order.
            rejected.append(
                RejectedRow(
                    system,
                    snapshot.file,
                    line,
                    "error",
                    "key is empty after normalization",
                    _csv_line([system, *fields]),
                )
            )
    rejected.sort(key=lambda r: (r.line, r.severity))
    return rejected


def _csv_line(fields: list[str]) -> str:
    return ",".join(f'"{f.replace(chr(34), chr(34) * 2)}"' if any(c in f for c in ',"\r\n') else f for f in fields)


def _text(values: Sequence[str] | pa.Array | pa.ChunkedArray) -> pa.Array:
    """A column of text as one Arrow string array (a snapshot's columns are Arrow arrays or lists)."""
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if isinstance(values, pa.Array):
        return values
    return pa.array(values, _STRING)


def _numbers(values: Any) -> np.ndarray:
    if isinstance(values, pa.ChunkedArray | pa.Array):
        return values.to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.int64)

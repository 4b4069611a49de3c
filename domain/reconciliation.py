"""Reconciliation: compare each downstream system's normalized keys with System A's.

Keys compare as unique normalized keys per system. For a downstream system S:
matched = |S and A|, missing_in_A = S - A (out of authority), missing_from_system = A - S (propagation gap),
match_rate = matched / |S union A|. Duplicates are normalized keys that occur more than once in one system.

Everything here works on plain dicts and sets, so that a million keys per system compares in C speed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from itertools import compress
from operator import not_
from typing import NamedTuple

import attrs

from keysync.domain.normalization import NormalizationRules, keys_that_lost_letters, normalize_keys
from keysync.domain.observations import AUTHORITY, SYSTEMS, RejectedRow, SourceSnapshot

STRATEGIES = ("mirror", "namespaced")


def master_key_for(system: str, normalized_key: str, strategy: str) -> str:
    """The master key proposed for an out-of-authority key: mirror it, or namespace it by system."""
    if strategy == "namespaced":
        return f"A-{system}-{normalized_key}"
    return normalized_key


@attrs.frozen
class Duplicate:
    normalized_key: str
    occurrences: int
    source_keys: list[str]  # the distinct raw forms, in file order
    rows: list[int] = attrs.field(factory=list)  # how many rows hold each of them, in the same order


@attrs.frozen
class SystemResult:
    """One system's side of a reconciliation. An unavailable system has ``snapshot`` None and no diffs."""

    system: str
    snapshot: SourceSnapshot | None
    unavailable_reason: str = ""
    normalized: list[str] = attrs.field(factory=list)  # per accepted row, "" where the key normalized away
    first_row: dict[str, int] = attrs.field(factory=dict)  # normalized key -> index of its first row
    rejected: list[RejectedRow] = attrs.field(factory=list)  # reader rejections plus empty-after-normalization
    duplicates: list[Duplicate] = attrs.field(factory=list)
    missing_in_a: list[str] = attrs.field(factory=list)  # sorted normalized keys
    missing_from_system: list[str] = attrs.field(factory=list)  # sorted A keys absent here
    latest_seen: dict[str, str] = attrs.field(factory=dict)  # duplicated key -> its latest last_seen_at

    @property
    def available(self) -> bool:
        return self.snapshot is not None

    @property
    def unique_keys(self) -> int:
        return len(self.first_row)

    @property
    def rows_rejected(self) -> int:
        return sum(1 for r in self.rejected if r.severity == "error")

    @property
    def matched(self) -> int:
        return self.unique_keys - len(self.missing_in_a)

    @property
    def match_rate(self) -> float:
        union = self.unique_keys + len(self.missing_from_system)
        return self.matched / union if union else 1.0

    def source_key(self, normalized_key: str) -> str:
        assert self.snapshot is not None
        return self.snapshot.keys[self.first_row[normalized_key]]

    def entity_type(self, normalized_key: str) -> str:
        assert self.snapshot is not None
        return self.snapshot.entity_types[self.first_row[normalized_key]]

    def last_seen_at(self, normalized_key: str) -> str:
        """The latest last_seen_at among the key's rows (ISO 8601 strings in UTC compare as text)."""
        assert self.snapshot is not None
        return self.latest_seen.get(normalized_key) or self.snapshot.last_seen_at[self.first_row[normalized_key]]


class OutOfAuthorityKey(NamedTuple):
    """A proposed master key and where its source keys were seen. (A tuple: a run makes hundreds of thousands.)"""

    master_key: str
    normalized_key: str
    systems: list[str]
    source_key: str  # the first raw form, from the first system in A-E order


@attrs.frozen
class Reconciliation:
    rules: NormalizationRules
    strategy: str
    systems: dict[str, SystemResult]

    @property
    def authority(self) -> SystemResult:
        return self.systems[AUTHORITY]

    @property
    def downstream(self) -> list[SystemResult]:
        return [r for s, r in self.systems.items() if s != AUTHORITY]

    @property
    def available_systems(self) -> set[str]:
        return {s for s, r in self.systems.items() if r.available}

    def out_of_authority(self) -> dict[str, OutOfAuthorityKey]:
        """Master key -> its sources, over every available downstream system."""
        found: dict[str, OutOfAuthorityKey] = {}
        for result in self.downstream:
            if not result.missing_in_a:
                continue
            raw, first, system = result.snapshot.keys, result.first_row, result.system  # type: ignore[union-attr]
            prefix = f"A-{system}-" if self.strategy == "namespaced" else ""
            for key in result.missing_in_a:
                master = prefix + key
                if master in found:
                    found[master].systems.append(system)
                else:
                    found[master] = OutOfAuthorityKey(master, key, [system], raw[first[key]])
        return found

    def keys_that_lost_letters(self) -> list[str]:
        """The distinct raw keys, over the available systems in A-E order, from which strip_non_alnum dropped a
        letter or digit that normalize.ascii_fold or normalize.letters "unicode" would have kept."""
        found: dict[str, None] = {}
        for result in self.systems.values():
            if result.snapshot is not None:
                found.update(dict.fromkeys(keys_that_lost_letters(result.snapshot.keys, self.rules)))
        return list(found)

    def totals(self) -> dict[str, int]:
        return {
            "missing_in_A_count": sum(len(r.missing_in_a) for r in self.downstream),
            "missing_from_system_count": sum(len(r.missing_from_system) for r in self.downstream),
            "duplicate_keys_count": sum(len(r.duplicates) for r in self.systems.values()),
            "rows_rejected_count": sum(r.rows_rejected for r in self.systems.values()),
        }


Normalizer = Callable[[Sequence[str], NormalizationRules], list[str]]


def reconcile(
    snapshots: Mapping[str, SourceSnapshot | None],
    rules: NormalizationRules,
    strategy: str = "mirror",
    *,
    unavailable_reasons: Mapping[str, str] | None = None,
    normalizer: Normalizer = normalize_keys,
) -> Reconciliation:
    """Classify every system's keys against System A's. ``snapshots[s]`` is None for an unavailable system."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}")
    reasons = unavailable_reasons or {}
    results = {
        system: _index(system, snapshots.get(system), rules, normalizer, reasons.get(system, "not read"))
        for system in SYSTEMS
    }
    authority = results[AUTHORITY].first_row.keys()
    for system, result in results.items():
        if system == AUTHORITY or not result.available:
            continue
        keys = result.first_row.keys()
        result.missing_in_a.extend(sorted(keys - authority))
        result.missing_from_system.extend(sorted(authority - keys))
    return Reconciliation(rules=rules, strategy=strategy, systems=results)


def _index(
    system: str,
    snapshot: SourceSnapshot | None,
    rules: NormalizationRules,
    normalizer: Normalizer,
    unavailable_reason: str,
) -> SystemResult:
    if snapshot is None:
        return SystemResult(system=system, snapshot=None, unavailable_reason=unavailable_reason)
    normalized = normalizer(snapshot.keys, rules)
    n = len(normalized)
    first_row = _first_rows(normalized)
    emptied = list(compress(range(n), map(not_, normalized))) if "" in normalized else []
    duplicates: list[Duplicate] = []
    latest_seen: dict[str, str] = {}
    if len(first_row) < n - len(emptied):  # some key occurs twice: find which
        counts = Counter(normalized)
        counts.pop("", None)
        duplicated = {k for k, c in counts.items() if c > 1}
        duplicates, latest_seen = _duplicates(snapshot, normalized, duplicated, counts)
    return SystemResult(
        system=system,
        snapshot=snapshot,
        normalized=normalized,
        first_row=first_row,
        rejected=_rejected(system, snapshot, emptied),
        duplicates=duplicates,
        latest_seen=latest_seen,
    )


def _first_rows(normalized: list[str]) -> dict[str, int]:
    """Each key's first row. Built backwards, so that the first occurrence wins the dict slot, at C speed."""
    first = dict(zip(reversed(normalized), range(len(normalized) - 1, -1, -1), strict=True))
    first.pop("", None)
    return first


def _rejected(system: str, snapshot: SourceSnapshot, emptied: list[int]) -> list[RejectedRow]:
    """The reader's rejections and the rows whose key normalized away, in line order."""
    rejected = list(snapshot.rejected)
    for i in emptied:
        # The snapshot keeps fields, not lines: the row is shown as its fields in the contract's column order.
        row = [system, snapshot.keys[i], snapshot.entity_types[i], snapshot.location_refs[i], snapshot.last_seen_at[i]]
        rejected.append(
            RejectedRow(
                system, snapshot.file, snapshot.lines[i], "error", "key is empty after normalization", _csv_line(row)
            )
        )
    rejected.sort(key=lambda r: (r.line, r.severity))
    return rejected


def _csv_line(fields: list[str]) -> str:
    return ",".join(f'"{f.replace(chr(34), chr(34) * 2)}"' if any(c in f for c in ',"\r\n') else f for f in fields)


def _duplicates(
    snapshot: SourceSnapshot, normalized: list[str], duplicated: set[str], counts: Mapping[str, int]
) -> tuple[list[Duplicate], dict[str, str]]:
    if not duplicated:
        return [], {}
    forms: dict[str, Counter[str]] = {key: Counter() for key in duplicated}  # in file order, as dicts are
    latest: dict[str, str] = dict.fromkeys(duplicated, "")
    # Only the duplicated keys' rows are visited in Python; finding them runs in C.
    for i in compress(range(len(normalized)), map(duplicated.__contains__, normalized)):
        key = normalized[i]
        forms[key][snapshot.keys[i]] += 1
        seen = snapshot.last_seen_at[i]
        if seen > latest[key]:
            latest[key] = seen
    found = [Duplicate(key, counts[key], list(forms[key]), list(forms[key].values())) for key in sorted(duplicated)]
    return found, latest

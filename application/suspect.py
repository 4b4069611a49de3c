"""Suspect exports: one bad export (header only, a truncated file, a test set of ten keys) must not cost the
registry its master keys.

A system's export whose valid rows fell by more than ``max_shrink`` (a share) against the system's last
accepted export is suspect: the run holds it back, and the rows of that accepted export stand in for it, so that
nothing is deprecated, opened or closed on its account. The baseline is always the last accepted export: a suspect
one never becomes it, so two suspect runs in a row do not make the shrink normal. ``--accept-shrink`` (or
``max_shrink: 1``) takes the new export as it is. A system with no accepted export yet is read as it is. System A
is guarded too: ten keys in A would otherwise make every downstream key out of authority, and fill the registry
with proposals.

Every completed run lists each system's last accepted export in its KPIs (``accepted``); a store written before
then has it from the run's ``sources`` or, older still, from its summary counts.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from keysync.application.incremental import BaseSnapshot, SourceState
from keysync.domain.observations import Fingerprint, SourceSnapshot
from keysync.domain.rules import NormalizationRules

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

MAX_SHRINK = 0.5


@attrs.frozen
class Accepted:
    """A system's last accepted export: the run that accepted it (``run_id``), the run whose events hold its rows
    (``holder``, an originator id, at ``depth`` as keysync.application.incremental.SourceState says) and its valid
    rows."""

    run_id: str
    holder: str
    depth: int
    rows: int
    file: str = ""
    fingerprint: list[Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Accepted:
        fields = attrs.fields_dict(cls)
        return cls(**{k: v for k, v in data.items() if k in fields})

    def state(self) -> SourceState | None:
        """Where the system's rows are, for the next incremental run (None when the export had no fingerprint)."""
        if self.fingerprint is None:
            return None
        return SourceState(self.file, Fingerprint(*self.fingerprint), self.holder, self.depth, self.rows)


def accepted_of(run: Mapping[str, Any]) -> dict[str, Accepted]:
    """Each system's last accepted export as of a completed run (``run``: its run-history row)."""
    kpis = json.loads(run["kpis"]) if run.get("kpis") else {}
    if "accepted" in kpis:
        return {s: Accepted.from_json(v) for s, v in kpis["accepted"].items()}
    found = {}
    for system, counts in kpis.get("systems", {}).items():
        if counts.get("status") != "ok":
            continue
        state = kpis.get("sources", {}).get(system)
        if state is not None:
            found[system] = Accepted(
                run["run_id"], state["holder"], state["depth"], state["rows"], state["file"], state["fingerprint"]
            )
        else:  # a store written before runs listed their sources: every export was read whole
            rows = int(counts.get("rows_read") or 0) - int(counts.get("rows_rejected") or 0)
            found[system] = Accepted(run["run_id"], run["originator_id"], 0, max(rows, 0))
    return found


@attrs.frozen
class ShrinkGuard:
    """What a run needs to hold back a suspect export: each system's last accepted export, the share of its
    valid rows an export may lose, the systems whose new export is taken as it is, and how to get a run's rows."""

    accepted: Mapping[str, Accepted]
    rows_of: BaseSnapshot
    max_shrink: float = MAX_SHRINK
    accept: Collection[str] = frozenset()

    def guards(self, system: str) -> bool:
        """Whether ``system``'s export may be held back: it has an accepted export to fall from, and is not taken
        as it is."""
        before = self.accepted.get(system)
        return system not in self.accept and before is not None and before.rows > 0

    def suspicion(self, system: str, rows: int) -> str:
        """Why an export of ``system`` with ``rows`` valid rows is suspect, or "" when it is not."""
        if not self.guards(system):
            return ""
        before = self.accepted[system]
        if before.rows - rows <= self.max_shrink * before.rows:
            return ""
        fell = "has no valid rows" if rows == 0 else f"has {rows:,} valid rows"
        return (
            f"its export {fell}, against {before.rows:,} in the one accepted in run {before.run_id} (a fall of "
            f"{(before.rows - rows) / before.rows:.0%}, more than processing.max_shrink {self.max_shrink:.0%}); "
            f"those rows stand in for it: `keysync run --accept-shrink {system}` takes the new export as it is"
        )


def valid_rows(snapshot: SourceSnapshot, rules: NormalizationRules) -> int:
    """The rows of an export whose key survives normalization: what an export of junk keys ("***", a script the rules
    strip) is not. An ASCII letter or digit survives every rule, so only the keys without one are normalized."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from keysync.domain.normalization import normalize_array

    keys = snapshot.keys
    doubtful = keys.filter(pa.array(~_has_ascii_alnum(keys)))
    if not len(doubtful):
        return len(keys)
    return len(keys) - pc.sum(pc.equal(normalize_array(doubtful, rules), "")).as_py()


def _has_ascii_alnum(keys: pa.Array) -> np.ndarray:
    """Which keys hold an ASCII letter or digit. Most keys start with one: their first UTF-8 byte says so (a byte
    below 0x80 is that character), and only the others are searched."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    def search(values: pa.Array) -> np.ndarray:
        return pc.fill_null(pc.match_substring_regex(values, "[A-Za-z0-9]"), False).to_numpy(zero_copy_only=False)

    if keys.null_count or keys.type not in (pa.string(), pa.large_string()) or not len(keys):  # not a reader's
        return search(keys)
    _, offsets, data = keys.buffers()
    width = np.dtype(np.int64 if keys.type == pa.large_string() else np.int32)
    ends = np.frombuffer(offsets, width, count=len(keys) + 1, offset=keys.offset * width.itemsize)
    raw = np.frombuffer(data, np.uint8) if data is not None and data.size else np.zeros(1, np.uint8)
    found = _alnum_bytes()[raw[np.minimum(ends[:-1], len(raw) - 1)]] & (ends[1:] > ends[:-1])
    rest = np.flatnonzero(~found)
    found[rest] = search(keys.take(pa.array(rest, pa.int64())))
    return found


@functools.cache
def _alnum_bytes() -> np.ndarray:
    import numpy as np

    table = np.zeros(256, dtype=bool)
    for first, last in (("0", "9"), ("A", "Z"), ("a", "z")):
        table[ord(first) : ord(last) + 1] = True
    return table

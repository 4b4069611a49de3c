"""What an incremental run needs to know of the run before it: each system's export fingerprint and which run's
events hold its rows.

Every completed run lists this in its KPIs (``sources``), full runs included, so that the next incremental run
finds it in the run history without reading any observation back. An export is unchanged when its size and
content hash (sha256) are the ones recorded, whatever its modification time. As in git's index, a file whose
size and modification time (to the nanosecond) are the ones recorded is taken to be unchanged without hashing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from keysync.domain.observations import Fingerprint, SourceSnapshot

# (path, the fingerprint recorded) -> the file's fingerprint now; hashing only when size or time differ
Fingerprinter = Callable[[Path, Fingerprint | None], Fingerprint | None]
BaseSnapshot = Callable[[str, str], SourceSnapshot]


@attrs.frozen
class SourceState:
    """Where a system stood after a run: its export's fingerprint, and the run whose events hold its rows
    (``holder``, an originator id). ``depth`` is 0 for rows recorded whole; a run of an earlier version may hold
    them as ``depth`` deltas on a whole observation (keysync.domain.run)."""

    file: str
    fingerprint: Fingerprint
    holder: str
    depth: int
    rows: int

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "fingerprint": attrs.astuple(self.fingerprint),
            "holder": self.holder,
            "depth": self.depth,
            "rows": self.rows,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SourceState:
        return cls(data["file"], Fingerprint(*data["fingerprint"]), data["holder"], data["depth"], data["rows"])

    def unchanged(self, now: Fingerprint) -> bool:
        return self.fingerprint.same_content(now)


@attrs.frozen
class Baseline:
    """The latest completed run, as an incremental run sees it."""

    run_id: str
    options: Mapping[str, Any]  # the run's decisions: rules, strategy, auto_approve
    kpis: Mapping[str, Any]
    sources: Mapping[str, SourceState]

    @classmethod
    def of(cls, run: Mapping[str, Any], options: Mapping[str, Any]) -> Baseline:
        """From a run-history row and the options of the run's Started event."""
        kpis = json.loads(run["kpis"]) if run["kpis"] else {}
        sources = {s: SourceState.from_json(v) for s, v in kpis.get("sources", {}).items()}
        return cls(run["run_id"], options, kpis, sources)

    @property
    def basis(self) -> str:
        """The run whose reconciliation this run's results are: itself, or the one it carried over."""
        return str(self.kpis.get("carried_from") or self.run_id)

    def reads_like(self, options: Mapping[str, Any]) -> bool:
        """Whether a run with ``options`` reads exports as this one did (rows read under other limits differ)."""
        return self.options.get("reading") == options.get("reading")

    def decides_like(self, options: Mapping[str, Any]) -> bool:
        """Whether a run with ``options`` would reach the same results on the same rows."""
        return all(self.options.get(k) == options.get(k) for k in ("rules", "strategy", "auto_approve"))


@attrs.frozen
class Incremental:
    """An incremental run's view of the past: the baseline, how to fingerprint an export, how to get a system's
    rows back from the run that holds them."""

    baseline: Baseline
    fingerprint: Fingerprinter
    base_snapshot: BaseSnapshot
    run_options: Callable[[str], Mapping[str, Any]] = lambda _holder: {}  # a run's options, by originator id

    def holder_reads_like(self, holder: str, options: Mapping[str, Any]) -> bool:
        """Whether run ``holder`` read its exports as a run with ``options`` would: the baseline did (else no export
        is taken as unchanged), but an export held back as suspect keeps an older run's rows, which may have been
        read under other limits."""
        return self.run_options(holder).get("reading") == options.get("reading")

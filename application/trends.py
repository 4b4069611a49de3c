"""Comparing two runs: which discrepancies opened and which were resolved between them.

A discrepancy is an out-of-authority key (``missing_in_A``: in the system, not in A) or a propagation gap
(``missing_from_system``: in A, not in the system), per downstream system, as normalized keys. Going from run A
to run B, a discrepancy present in B but not in A has *opened*; one present in A but not in B is *resolved*.
A system unavailable in either run is not compared: its empty lists say nothing about its keys.

Each run's discrepancies are the ones it found: its keys normalized under the rules it ran with, as its KPIs (and
so the trend report) count them. Per system, opened minus resolved is then the change of missing_in_A +
missing_from_system between the two runs, also across a change of rules, where the same raw keys can open (or
resolve) discrepancies without any export changing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from keysync.domain.normalization import NormalizationRules
from keysync.domain.observations import DOWNSTREAM
from keysync.domain.reconciliation import Reconciliation

if TYPE_CHECKING:
    from keysync.projections.runner import Projections

KINDS = ("missing_in_A", "missing_from_system")
CHANGES = ("opened", "resolved")
CHANGE_COLUMNS = ("system", "kind", "change", "key")


class CompareError(ValueError):
    """A run that cannot be compared: unknown, or not completed."""


@attrs.frozen
class Change:
    system: str
    kind: str  # missing_in_A | missing_from_system
    change: str  # opened | resolved
    key: str  # the normalized key


@attrs.frozen
class RunComparison:
    run_a: str
    run_b: str
    changes: list[Change]
    not_compared: dict[str, str]  # system -> why (unavailable in which run)
    rules_differ: bool = False  # the two runs normalized keys under different rules

    def counts(self) -> dict[str, dict[str, int]]:
        """Per compared system: "<kind>_<change>" -> count, plus "opened" and "resolved" totals."""
        found: dict[str, dict[str, int]] = {}
        for system in DOWNSTREAM:
            if system in self.not_compared:
                continue
            mine = [c for c in self.changes if c.system == system]
            counts = {
                f"{k}_{ch}": sum(1 for c in mine if (c.kind, c.change) == (k, ch)) for k in KINDS for ch in CHANGES
            }
            counts |= {ch: sum(1 for c in mine if c.change == ch) for ch in CHANGES}
            found[system] = counts
        return found

    def totals(self) -> dict[str, int]:
        return {ch: sum(1 for c in self.changes if c.change == ch) for ch in CHANGES}

    def summary(self) -> str:
        """One line: the totals, then each system with changes, then what was not compared."""
        totals = self.totals()
        parts = [f"{self.run_a} -> {self.run_b}: {totals['opened']} opened, {totals['resolved']} resolved"]
        for system, counts in self.counts().items():
            if counts["opened"] or counts["resolved"]:
                parts.append(f"{system}: {counts['opened']} opened, {counts['resolved']} resolved")
        if self.not_compared:
            parts.append("not compared: " + ", ".join(f"{s} ({why})" for s, why in self.not_compared.items()))
        if self.rules_differ:
            parts.append("normalization rules differ between the runs: each run's keys as it normalized them")
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_a": self.run_a,
            "run_b": self.run_b,
            "totals": self.totals(),
            "systems": self.counts(),
            "not_compared": dict(self.not_compared),
            "rules_differ": self.rules_differ,
            "changes": [attrs.asdict(c) for c in self.changes],
        }


def _lists(recon: Reconciliation, system: str) -> dict[str, list[str]]:
    result = recon.systems[system]
    return {"missing_in_A": result.missing_in_a_keys(), "missing_from_system": result.missing_from_system_keys()}


def compare_reconciliations(
    before: Reconciliation, after: Reconciliation, run_a: str = "A", run_b: str = "B"
) -> RunComparison:
    """What changed from ``before`` (run A) to ``after`` (run B), system by system (B-E), each kind, each change,
    keys sorted."""
    changes: list[Change] = []
    not_compared: dict[str, str] = {}
    for system in DOWNSTREAM:
        down = [run for run, recon in ((run_a, before), (run_b, after)) if not recon.systems[system].available]
        if down:
            not_compared[system] = f"unavailable in {' and '.join(down)}"
            continue
        old, new = _lists(before, system), _lists(after, system)
        for kind in KINDS:
            was, now = set(old[kind]), set(new[kind])
            changes += [Change(system, kind, "opened", key) for key in sorted(now - was)]
            changes += [Change(system, kind, "resolved", key) for key in sorted(was - now)]
    return RunComparison(run_a, run_b, changes, not_compared, before.rules != after.rules)


def compare_runs(projections: Projections, run_a: str, run_b: str) -> RunComparison:
    """Compare two stored runs by run_id, each recomputed from the event log under the rules it ran with."""
    projections.update_views()
    originators = {}
    runs = {row["run_id"]: row for row in projections.recorder.runs()}
    for run_id in (run_a, run_b):
        row = runs.get(run_id)
        if row is None:
            raise CompareError(f"unknown run id {run_id!r} (see keysync history)")
        if row["status"] != "completed":
            raise CompareError(f"run {run_id!r} did not complete (status {row['status']}); compare completed runs")
        originators[run_id] = row["originator_id"]
    before = _as_it_ran(projections, originators[run_a])
    after = before if run_b == run_a else _as_it_ran(projections, originators[run_b])
    return compare_reconciliations(before, after, run_a, run_b)


def _as_it_ran(projections: Projections, originator_id: str) -> Reconciliation:
    """A run's reconciliation under the rules and strategy it started with (a run recorded without them: the
    current ones), so that its discrepancies are the ones its KPIs counted."""
    options = projections.store.run_options(originator_id)
    rules = NormalizationRules(**options["rules"]) if options.get("rules") else None
    return projections.reconciliation_of(originator_id, rules, options.get("strategy"))

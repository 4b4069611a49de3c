"""When each open discrepancy, duplicate and rejected line was first found: the first_detected_run_id and
first_detected_at columns of diff_missing_in_A.csv, diff_missing_from_system.csv, duplicate_keys.csv and
rejected_rows.csv.

What is tracked, and its identity:

- ``missing_in_A``: (system, normalized key); ``missing_from_system``: (system, A's normalized key);
- ``duplicate``: (system, normalized key); ``rejected``: (system, the raw text of the line), whatever line it is on.

Folded run by run, oldest first. In each completed run, something found that was not open is opened by that run,
something open that is found again stays open since the run that opened it, and something open that is no longer
found is resolved: found again later, it is opened anew. It is the same notion of opened and resolved as
changes_since_last_run.csv's. A run that carried the last reconciliation over (no export changed) finds what it
found, so it changes nothing. A system whose export was held back as suspect, or that was unavailable, neither
opens nor resolves anything in that run (its rows are not trusted, or not there): its discrepancies stay as they
stood, and the same holds for every downstream system's discrepancies when System A is the one in doubt. A row
that such a run shows and that nothing had opened (A changed while B's last accepted rows stood in) names that run
until the system's export is accepted again, which then settles it.

Identities are normalized keys under the current rules. A change of rules reads the history again under the new
ones, as ``keysync rebuild`` does for every read model: a discrepancy keeps the run that first found it as the new
rules read that run, so the file says what a rebuild says and changes_since_last_run.csv agrees.

The state is small (open discrepancies only) and held as a dict per (kind, system) of identity -> (run_id, at),
one shared tuple per run.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Set

import attrs

from keysync.domain.observations import AUTHORITY
from keysync.domain.reconciliation import Reconciliation

MISSING_IN_A, MISSING_FROM_SYSTEM, DUPLICATE, REJECTED = "missing_in_A", "missing_from_system", "duplicate", "rejected"
KINDS = (MISSING_IN_A, MISSING_FROM_SYSTEM, DUPLICATE, REJECTED)

Group = tuple[str, str]  # (kind, system)
Found = tuple[str, str]  # (run_id, at): the run that first found it, and when that run finished


def found_in(recon: Reconciliation) -> dict[Group, Set[str]]:
    """What a reconciliation finds, per (kind, system), for every system it had rows of."""
    found: dict[Group, Set[str]] = {}
    for system, result in recon.systems.items():
        if not result.available:
            continue
        if system != AUTHORITY:
            found[MISSING_IN_A, system] = set(result.missing_in_a_keys())
            found[MISSING_FROM_SYSTEM, system] = set(result.missing_from_system_keys())
        found[DUPLICATE, system] = set(result.duplicate_keys())
        found[REJECTED, system] = {row.raw for row in result.rejected}
    return found


def settled_groups(recon: Reconciliation, held_back: Set[str]) -> set[Group]:
    """The groups a run may open and resolve in: those of systems whose rows it had and took (not held back);
    a discrepancy also needs System A's rows taken."""
    trusted = {s for s, r in recon.systems.items() if r.available and s not in held_back}
    groups: set[Group] = set()
    for system in trusted:
        groups |= {(DUPLICATE, system), (REJECTED, system)}
        if system != AUTHORITY and AUTHORITY in trusted:
            groups |= {(MISSING_IN_A, system), (MISSING_FROM_SYSTEM, system)}
    return groups


@attrs.frozen
class Delta:
    """What one run changed: the identities it opened (with the run) and those it resolved."""

    opened: dict[Group, dict[str, Found]] = attrs.field(factory=dict)
    resolved: dict[Group, list[str]] = attrs.field(factory=dict)

    @property
    def groups(self) -> set[Group]:
        return self.opened.keys() | self.resolved.keys()


@attrs.define
class FirstDetected:
    """The open discrepancies, duplicates and rejected lines, each with the run that first found it, as they stand
    after run ``run_id`` ("": before any run)."""

    run_id: str = ""
    open: dict[Group, dict[str, Found]] = attrs.Factory(dict)

    def copy(self) -> FirstDetected:
        return FirstDetected(self.run_id, {group: dict(found) for group, found in self.open.items()})

    def advance(self, run_id: str, at: str, recon: Reconciliation, held_back: Set[str] = frozenset()) -> Delta:
        """Fold one completed run (its reconciliation; ``held_back``: the systems whose export it held back)."""
        now: Found = (run_id, at)
        delta = Delta()
        found = found_in(recon)
        for group in settled_groups(recon, held_back):
            current = found.get(group, set())
            before = self.open.get(group, {})
            resolved = [k for k in before if k not in current]
            opened = {k: now for k in current if k not in before}
            if not resolved and not opened:
                continue
            after = {k: v for k, v in before.items() if k in current} if resolved else before
            after.update(opened)
            if after:
                self.open[group] = after
            else:
                self.open.pop(group, None)
            if opened:
                delta.opened[group] = opened
            if resolved:
                delta.resolved[group] = resolved
        self.run_id = run_id
        return delta

    def columns(
        self, kind: str, system: str, identities: Iterable[str], shown_by: Found
    ) -> tuple[list[str], list[str]]:
        """The first_detected_run_id and first_detected_at of each identity; ``shown_by`` for one nothing opened
        (the run showing it, while its system was in doubt)."""
        group = self.open.get((kind, system), {})
        found = [group.get(k, shown_by) for k in identities]
        return [f[0] for f in found], [f[1] for f in found]

    def rows(self, groups: Iterable[Group] | None = None) -> Iterator[tuple[str, str, str, str, list[str]]]:
        """(kind, system, run_id, at, identities) of what each run opened and is still open, for ``groups``
        (None: every group): one per run, as the store keeps them."""
        for group in self.open if groups is None else groups:
            by_run: dict[Found, list[str]] = {}
            for identity, found in self.open.get(group, {}).items():
                by_run.setdefault(found, []).append(identity)
            for (run_id, at), identities in by_run.items():
                yield *group, run_id, at, identities

    @classmethod
    def from_rows(cls, run_id: str, rows: Iterable[tuple[str, str, str, str, list[str]]]) -> FirstDetected:
        state = cls(run_id)
        for kind, system, found_run, at, identities in rows:
            state.open.setdefault((kind, system), {}).update(dict.fromkeys(identities, (found_run, at)))
        return state


def held_back_systems(kpis: Mapping[str, object]) -> set[str]:
    """The systems a completed run held back as suspect, from its KPIs."""
    systems = kpis.get("systems", {})
    assert isinstance(systems, dict)
    return {s for s, found in systems.items() if isinstance(found, dict) and found.get("status") == "suspect"}

"""What the sandbox's rows mean for reconciliation: the status after each command, and the next run predicted.

Both reconcile the sandbox's own rows with the domain's ``reconcile`` and the configured rules and strategy, after
rejecting the rows the reader would reject (``sandbox_rows.snapshot``), so the hints are the numbers ``keysync run``
reports on the same files; the files are checked against that same snapshot whenever they are written.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

from keysync.domain.observations import SYSTEMS, SourceSnapshot
from keysync.domain.registry import Registry
from keysync.domain.sandbox import Sandbox
from keysync.domain.sandbox_rows import snapshot

if TYPE_CHECKING:
    from keysync.application.sandbox import SandboxSettings
    from keysync.application.suspect import ShrinkGuard
    from keysync.domain.reconciliation import Reconciliation

# Hint name -> the run's KPI of the same number.
HINTS = {
    "out_of_authority": "missing_in_A_count",
    "propagation_gaps": "missing_from_system_count",
    "duplicates": "duplicate_keys_count",
    "rejected_rows": "rows_rejected_count",
}
# Per-system column -> the run's per-system KPI.
SYSTEM_KPIS = {
    "unique_keys": "unique_keys",
    "matched_in_A": "matched_in_A",
    "out_of_authority": "missing_in_A",
    "missing_vs_A": "missing_from_system",
    "duplicates": "duplicate_keys",
    "rejected": "rows_rejected",
}


@attrs.frozen
class SandboxStatus:
    systems: dict[str, dict[str, int]]  # system -> rows, unique_keys, only_here, SYSTEM_KPIS columns
    common_to_all: int  # normalized keys present in every system
    hints: dict[str, int]  # what a run would report: HINTS
    run_would_fail: str  # "" or why a run on these files would fail
    reconciliation: Reconciliation = attrs.field(repr=False, eq=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "systems": self.systems,
            "common_to_all": self.common_to_all,
            "hints": self.hints,
            "run_would_fail": self.run_would_fail,
        }


def reconcile_sandbox(
    sandbox: Sandbox, settings: SandboxSettings, snapshots: Mapping[str, SourceSnapshot] | None = None
) -> Reconciliation:
    """Reconcile the sandbox's rows as a run would reconcile its files (``snapshots``: already computed ones)."""
    from keysync.domain.reconciliation import reconcile  # numpy and pyarrow: only for the commands that compare

    if not snapshots:
        snapshots = {s: snapshot(s, sandbox.rows[s], settings.max_key_length, str(settings.files[s])) for s in SYSTEMS}
    return reconcile(snapshots, settings.rules, settings.strategy)


def sandbox_status(
    sandbox: Sandbox, settings: SandboxSettings, snapshots: Mapping[str, SourceSnapshot] | None = None
) -> SandboxStatus:
    recon = reconcile_sandbox(sandbox, settings, snapshots)
    key_sets = {s: set(recon.systems[s].key_list()) for s in SYSTEMS}
    seen_in = Counter(key for keys in key_sets.values() for key in keys)
    systems = {}
    for s in SYSTEMS:
        result = recon.systems[s]
        systems[s] = {
            "rows": len(sandbox.rows[s]),
            "only_here": sum(1 for key in key_sets[s] if seen_in[key] == 1),
            "unique_keys": result.unique_keys,
            "matched_in_A": result.matched,
            "out_of_authority": len(result.missing_in_a),
            "missing_vs_A": len(result.missing_from_system),
            "duplicates": len(result.duplicates),
            "rejected": result.rows_rejected,
        }
    totals = recon.totals()
    fail = "" if recon.authority.unique_keys else "System A has no valid keys: a run would fail"
    return SandboxStatus(
        systems=systems,
        common_to_all=sum(1 for count in seen_in.values() if count == len(SYSTEMS)),
        hints={hint: totals[kpi] for hint, kpi in HINTS.items()},
        run_would_fail=fail,
        reconciliation=recon,
    )


@attrs.frozen
class Prediction:
    status: SandboxStatus
    new_master_keys: list[str]  # out-of-authority master keys the registry does not hold yet: to be proposed
    deprecations: int  # registry keys the run would deprecate (now in System A, or vanished)
    affected: list[str]  # systems a run would find something in
    # system -> why the run would hold its export back as suspect (and reconcile the last accepted rows instead)
    held_back: dict[str, str] = attrs.Factory(dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "hints": self.status.hints,
            "run_would_fail": self.status.run_would_fail,
            "new_master_keys": len(self.new_master_keys),
            "new_master_keys_sample": self.new_master_keys[:10],
            "deprecations": self.deprecations,
            "systems_affected": self.affected,
            "held_back": self.held_back,
            "systems": self.status.systems,
        }


def predict(
    sandbox: Sandbox, settings: SandboxSettings, registry: Registry, guard: ShrinkGuard | None = None
) -> Prediction:
    """The next run's outcome from the sandbox's rows and the registry as it stands. The registry's own
    ``decide_run`` decides, on a copy that is never saved, so the prediction follows its rules exactly. With
    ``guard``, the prediction also says which exports the run would hold back as suspect: the run then reconciles
    the last accepted rows in their place, and reports other numbers than these."""
    status = sandbox_status(sandbox, settings)
    recon = status.reconciliation
    decided = registry.decide_run(
        "prediction",
        recon.out_of_authority(),
        recon.authority.key_array(),
        recon.available_systems,
        auto_approve=settings.auto_approve,
        actor="prediction",
    )
    proposed, deprecated = decided.proposed, sum(map(len, decided.deprecated.values()))
    affected = [
        s
        for s, row in status.systems.items()
        if row["out_of_authority"] or row["missing_vs_A"] or row["duplicates"] or row["rejected"]
    ]
    valid = {s: row["rows"] - row["rejected"] for s, row in status.systems.items()}
    suspicions = {s: guard.suspicion(s, rows) for s, rows in valid.items()} if guard is not None else {}
    return Prediction(status, proposed, deprecated, affected, {s: why for s, why in suspicions.items() if why})


@attrs.frozen
class Comparison:
    run_id: str
    run_started_at: str
    changed_since: bool  # the sandbox changed after the run started: a mismatch is expected
    checks: list[tuple[str, int, int]]  # (what, predicted, actual)

    @property
    def matches(self) -> bool:
        return all(predicted == actual for _what, predicted, actual in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "run_started_at": self.run_started_at,
            "sandbox_changed_since": self.changed_since,
            "matches": self.matches,
            "checks": [{"what": w, "predicted": p, "actual": a, "ok": p == a} for w, p, a in self.checks],
        }


def compare_with_run(
    sandbox: Sandbox, settings: SandboxSettings, run: Mapping[str, Any], registry_rows: list[dict[str, str]]
) -> Comparison:
    """The sandbox's predicted outcome against a completed run's KPIs. The master keys predicted for that run are
    those the registry did not hold before it: absent, or created by that very run."""
    status = sandbox_status(sandbox, settings)
    kpis = json.loads(run["kpis"])
    created_by = {row["master_key"]: row["created_run_id"] for row in registry_rows}
    found = status.reconciliation.out_of_authority()["master_key"].to_pylist()
    new = [m for m in found if created_by.get(m, run["run_id"]) == run["run_id"]]
    checks = [(hint, status.hints[hint], kpis[kpi]) for hint, kpi in HINTS.items()]
    checks.append(("new_master_keys", len(new), kpis["proposed_count"]))
    for s in SYSTEMS:
        actual = kpis["systems"].get(s, {})
        for column, kpi in SYSTEM_KPIS.items():
            if kpi in actual:
                checks.append((f"{s}.{column}", status.systems[s][column], actual[kpi]))
    changed = sandbox.modified_on > datetime.fromisoformat(run["started_at"])
    return Comparison(run["run_id"], run["started_at"], changed, checks)

"""The changes between two runs, computed from compact RunKeys, agree with the plain set arithmetic on every
system's full key set (hypothesis), whichever way the RunKeys were made."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from keysync.domain.normalization import NormalizationRules
from keysync.domain.observations import AUTHORITY, DOWNSTREAM, SYSTEMS, SourceSnapshot
from keysync.domain.reconciliation import Reconciliation, reconcile
from keysync.projections.changes import CHANGE_COLUMNS, RunKeys, change_columns
from keysync.projections.registry_view import REGISTRY_COLUMNS, registry_table

RULES = NormalizationRules()
KEYS = st.lists(st.sampled_from(["K-1", "k 1", "K-2", "K-3", "K-4", "K-5", "K-6", "x_7", "X-7", "K-8"]), max_size=8)


def snapshot(system: str, keys: list[str]) -> SourceSnapshot:
    n = len(keys)
    return SourceSnapshot.of(
        system, f"{system}.csv", n, list(keys), [""] * n, [""] * n, [""] * n, list(range(2, n + 2)), []
    )


@st.composite
def runs(draw: st.DrawFn) -> Reconciliation:
    snapshots = {AUTHORITY: snapshot(AUTHORITY, draw(KEYS))}
    for system in DOWNSTREAM:
        if draw(st.booleans()) or draw(st.booleans()):  # available three times in four
            snapshots[system] = snapshot(system, draw(KEYS))
    return reconcile(snapshots, RULES)


def key_sets(recon: Reconciliation) -> dict[str, set[str]]:
    return {s: set(r.key_list()) for s, r in recon.systems.items() if r.available}


def plain(latest: Reconciliation, previous: Reconciliation | None) -> list[tuple[str, str, str, str]]:
    """The definition, spelled out on full key sets; an absent previous run is an empty one, whose keys are all new:
    one first_run row per system says how many."""
    new = key_sets(latest)
    old = key_sets(previous) if previous is not None else {system: set() for system in SYSTEMS}
    rows = []
    for system in SYSTEMS:
        if system not in new or system not in old:
            continue
        if previous is None:
            n = len(new[system])
            rows += [(system, "first_run", "", f"the first completed run: its {n:,} key{'s' * (n != 1)} are all new")]
        rows += [(system, "key_added", k, "") for k in sorted(new[system] - old[system]) if previous is not None]
        rows += [(system, "key_removed", k, "") for k in sorted(old[system] - new[system])]
        if system == AUTHORITY:
            continue
        kinds = {
            "missing_in_A": (new[system] - new[AUTHORITY], old[system] - old[AUTHORITY]),
            "missing_from_system": (new[AUTHORITY] - new[system], old[AUTHORITY] - old[system]),
        }
        for change, newer in (("discrepancy_opened", True), ("discrepancy_resolved", False)):
            for kind, (now, was) in kinds.items():
                rows += [(system, change, k, kind) for k in sorted(now - was if newer else was - now)]
    return rows


def computed(latest: RunKeys, previous: RunKeys | None) -> list[tuple[str, str, str, str]]:
    columns = change_columns(latest, previous, registry_table(), [])
    assert set(columns["run_id"]) <= {latest.run_id}
    return list(zip(*(columns[c] for c in CHANGE_COLUMNS[1:]), strict=True))


@settings(max_examples=300, deadline=None)
@given(latest=runs(), previous=runs() | st.none())
def test_changes_agree_with_set_arithmetic(latest: Reconciliation, previous: Reconciliation | None) -> None:
    expected = plain(latest, previous)
    old = None if previous is None else RunKeys.of("r1", previous)
    assert computed(RunKeys.of("r2", latest), old) == expected
    # From key sets, as a run read back from the log is: the same rows.
    old = None if previous is None else RunKeys.from_keys("r1", key_sets(previous))
    assert computed(RunKeys.from_keys("r2", key_sets(latest)), old) == expected


def test_registry_rows_are_the_runs_own_proposals_and_deprecations() -> None:
    recon = reconcile({s: snapshot(s, ["K-1"]) for s in SYSTEMS}, RULES)
    registry = [
        {"master_key": "M-1", "source_systems": "B|D", "source_key": "m_1", "status": "Active",
         "created_run_id": "r2", "updated_at": "t3", "status_reason": "approved"},
        {"master_key": "M-2", "source_systems": "C", "source_key": "M-2", "status": "Deprecated",
         "created_run_id": "r1", "updated_at": "t2", "status_reason": "key now exists in System A"},
        {"master_key": "M-3", "source_systems": "E", "source_key": "M-3", "status": "Deprecated",
         "created_run_id": "r1", "updated_at": "t9", "status_reason": "merged by hand"},
    ]  # fmt: skip
    registry = pa.Table.from_pylist([{c: row.get(c, "") for c in REGISTRY_COLUMNS} for row in registry])
    audit = [
        {"run_id": "r2", "event_type": "MasterKeysDeprecated", "created_at": "t2"},
        {"run_id": "", "event_type": "MasterKeysDeprecated", "created_at": "t9"},
    ]
    columns = change_columns(RunKeys.of("r2", recon), RunKeys.of("r1", recon), registry, audit)
    assert list(zip(*(columns[c] for c in CHANGE_COLUMNS), strict=True)) == [
        ("r2", "B|D", "master_key_proposed", "M-1", "m_1"),
        ("r2", "C", "master_key_deprecated", "M-2", "key now exists in System A"),
    ]

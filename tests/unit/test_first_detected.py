"""The first-detected fold: each open discrepancy names the first run of the unbroken stretch of runs that found
it, skipping the runs in which its system was in doubt."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from keysync.domain.normalization import NormalizationRules
from keysync.domain.observations import SourceSnapshot
from keysync.domain.reconciliation import reconcile
from keysync.projections.first_detected import MISSING_IN_A, FirstDetected

KEYS = ["K1", "K2", "K3"]
RULES = NormalizationRules()


def snapshot(system: str, keys: list[str]) -> SourceSnapshot:
    n = len(keys)
    lines = list(range(2, n + 2))
    return SourceSnapshot.of(system, f"{system}.csv", n, keys, ["customer"] * n, [""] * n, [""] * n, lines, [])


def recon_of(b_keys: list[str], b_available: bool = True):
    snapshots = {s: snapshot(s, []) for s in "ACDE"} | {"B": snapshot("B", b_keys) if b_available else None}
    return reconcile(snapshots, RULES)


def opened_by(state: FirstDetected) -> dict[str, str]:
    """B's open out-of-authority keys -> the run that opened each."""
    table = state.open.get((MISSING_IN_A, "B"))
    return dict(zip(table["identity"].to_pylist(), table["run_id"].to_pylist(), strict=True)) if table else {}


# One run: B's keys (all out of authority: A is empty), and B's state: ok, suspect or unavailable.
RUN = st.tuples(st.sets(st.sampled_from(KEYS)), st.sampled_from(["ok", "ok", "suspect", "unavailable"]))


@given(st.lists(RUN, min_size=1, max_size=8))
def test_each_open_key_names_the_first_run_of_its_current_stretch(runs):
    state = FirstDetected()
    shown: dict[str, str] = {}  # the reference: key -> run that opened it, recomputed naively
    for i, (keys, status) in enumerate(runs):
        run_id = f"run-{i}"
        recon = recon_of(sorted(keys), status != "unavailable")
        state.advance(run_id, f"at-{i}", recon, {"B"} if status == "suspect" else set())
        if status == "ok":
            shown = {k: shown.get(k, run_id) for k in keys}
        assert opened_by(state) == shown


def test_the_stored_rows_give_back_the_same_state():
    state = FirstDetected()
    state.advance("r1", "t1", recon_of(["K1", "K2"]))
    state.advance("r2", "t2", recon_of(["K2", "K3"]))
    rows = list(state.rows())
    assert sorted(
        (kind, system, run, ids.to_pylist()) for kind, system, run, _at, ids in rows if kind == MISSING_IN_A
    ) == [
        (MISSING_IN_A, "B", "r1", ["K2"]),
        (MISSING_IN_A, "B", "r2", ["K3"]),
    ]
    assert FirstDetected.from_rows("r2", rows) == state

"""The trend chart's axis of runs: one slot per run, long pauses cut out, dates thinned so they do not overlap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from keysync.projections.run_axis import run_axis

YEAR_END = datetime(2026, 1, 1, tzinfo=UTC)
TODAY = datetime(2026, 12, 7, 4, 3, tzinfo=UTC)
DAYS_30 = [YEAR_END - timedelta(days=29 - d) for d in range(30)]


def test_thirty_days_a_year_back_and_one_run_today_get_one_slot_each_and_one_cut():
    axis = run_axis([*DAYS_30, TODAY])
    assert axis.positions == [*map(float, range(30)), 31.0]
    [cut] = axis.cuts
    assert cut.at == 30.0 and cut.label == "340 days without runs"
    labels = axis.labels
    assert labels[0.0] == "2025-12-03" and labels[29.0] == "2026-01-01" and labels[31.0] == "2026-12-07"
    assert all(b - a >= 2 for a, b in pairwise(labels))  # 31 runs: every other date


def test_consecutive_days_have_no_cut_and_weekly_runs_are_not_cut_apart():
    assert run_axis(DAYS_30).cuts == [] and run_axis(DAYS_30).positions == list(map(float, range(30)))
    weekly = [YEAR_END + timedelta(days=7 * w, hours=w % 3) for w in range(10)]
    assert run_axis(weekly).cuts == []
    # A pause of over a week between daily runs is cut, one of a few days is not.
    days = [YEAR_END + timedelta(days=d) for d in (0, 1, 2, 3, 7, 8, 9, 19)]
    assert [(c.before, c.label) for c in run_axis(days).cuts] == [(days[6], "10 days without runs")]


def test_runs_on_the_same_date_are_labelled_with_their_times():
    moments = [TODAY, TODAY + timedelta(hours=5), TODAY + timedelta(days=1)]
    assert list(run_axis(moments).labels.values()) == ["2026-12-07 04:03", "2026-12-07 09:03", "2026-12-08"]
    assert run_axis([]).positions == [] and run_axis([TODAY]).labels == {0.0: "2026-12-07"}


@given(
    st.lists(st.integers(min_value=0, max_value=400 * 24), min_size=1, max_size=150, unique=True),
    st.integers(min_value=2, max_value=30),
)
def test_slots_are_even_but_for_cuts_and_labels_never_crowd(hours, max_labels):
    moments = [YEAR_END + timedelta(hours=h) for h in sorted(hours)]
    axis = run_axis(moments, max_labels)
    steps = [b - a for a, b in pairwise(axis.positions)]
    assert set(steps) <= {1.0, 2.0} and steps.count(2.0) == len(axis.cuts)
    assert all(axis.min_cut < cut.after - cut.before for cut in axis.cuts)
    assert {axis.positions[0], axis.positions[-1]} <= set(axis.labels) and len(axis.labels) <= max_labels

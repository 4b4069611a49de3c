"""Row deltas: applying the delta between two exports to the first gives the second, row for row."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from keysync.domain.observations import SourceSnapshot
from keysync.domain.row_delta import row_delta, rows_of, snapshot_delta, splice

ROWS = st.lists(st.tuples(st.sampled_from("abcde"), st.just("customer"), st.just(""), st.sampled_from(["", "t"])))


def applied(old, new):
    delta = row_delta(old, new)
    return splice(old, delta.removed, delta.added, [new[j] for j in delta.added]), delta


@given(ROWS, ROWS)
def test_applying_the_delta_gives_the_new_rows_exactly(old, new):
    result, delta = applied(old, new)
    assert result == new
    assert delta.removed == sorted(set(delta.removed)) and delta.added == sorted(set(delta.added))
    assert len(old) - len(delta.removed) == len(new) - len(delta.added)  # what is kept is kept once


@given(ROWS)
def test_an_unchanged_export_has_an_empty_delta(rows):
    assert not row_delta(rows, list(rows))


def row(key):
    return (key, "customer", "", "")


def test_an_inserted_row_moves_no_other_row():
    old = [row(k) for k in "abcdef"]
    new = [row("z"), *old[:3], row("y"), *old[3:]]
    result, delta = applied(old, new)
    assert result == new
    assert (delta.removed, delta.added) == ([], [0, 4])


def test_a_moved_row_is_one_removal_and_one_addition():
    old = [row(k) for k in "abcdef"]
    new = [old[5], *old[:5]]
    _, delta = applied(old, new)
    assert (delta.removed, delta.added) == ([5], [0])


def test_duplicate_rows_are_matched_one_for_one():
    old = [row("a"), row("a"), row("b")]
    new = [row("a"), row("b")]
    result, delta = applied(old, new)
    assert result == new and len(delta) == 1


def snapshot(rows):
    columns = [list(c) for c in zip(*rows, strict=True)] if rows else [[], [], [], []]
    return SourceSnapshot("B", "B.csv", len(rows), *columns, list(range(2, len(rows) + 2)), [])


@given(ROWS, ROWS)
def test_a_snapshot_delta_applies_like_a_row_delta(old, new):
    """Exports of the same length take the column-by-column path; every delta must give the new rows back."""
    delta = snapshot_delta(snapshot(old), snapshot(new))
    assert splice(old, delta.removed, delta.added, [new[j] for j in delta.added]) == rows_of(snapshot(new))


@given(ROWS, ROWS, st.data())
def test_a_snapshot_delta_by_line_number_gives_the_new_rows(old, new, data):
    """Rows on arbitrary (increasing) lines: the rows kept by line number must still give the new rows back."""
    lines = st.lists(st.integers(2, 10_000), unique=True, min_size=len(old) + len(new))
    old_lines = sorted(data.draw(lines)[: len(old)])
    new_lines = sorted(data.draw(lines)[: len(new)])
    before, after = snapshot(old), snapshot(new)
    before.lines[:], after.lines[:] = old_lines, new_lines
    delta = snapshot_delta(before, after)
    assert splice(old, delta.removed, delta.added, [new[j] for j in delta.added]) == new

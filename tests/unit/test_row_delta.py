"""Row deltas: applying the delta between two exports to the first gives the second, row for row."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from keysync.domain.row_delta import apply_delta, row_delta

ROWS = st.lists(st.tuples(st.sampled_from("abcde"), st.just("customer"), st.just(""), st.sampled_from(["", "t"])))


def applied(old, new):
    delta = row_delta(old, new)
    return apply_delta(old, delta.removed, delta.added, [new[j] for j in delta.added]), delta


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

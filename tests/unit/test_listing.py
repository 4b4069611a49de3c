"""The listing presenter: whatever the cells, every line fits the width, and --wide keeps every value whole."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from rich.cells import cell_len

from keysync.cli.listing import Style, render, second

cells = st.one_of(st.text(max_size=60), st.integers(), st.just("2026-01-02T03:04:05.123456+00:00"))
tables = st.integers(min_value=1, max_value=8).flatmap(
    lambda n: st.tuples(st.just([f"col_{i}" for i in range(n)]), st.lists(st.lists(cells, min_size=n, max_size=n)))
)


@given(tables, st.integers(min_value=20, max_value=200))
def test_every_line_fits_the_width_and_each_row_is_one_line(table, width):
    columns, rows = table
    lines, left_out = render("title", columns, rows, Style(limit=0), width=width)
    assert left_out == 0 and len(lines) == 3 + len(rows)
    assert all(cell_len(line) <= width for line in lines)
    assert not any("\n" in line for line in lines)


def test_wide_keeps_values_whole_and_limit_counts_what_it_leaves_out():
    rows = [["K" * 200, 1], ["short", 22], ["x", 3]]
    cut, left_out = render("t", ["key", "n"], rows, Style(limit=2), width=40)
    whole, _ = render("t", ["key", "n"], rows, Style(limit=0, wide=True), width=40)
    assert left_out == 1 and len(cut) == 5 and cut[3].startswith("K" * 10) and "…" in cut[3] and len(cut[3]) <= 40
    assert "K" * 200 in whole[3] and whole[4].endswith("22")  # numbers are right-aligned


def test_times_show_to_the_second_and_ids_are_never_cut():
    lines, _ = render("t", ["run_id", "at", "what"], [["abcdef123456", "2026-01-02T03:04:05.9+00:00", "w" * 90]],
                      Style(), width=50)  # fmt: skip
    assert lines[3].startswith("abcdef123456  2026-01-02 03:04:05  www") and lines[3].endswith("…")
    assert second("CUST-1") == "CUST-1"

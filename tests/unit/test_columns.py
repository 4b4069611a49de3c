"""The compact encodings of stored observation columns read back exactly, and old plain lists still read; a column
built in runs reads like its list."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keysync.domain.columns import Runs, pack_lines, pack_text, text_array, text_length, unpack_lines, unpack_text


@given(st.lists(st.text()))
def test_text_columns_round_trip(values):
    packed = pack_text(values)
    assert unpack_text(packed) == values
    assert text_length(packed) == len(values)


@settings(deadline=None)  # the first call loads pyarrow's compute functions
@given(st.lists(st.text(st.characters(exclude_categories=("Cs",)))))
def test_text_columns_read_into_arrow_alike(values):
    assert text_array(pack_text(values)).to_pylist() == values


def test_a_text_column_holding_a_lone_surrogate_is_not_arrow_text():
    for column in (pack_text(["A", "\ud800"]), ["A", "\ud800"]):
        with pytest.raises(UnicodeEncodeError):
            text_array(column)


@given(st.lists(st.integers(min_value=1, max_value=10_000)))
def test_line_numbers_round_trip(lines):
    assert unpack_lines(pack_lines(lines)) == lines


def test_consecutive_lines_become_one_run_and_plain_lists_still_read():
    assert pack_lines([2, 3, 4, 5, 9, 10]) == [[2, 4], [9, 2]]
    assert unpack_lines([2, 3, 7]) == [2, 3, 7]
    assert unpack_text(["a", "b"]) == ["a", "b"]
    assert pack_text(["a\nb", "c"]) == ["a\nb", "c"]


def test_a_column_in_runs_reads_like_its_list():
    runs = Runs()
    runs.repeat("A", 3)
    runs.extend(["x", "y"])
    runs.repeat("B", 0)
    runs.extend([])
    runs.repeat("C", 2)
    plain = ["A", "A", "A", "x", "y", "C", "C"]
    assert list(runs) == plain and len(runs) == 7 and runs == plain and runs != plain[:-1]
    assert [runs[i] for i in range(-7, 7)] == plain + plain
    with pytest.raises(IndexError):
        runs[7]

"""The count of valid rows behind the suspect-export guard: its byte-level pre-filter against the plain rule."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from keysync.application.suspect import _has_ascii_alnum, valid_rows
from keysync.domain.normalization import NormalizationRules, normalize_key
from keysync.domain.observations import SourceSnapshot, row_schema

KEYS = st.lists(
    st.text(alphabet=["a", "Z", "0", "9", "-", "*", " ", "é", "Ж", "Ａ", "@", "[", "`", "{", "/"], max_size=4)
)


@settings(max_examples=300, deadline=None)
@given(keys=KEYS, start=st.integers(0, 3), large=st.booleans())
def test_keys_holding_an_ascii_letter_or_digit_are_found_on_their_bytes(
    keys: list[str], start: int, large: bool
) -> None:
    column = pa.array(keys, pa.large_string() if large else pa.string()).slice(min(start, len(keys)))

    expected = pc.match_substring_regex(column, "[A-Za-z0-9]").to_pylist()
    assert _has_ascii_alnum(column).tolist() == expected


@settings(max_examples=100, deadline=None)
@given(keys=KEYS)
def test_valid_rows_are_those_whose_key_survives_normalization(keys: list[str]) -> None:
    rules = NormalizationRules()
    n = len(keys)
    blank = pa.array([""] * n, pa.string())
    rows = pa.table([pa.array(keys, pa.string()), blank, blank, blank, pa.array(range(n), pa.int64())], row_schema())
    snapshot = SourceSnapshot(system="B", file="b.csv", rows_read=n, rows=rows, rejected=[])

    assert valid_rows(snapshot, rules) == sum(normalize_key(key, rules) != "" for key in keys)

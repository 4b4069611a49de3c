"""A changed export as its delta on the rows before it: applied to those rows, the delta gives the new rows, in
their order, duplicates included, whatever changed; rows only removed and inserted cost only themselves."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from keysync.domain.observations import row_schema
from keysync.domain.row_delta import _pairs, row_delta
from keysync.domain.run import spliced

VALUES = st.lists(st.sampled_from(["K1", "K2", "K3", "k1", "K4"]), max_size=30)  # few values: many duplicates


def hashes(values: list[str]) -> np.ndarray:
    digests = [hashlib.sha256(v.encode()).digest() for v in values]
    return np.array([np.frombuffer(d[:16], dtype=np.uint64) for d in digests], dtype=np.uint64).reshape(-1, 2)


def rows(values: list[str]) -> pa.Table:
    n = len(values)
    columns = [values, ["c"] * n, [""] * n, [""] * n, list(range(2, n + 2))]
    return pa.table(columns, schema=row_schema())


def applied(base: list[str], new: list[str]) -> list[str]:
    delta = row_delta(hashes(base), hashes(new))
    added = rows(new).take(pa.array(delta.added_at)).append_column("at", pa.array(delta.added_at, pa.int64()))
    result = spliced(rows(base), [delta.removed], [added], list(range(2, len(new) + 2)))
    assert result is not None
    return result.column("key").to_pylist()


@given(VALUES, st.data())
def test_removals_and_insertions_of_unique_rows_cost_only_themselves(base: list[str], data: st.DataObject) -> None:
    unique = [f"{v}-{i}" for i, v in enumerate(base)]
    kept = [v for v in unique if data.draw(st.booleans())]
    new = list(kept)
    inserted = data.draw(st.lists(st.sampled_from(["N1", "N2", "N3"]), max_size=8, unique=True))
    for value in inserted:
        new.insert(data.draw(st.integers(0, len(new))), value)
    delta = row_delta(hashes(unique), hashes(new))
    assert (len(delta.removed), len(delta.added_at)) == (len(unique) - len(kept), len(inserted))
    assert applied(unique, new) == new


@given(VALUES, VALUES)
def test_the_delta_between_any_two_exports_gives_the_new_rows(base: list[str], new: list[str]) -> None:
    assert applied(base, new) == new


def test_rows_moved_or_duplicates_out_of_order_are_said_again() -> None:
    delta = row_delta(hashes(["K1", "K2", "K3"]), hashes(["K3", "K2", "K1"]))
    assert delta.size == 4 and applied(["K1", "K2", "K3"], ["K3", "K2", "K1"]) == ["K3", "K2", "K1"]
    moved = row_delta(hashes(["K1", "K2", "K3", "K4"]), hashes(["K4", "K1", "K2", "K3"]))
    assert (moved.removed.tolist(), moved.added_at.tolist()) == ([3], [0])  # the moved row alone
    assert applied(["K1", "K1", "K2"], ["K1", "K2", "K1"]) == ["K1", "K2", "K1"]


def test_rows_pair_only_when_both_halves_of_their_hash_agree() -> None:
    base, new = hashes(["K1", "K2"]), hashes(["K1", "K2"])
    new[1, 1] ^= np.uint64(1)  # the same first half, another second half: not the same row
    delta = row_delta(base, new)
    assert delta is not None and delta.removed.tolist() == [1] and delta.added_at.tolist() == [1]


@given(VALUES, VALUES, st.booleans())
def test_rows_pair_alike_by_hash_table_and_by_sorting(base: list[str], new: list[str], unique: bool) -> None:
    if unique:  # the hash table is used only when no hash repeats
        base, new = list(dict.fromkeys(base)), list(dict.fromkeys(new))
    by_table, by_sorting = _pairs(hashes(base), hashes(new), lookup_rows=0), _pairs(hashes(base), hashes(new))
    assert by_table.tolist() == by_sorting.tolist()

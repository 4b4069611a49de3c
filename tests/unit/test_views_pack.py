"""The compact text the views store identities in (run keys, first detections), and the forms earlier versions
stored, which still load."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from keysync.projections.views import _pack, _unpack


@given(st.lists(st.text()))
def test_identities_come_back_as_they_were_stored(identities: list[str]) -> None:
    packed = _pack(pa.array(identities, pa.string()))
    assert packed.startswith("z") and packed.isascii()
    assert _unpack(packed).to_pylist() == identities


def test_chunked_and_large_identities_are_stored_as_text() -> None:
    assert _unpack(_pack(pa.chunked_array([["a"], [], ["b"]], pa.large_string()))).to_pylist() == ["a", "b"]
    assert _unpack(_pack(pa.chunked_array([], pa.string()))).to_pylist() == []


def test_the_forms_earlier_versions_stored_still_load() -> None:
    assert _unpack("tCUST-1\nCUST-2").to_pylist() == ["CUST-1", "CUST-2"]
    assert _unpack('j["line\\nbreak", ""]').to_pylist() == ["line\nbreak", ""]

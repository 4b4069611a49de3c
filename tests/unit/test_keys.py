"""key_problem: the one definition of an unusable key, shared by the reader and the sandbox."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keysync.domain.keys import key_problem
from keysync.domain.sandbox_rows import row_problem


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("CUST-1", None),
        ("a\tb", None),  # tab is allowed
        (" cust 1 ", None),  # trimming is normalization's business
        ("ÜBER-€", None),
        ("\u00a0x", None),  # no-break space: whitespace, not a control character
        ("K" * 8, None),
        ("K" * 9, "key longer than 8 characters (9)"),
        ("", "empty key"),
        ("   ", "empty key"),
        ("\t", "empty key"),
        ("\u3000\u2003", "empty key"),  # Unicode whitespace only
        ("a\x00b", "control character \\x00 in key"),
        ("a\nb", "control character \\x0a in key"),
        ("a\rb", "control character \\x0d in key"),
        ("a\x1bb", "control character \\x1b in key"),
        ("a\x7fb", "control character \\x7f in key"),
        ("a\x85b", "control character \\x85 in key"),  # C1
        ("a\x9fb", "control character \\x9f in key"),
        ("a\xa0b", None),  # just past C1
    ],
)
def test_key_problem(key: str, problem: str | None) -> None:
    assert key_problem(key, 8) == problem


def test_the_first_rule_broken_is_the_one_named() -> None:
    assert key_problem(" \x01" + " " * 20, 8) == "control character \\x01 in key"  # control, blank and too long
    assert key_problem(" " * 20, 8) == "empty key"  # blank and too long
    assert key_problem("ab\x02c\x03", 8) == "control character \\x02 in key"  # the first control character


def test_length_counts_characters_not_bytes() -> None:
    assert key_problem("é" * 8, 8) is None
    assert key_problem("😀" * 9, 8) == "key longer than 8 characters (9)"


@given(key=st.text(max_size=12), limit=st.integers(1, 10))
def test_the_sandbox_predicts_with_the_same_rule(key: str, limit: int) -> None:
    assert row_problem([key, "", "", ""], limit) == (key_problem(key, limit) or "")


@given(key=st.text(max_size=12), limit=st.integers(1, 10))
def test_a_usable_key_has_a_visible_character_and_fits(key: str, limit: int) -> None:
    if key_problem(key, limit) is None:
        assert key.strip() and len(key) <= limit
        assert not any((ord(c) < 0x20 and c != "\t") or 0x7F <= ord(c) <= 0x9F for c in key)

"""Spreadsheet safety for report cells: CSV (formula) injection, neutralised by the OWASP rule.

A spreadsheet that opens a CSV file treats a cell beginning with ``=``, ``+``, ``-`` or ``@`` as a formula, and a
tab or carriage return in front of one hides it from a quick look. Keys come from other systems, so a key such as
``=HYPERLINK("http://x","y")`` must not become a live formula in someone's spreadsheet. The OWASP rule: prefix
such a cell with a single quote, so that it is read as text.

Only text is escaped: a negative number in an integer column is a number, not a formula, and stays as it is. Text
that merely looks like a number (a key ``-1``) is escaped all the same: the rule cannot tell a key from a formula
by its look.

The escaping happens when a report is written; the event store keeps every value as it was read. The same rule
over whole Arrow arrays is ``keysync.infrastructure.csv_arrow.neutralised_array``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# The characters that start a formula (or hide one), from OWASP's "CSV Injection" page. All are ASCII, so in
# UTF-8 a text starts with one of them exactly when its first byte is that character's byte.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"


def neutralised(value: str) -> str:
    """One text cell, quoted if a spreadsheet would read it as a formula."""
    return QUOTE + value if value.startswith(FORMULA_TRIGGERS) else value


def neutralised_values(values: Sequence[Any]) -> list[Any]:
    """A column of Python values: text is neutralised, anything else (numbers, None) is kept as it is."""
    return [QUOTE + v if isinstance(v, str) and v.startswith(FORMULA_TRIGGERS) else v for v in values]

"""Rendering for the terminal: rich tables on stdout, with data made safe to print."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def safe(value: Any) -> str:
    """Escape control characters (ESC, NUL, C1...) so data can never drive the terminal."""
    text = "" if value is None else str(value)
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def stdout() -> Console:
    return Console(highlight=False, soft_wrap=False)


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any] | Mapping[str, Any]]) -> Table:
    grid = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in columns:
        grid.add_column(column, overflow="fold", min_width=len(column))
    for row in rows:
        values = [row[c] for c in columns] if isinstance(row, Mapping) else row
        # Text, not str: a key like "[bold]" must print as itself, not as rich markup.
        grid.add_row(*(Text(safe(v)) for v in values))
    return grid

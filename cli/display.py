"""Rendering for the terminal: rich tables on stdout, with data made safe to print."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from keysync.infrastructure.terminal_safety import escape_controls


def safe(value: Any) -> str:
    """Escape control characters (ESC, NUL, C1...), bidirectional controls and lone surrogates as ``\\x1b``,
    ``\\u202e``..., so data can never drive the terminal nor disguise itself on it."""
    return escape_controls(value)


class _SafeConsole(Console):
    """A console whose plain strings are escaped before rich renders them (rich's own styling is untouched): a
    command that prints data in a line of its own cannot forget to escape it."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        super().print(*(safe(o) if isinstance(o, str) else o for o in objects), **kwargs)


def stdout() -> Console:
    return _SafeConsole(highlight=False, soft_wrap=False)


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any] | Mapping[str, Any]]) -> Table:
    # Titles quote data too (a run id, a scenario's name): escaped, and never read as rich markup.
    grid = Table(title=Text(safe(title)), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in columns:
        grid.add_column(column, overflow="fold", min_width=len(column))
    for row in rows:
        values = [row[c] for c in columns] if isinstance(row, Mapping) else row
        # Text, not str: a key like "[bold]" must print as itself, not as rich markup.
        grid.add_row(*(Text(safe(v)) for v in values))
    return grid

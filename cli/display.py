"""Rendering for the terminal: rich tables on stdout, with data made safe to print.

rich is imported by the functions that render, not here: every command imports this module for ``safe``, and
most print no table.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from keysync.infrastructure.terminal_safety import escape_controls

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


def safe(value: Any) -> str:
    """Escape control characters (ESC, NUL, C1...), bidirectional controls and lone surrogates as ``\\x1b``,
    ``\\u202e``..., so data can never drive the terminal nor disguise itself on it."""
    return escape_controls(value)


@functools.cache
def _safe_console() -> type[Console]:
    from rich.console import Console

    class SafeConsole(Console):
        """A console whose plain strings are escaped before rich renders them (rich's own styling is untouched): a
        command that prints data in a line of its own cannot forget to escape it."""

        def print(self, *objects: Any, **kwargs: Any) -> None:
            super().print(*(safe(o) if isinstance(o, str) else o for o in objects), **kwargs)

    return SafeConsole


def stdout() -> Console:
    return _safe_console()(highlight=False, soft_wrap=False)


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any] | Mapping[str, Any]]) -> Table:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    # Titles quote data too (a run id, a scenario's name): escaped, and never read as rich markup.
    grid = Table(title=Text(safe(title)), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    # Text, not str: a key like "[bold]" must print as itself, not as rich markup.
    cells = [[Text(safe(v)) for v in ([row[c] for c in columns] if isinstance(row, Mapping) else row)] for row in rows]
    for i, column in enumerate(columns):
        # An id is copied from the table into the next command: it never wraps. Other headers and values wrap
        # (a header of its own width could push the last columns off the terminal).
        whole = max((len(row[i].plain) for row in cells), default=0) if column in IDS else 0
        grid.add_column(column, overflow="fold", min_width=max(len(column), whole) if whole else None)
    for row in cells:
        grid.add_row(*row)
    return grid


IDS = frozenset({"run_id", "event_id", "operation_id"})

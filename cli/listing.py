"""The listings of the command line (registry list, history, audit, trends, compare, key, sandbox status): one
line per row that fits the terminal, the first --limit rows, and a pager when a person reads them.

A listing is plain text, not a rich table: 37,000 rows folded over several lines each were unreadable and took
rich 40 s to lay out. Every cell is escaped (see ``display.safe``) before it is measured.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from textwrap import wrap
from typing import Any

import attrs
import click
from rich.cells import cell_len, set_cell_size

from keysync.cli.display import IDS, safe

DEFAULT_LIMIT = 50
GAP = "  "
ELLIPSIS = "…"
NARROWEST = 4  # a cut column keeps at least this much (three characters and the ellipsis)
_ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


@attrs.frozen
class Style:
    """How a listing is shown: how many rows, cut to the terminal or whole, through a pager or not."""

    limit: int = DEFAULT_LIMIT  # 0: every row
    wide: bool = False
    pager: bool = True


def listing_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--limit N``, ``--wide`` and ``--no-pager``, handed to the command as one ``style`` argument."""

    @functools.wraps(command)
    def wrapper(*args: Any, limit: int, wide: bool, no_pager: bool, **kwargs: Any) -> Any:
        return command(*args, style=Style(limit=limit, wide=wide, pager=not no_pager), **kwargs)

    options = (
        click.option("--limit", type=click.IntRange(min=0), default=DEFAULT_LIMIT, show_default=True,
                     help="Show the first N rows of the table (0: all); --json and --csv always hold every row."),
        click.option("--wide", is_flag=True, help="Show every value whole, however wide the lines get."),
        click.option("--no-pager", "no_pager", is_flag=True, help="Never page the table, even on a terminal."),
    )  # fmt: skip
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def second(value: Any) -> Any:
    """An ISO 8601 time to the second, as people read it (``2026-01-02 03:04:05``); anything else unchanged."""
    if isinstance(value, str) and _ISO_TIME.match(value):
        return value[:19].replace("T", " ")
    return value


# Never cut: what a person copies into the next command (a run id, a master key for `key` or `reactivate`).
WHOLE = IDS | {"master_key"}


def render(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any] | Mapping[str, Any]],
    style: Style,
    *,
    keep: Iterable[str] = WHOLE,
    width: int | None = None,
) -> tuple[list[str], int]:
    """The listing's lines (title, header, rule, then one line per shown row) and how many rows were left out.

    Ids and master keys (columns named ``..._id`` or in ``keep``: they are copied into the next command) and times
    (columns named ``at`` or ``..._at``, shown to the second) are never cut; the others are cut from the widest down
    until the line fits ``width`` (the terminal's).
    """
    shown = rows[: style.limit] if style.limit else rows
    times = [i for i, c in enumerate(columns) if c == "at" or c.endswith("_at")]
    cells = [_cells(row, columns, times) for row in shown]
    numeric = [bool(shown) and all(_is_number(_value(row, columns, i)) for row in shown) for i in range(len(columns))]
    header = [safe(c) for c in columns]
    heads = [_width(h) for h in header]
    body = [max((_width(row[i]) for row in cells), default=0) for i in range(len(columns))]
    limit = width or terminal_width()
    kept = [c in set(keep) or c.endswith("_id") or i in times for i, c in enumerate(columns)]
    widths = _fitted(heads, body, kept, sys.maxsize if style.wide else limit)
    lines = [safe(title), _line(header, widths, [False] * len(columns)), _line(["─" * w for w in widths], widths, [])]
    lines += [_line(row, widths, numeric) for row in cells]
    if not style.wide:
        lines = [_cut(line, limit) if _width(line) > limit else line for line in lines]
    return lines, len(rows) - len(shown)


def fits(columns: Sequence[str], rows: Sequence[Sequence[Any]], width: int | None = None) -> bool:
    """Whether every row fits the terminal whole (headers and values uncut)."""
    lines, _ = render("", columns, rows, Style(limit=0, wide=True))
    return max(_width(line) for line in lines) <= (width or terminal_width())


def show(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any] | Mapping[str, Any]],
    style: Style,
    *,
    keep: Iterable[str] = WHOLE,
    before: Sequence[str] = (),
    after: Sequence[str] = (),
) -> None:
    """Print a listing (``before`` and ``after``: sentences around it, wrapped to the terminal's width but never
    cut), and say on stderr how many rows it left out."""
    lines, left_out = render(title, columns, rows, style, keep=keep)
    emit([*_wrapped(before, style), *lines, *_wrapped(after, style)], style)
    say_left_out(left_out)


def _wrapped(sentences: Sequence[str], style: Style) -> list[str]:
    if style.wide:
        return [safe(s) for s in sentences]
    width = terminal_width()
    # Words are never split: an id or a file name in a sentence must stay whole, to be copied.
    return [line for s in sentences for line in wrap(safe(s), width, break_long_words=False, break_on_hyphens=False)]


def say_left_out(left_out: int) -> None:
    if left_out:
        click.echo(f"{left_out} more not shown (use --limit 0 for all, or --json)", err=True)


def emit(lines: Sequence[str], style: Style) -> None:
    """The lines on stdout; through the pager (``$PAGER``, else less) when stdout is a terminal and they do not
    fit on one screen, as git does."""
    text = "\n".join(lines)
    if style.pager and _on_terminal() and len(lines) >= shutil.get_terminal_size().lines:
        os.environ.setdefault("LESS", "FRX")  # git's: no screen clearing on exit, colours kept
        click.echo_via_pager(text)
    else:
        click.echo(text)


def terminal_width() -> int:
    """$COLUMNS, else the terminal's width, else 80 (output into a pipe or a file)."""
    return max(shutil.get_terminal_size((80, 24)).columns, 20)


def _on_terminal() -> bool:
    return sys.stdout.isatty() and sys.stdin.isatty()


def _fitted(header: list[int], body: list[int], kept: list[bool], limit: int) -> list[int]:
    """Widths that fit ``limit``: headers wider than their values are cut first, then the widest cuttable columns
    are narrowed, to the same width."""
    natural = [max(h, b) for h, b in zip(header, body, strict=True)]
    body = [n if k else b for n, b, k in zip(natural, body, kept, strict=True)]  # a kept column keeps its header
    room = limit - len(GAP) * (len(natural) - 1)
    if sum(natural) <= room:
        return natural
    if sum(body) <= room:  # the values fit: the headers share what is left
        widths, spare = list(body), room - sum(body)
        for i, (h, b) in enumerate(zip(header, body, strict=True)):
            grow = min(max(h - b, 0), spare)
            widths[i] += grow
            spare -= grow
        return widths
    room -= sum(b for b, k in zip(body, kept, strict=True) if k)
    cuttable = sorted(b for b, k in zip(body, kept, strict=True) if not k)
    cap, left = 0, room
    for n, w in enumerate(cuttable):
        share = left // (len(cuttable) - n)
        if w > share:
            cap = share
            break
        left -= w
    return [b if k else max(min(b, cap), min(b, NARROWEST)) for b, k in zip(body, kept, strict=True)]


def _value(row: Sequence[Any] | Mapping[str, Any], columns: Sequence[str], i: int) -> Any:
    return row[columns[i]] if isinstance(row, Mapping) else row[i]


def _cells(row: Sequence[Any] | Mapping[str, Any], columns: Sequence[str], times: list[int]) -> list[str]:
    values = [row[c] for c in columns] if isinstance(row, Mapping) else list(row)
    for i in times:
        values[i] = second(values[i])
    # One line per row: a line break inside a value would start another.
    return [safe(v).replace("\n", " ").replace("\t", " ") for v in values]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _width(text: str) -> int:
    return len(text) if text.isascii() else cell_len(text)


def _cut(text: str, width: int) -> str:
    if _width(text) <= width:
        return text
    if text.isascii():
        return text[: width - 1] + ELLIPSIS
    return set_cell_size(text, width - 1).rstrip() + ELLIPSIS


def _line(cells: Sequence[str], widths: Sequence[int], right: Sequence[bool]) -> str:
    parts = []
    for i, (cell, width) in enumerate(zip(cells, widths, strict=True)):
        text = _cut(cell, width)
        pad = " " * (width - _width(text))
        parts.append(pad + text if right and right[i] else text + pad)
    return GAP.join(parts).rstrip()

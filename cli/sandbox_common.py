"""What the sandbox's commands share: options, error handling, reading keys, and the summary after each change."""

from __future__ import annotations

import csv
import functools
import io
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from keysync.cli.display import safe, table
from keysync.cli.options import load, message, print_json, user_errors
from keysync.domain.observations import SYSTEMS

if TYPE_CHECKING:
    from keysync.application.sandbox import Change, SandboxService
    from keysync.application.sandbox_views import SandboxStatus

STATUS_COLUMNS = {  # status column -> heading (the table fits 80 columns; JSON and CSV have matched_in_A too)
    "rows": "rows",
    "unique_keys": "keys",
    "only_here": "only here",
    "out_of_authority": "not in A",
    "missing_vs_A": "missing vs A",
    "duplicates": "dups",
    "rejected": "rejected",
}


def sandbox_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """The sandbox's expected failures as one clear line and exit 1 (the rest as every command does)."""

    @functools.wraps(command)
    @user_errors
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except _sandbox_failures() as error:  # an except clause is evaluated only once something was raised
            raise click.ClickException(safe(str(error))) from error

    return wrapper


def _sandbox_failures() -> tuple[type[Exception], ...]:
    # Imported when needed: they come with the sandbox's service, which --help need not load.
    from keysync.application.sandbox import NoRunYetError
    from keysync.application.sandbox_ports import SandboxBusy, SandboxFilesError, StateFileError
    from keysync.application.sandbox_scenarios import ScenarioError
    from keysync.domain.sandbox import SandboxError

    return SandboxError, SandboxFilesError, SandboxBusy, StateFileError, ScenarioError, NoRunYetError


def parse_systems(_ctx: click.Context, _param: click.Parameter, value: str | None) -> list[str] | None:
    if value is None:
        return None
    systems = [s.strip().upper() for s in value.split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown or not systems:
        raise click.BadParameter(f"{value!r}: give systems from {', '.join(SYSTEMS)}, comma-separated (e.g. B,C)")
    return systems


def systems_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-s", "--systems", required=True, callback=parse_systems, help="Systems, comma-separated (e.g. B,C)."
    )(command)


def user_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--user", help="Who does this, for the history (default: the OS user).")(command)


def service(config_path: Path | None, user: str | None = None) -> SandboxService:
    from keysync.application.sandbox_bootstrap import build_sandbox

    return build_sandbox(load(config_path), actor=user)


def interactive() -> bool:
    """Whether someone at a terminal can answer a question (tests replace this)."""
    return sys.stdin.isatty()


def confirm(question: str, yes: bool, what: str) -> None:
    """Go on if --yes, or if the person at the terminal says so; without a terminal, refuse."""
    if yes:
        return
    if not interactive():
        raise click.ClickException(f"refusing to {what} without --yes: there is no terminal to confirm on")
    click.confirm(question, abort=True, err=True)


def confirm_replacing_exports(sandbox: SandboxService, yes: bool) -> None:
    """A first edit of the sandbox writes A-E over whatever files are there: ask first if they hold data."""
    found = sandbox.files_not_its_own()
    if found:
        names = ", ".join(str(path) for path in found)
        confirm(
            f"{names} hold data the sandbox did not write, which undo cannot bring back. Replace them?",
            yes,
            f"replace {names} (data the sandbox did not write; sandbox.input_dir keeps its files apart)",
        )


def read_keys(source: str) -> list[str]:
    """Keys from a file ('-' = standard input): one a line, or a CSV with a source_key column. Bytes that are not
    UTF-8 are kept (as surrogate escapes), so corrupt keys can be added from a file too."""
    try:
        data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as error:
        raise click.ClickException(f"cannot read {source}: {error.strerror or error}") from error
    text = data.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    lines = text.splitlines()
    if lines and "source_key" in [f.strip().lower() for f in next(csv.reader([lines[0]]))]:
        rows = csv.DictReader(io.StringIO(text, newline=""))
        rows.fieldnames = [f.strip().lower() for f in rows.fieldnames or []]
        return [row["source_key"] for row in rows if row.get("source_key") is not None]
    return [line for line in lines if line.strip()]


def shown_keys(keys: Iterable[str], limit: int = 5) -> str:
    keys = list(keys)
    text = ", ".join(safe(k) for k in keys[:limit])
    return text + (f" (and {len(keys) - limit} more)" if len(keys) > limit else "")


def status_table(status: SandboxStatus, title: str = "Sandbox") -> Any:
    rows = [[s, *(status.systems[s][c] for c in STATUS_COLUMNS)] for s in SYSTEMS]
    return table(title, ["system", *STATUS_COLUMNS.values()], rows)


def hints_line(status: SandboxStatus) -> str:
    h = status.hints
    line = (
        f"A run would report {h['out_of_authority']} out-of-authority key(s), {h['propagation_gaps']} propagation "
        f"gap(s), {h['duplicates']} duplicate(s), {h['rejected_rows']} rejected row(s); "
        f"{status.common_to_all} key(s) are in every system."
    )
    return f"{line} {status.run_would_fail}." if status.run_would_fail else line


def report_change(change: Change, said: str, as_json: bool) -> None:
    """After every change: what was done (stderr), then the per-system totals and the hints; and, if the reports
    could not be brought up to date after it, why (the change itself is done)."""
    if as_json:
        print_json({"operations": change.operations, "status": change.status.as_dict()})
    else:
        message(f"{said} (operation {change.operation['operation_id']}).")
        show_status(change.status)
    if change.reports_behind:
        message(f"Warning: the change is saved, but {change.reports_behind}.")


def show_status(status: SandboxStatus) -> None:
    """The per-system totals and the hints, as a message (stderr): the summary after an operation."""
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=False).print(status_table(status))
    message(hints_line(status))

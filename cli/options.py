"""Options and error handling shared by every command.

Every command imports this module, so it imports little: the config, the store and the engine are imported by
the functions that use them, and ``keysync --help`` or ``config show`` never load pyarrow or the event store.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import sqlite3
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import click

from keysync.cli.display import safe

if TYPE_CHECKING:
    from keysync.infrastructure.config import Config


def config_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``-c/--config`` after the command's own name; defaults to $KEYSYNC_CONFIG, else ./keysync-config.yaml."""
    return click.option(
        "-c",
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Config file (default: $KEYSYNC_CONFIG, else ./keysync-config.yaml).",
    )(command)


def json_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(command)


# What this process has loaded: the store its config names (for error messages) and whether it has said that it
# runs on the defaults (a batch or a shell loads the config once per command); ``adjust``: what every config loaded
# gets applied (see ``configs_adjusted``).
_loaded = SimpleNamespace(store="", said_defaults=False, said_inert=set(), adjust=None)


@contextlib.contextmanager
def configs_adjusted(adjust: Callable[[Config], Config]) -> Iterator[None]:
    """Inside, every config loaded has ``adjust`` applied: the commands a scenario's steps run in this process then
    work under the scenario's rules, as its run does."""
    before, _loaded.adjust = _loaded.adjust, adjust
    try:
        yield
    finally:
        _loaded.adjust = before


def load(config_path: Path | None) -> Config:
    from keysync.infrastructure.config import load_config
    from keysync.infrastructure.logs import setup_logging

    config = load_config(config_path)
    if config.path is None and not _loaded.said_defaults:
        # No -c, no $KEYSYNC_CONFIG and no ./keysync-config.yaml: say so, or it looks configured.
        message(f"No config file ({Path.cwd() / 'keysync-config.yaml'} does not exist): using the defaults.")
        _loaded.said_defaults = True
    setup_logging(config.logs_dir)
    _loaded.store = store_label(config)
    for said in inert_settings(config):
        if said not in _loaded.said_inert:
            _loaded.said_inert.add(said)
            message(f"{config.path}: {said}")
    return config if _loaded.adjust is None else _loaded.adjust(config)


def inert_settings(config: Config) -> list[str]:
    """Settings of the original config schema that this version accepts but does not act on, when set otherwise
    than their defaults: saying so beats silence."""
    from keysync.infrastructure.config import Processing

    said = []
    if config.processing.checkpoint_interval != Processing().checkpoint_interval:
        said.append("processing.checkpoint_interval has no effect: a run checkpoints after each system it reads")
    if config.simulation.failures.simulate_timeout:
        said.append("simulation.failures.simulate_timeout has no effect: no mock export is made to time out")
    return said


def store_label(config: Config) -> str:
    """The store, as a person would name it: its file, or its PostgreSQL server, database and schema."""
    if config.store.backend != "postgres":
        return str(config.store.path)
    from keysync.application.bootstrap import postgres_target
    from keysync.infrastructure.config import ConfigError

    try:
        return str(postgres_target(config))
    except ConfigError:
        return "PostgreSQL"


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors a user can cause into one clear line on stderr and exit 1, never a traceback. The line
    is escaped: it may quote keys or file names, which must never drive the terminal."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return _translated(command, *args, **kwargs)
        except click.ClickException as error:
            error.message = safe(error.message)
            raise

    return wrapper


def _translated(command: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return command(*args, **kwargs)
    except click.ClickException:
        raise  # already a line for the user
    except BrokenPipeError:
        raise  # the reader of our output went away (| head): not an error to report
    except Exception as error:
        line = _user_error_line(error)
        if line is None:
            raise
        raise click.ClickException(line) from error


def _user_error_line(error: Exception) -> str | None:
    """The line to show for an error a user can cause, or None for any other (a bug: its traceback is wanted).

    The error classes are imported here, when something went wrong, rather than at the top: they come with the
    store and the engine, which a command that needs neither should not pay for on every start."""
    from keysync.infrastructure.config import ConfigError

    if isinstance(error, ConfigError):  # the commonest, often before anything else is loaded: check it alone first
        return str(error)

    from eventsourcing.domain import EventSourcingError
    from eventsourcing.persistence import PersistenceError
    from eventsourcing.utils import TopicError

    from keysync.application.as_of import AsOfError
    from keysync.application.ports import RunInProgress, StoreUnavailable
    from keysync.application.reconcile import RunFailed
    from keysync.application.service import ConflictError, HistoryError, MigrationError, ReportsNotWritten
    from keysync.domain.registry import RegistryError
    from keysync.infrastructure.report_files import ReportWriteError

    if isinstance(error, (
        RegistryError, ConflictError, RunInProgress, HistoryError, MigrationError, AsOfError,
        StoreUnavailable, ReportsNotWritten,
    )):  # fmt: skip
        return str(error)
    if isinstance(error, RunFailed):
        return f"run {error.run.run_id} failed: {error.reason}"
    if isinstance(error, PersistenceError):
        return _store_problem(error)
    if isinstance(error, sqlite3.Error):  # eventsourcing lets some through unwrapped, e.g. opening a full disk's store
        return _store_problem(error)
    if isinstance(error, EventSourcingError | TopicError):  # e.g. an event whose class this version does not know
        return f"the event store holds something this version cannot read: {error}"
    if isinstance(error, ReportWriteError):  # says which report, why, and that nothing stored is lost
        return str(error)
    if isinstance(error, OSError):
        return f"{error.strerror or error}: {error.filename or ''}".rstrip(": ")
    if type(error).__module__.startswith("psycopg"):  # a server that went away mid-command, say
        return _store_problem(error)
    return None


def error_line(error: BaseException) -> str:
    """An error's first line (a database driver's messages run on over several)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _store_problem(error: Exception) -> str:
    first_line = error_line(error)
    store = f"the event store ({_loaded.store})" if _loaded.store else "the event store"
    if "does not exist" in first_line:
        return f"{store} has no KeySync tables yet ({first_line}): run `keysync store init` once"
    return f"{store} cannot be used: {first_line}"


def print_json(data: Any) -> None:
    # One string, one write: json.dump writes each token on its own, several times slower on 37,000 rows.
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def csv_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--csv", "as_csv", is_flag=True, help="Print CSV instead of a table.")(command)


def print_csv(columns: Sequence[str], rows: Iterable[Mapping[str, Any]], *, escape_formulas: bool = True) -> None:
    """Rows as CSV on stdout, every row; a text cell a spreadsheet would run as a formula is quoted as the
    reports' are (``reports.escape_formulas``)."""
    from keysync.infrastructure.cell_safety import neutralised_values

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        values = [row[c] for c in columns]
        writer.writerow(neutralised_values(values) if escape_formulas else values)


def message(text: str) -> None:
    """A message for the person at the terminal: stderr, so stdout stays data. Data inside it (keys, file
    names) is escaped, so it can never drive the terminal."""
    click.echo(safe(text), err=True)

"""The keysync command line: thin commands that parse, call one use case and print.

Importing the commands is cheap (tests/integration/test_startup.py holds them to it): each imports the engine,
the store, pyarrow and the like in its body, when it runs, so `keysync --help` or `config show` start at once.
"""

from __future__ import annotations

import os
import sys

import click

from keysync.cli.as_of import show_as_of_command
from keysync.cli.doctor import doctor_command
from keysync.cli.history import audit_command, history_command, key_command
from keysync.cli.maintenance import (
    config_group,
    generate_command,
    rebuild_command,
    replay_history_command,
    reports_command,
)
from keysync.cli.registry import registry_group
from keysync.cli.run import run_command
from keysync.cli.sandbox import sandbox_group
from keysync.cli.schedule import schedule_command
from keysync.cli.store import store_group
from keysync.cli.trends import compare_command, trends_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="keysync", prog_name="keysync")  # the version is looked up only when asked
def cli() -> None:
    """KeySync reconciles business keys across System A (the authority) and Systems B-E.

    Example: keysync run --generate-data
    """


COMMANDS = (
    run_command,
    generate_command,
    registry_group,
    history_command,
    audit_command,
    key_command,
    trends_command,
    compare_command,
    show_as_of_command,
    replay_history_command,
    schedule_command,
    sandbox_group,
    reports_command,
    rebuild_command,
    store_group,
    doctor_command,
    config_group,
)
for command in COMMANDS:
    cli.add_command(command)


def _help_options_everywhere(command: click.Command) -> None:
    """-h on every command, whichever context runs it: click builds a command's help option once, from the first
    context that asks, so a command run as the root of its own context (`sandbox shell`, `batch`) would otherwise
    know only --help from then on."""
    command.context_settings.setdefault("help_option_names", ["-h", "--help"])
    for sub in getattr(command, "commands", {}).values():
        _help_options_everywhere(sub)


_help_options_everywhere(cli)


def main() -> None:
    try:
        cli()
    except BrokenPipeError:
        # Output piped into a command that stopped reading (| head): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)

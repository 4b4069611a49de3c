"""keysync registry: list, approve and deprecate master keys."""

from __future__ import annotations

from pathlib import Path

import click

from keysync.application.bootstrap import build
from keysync.cli.listing import Style, listing_options, show
from keysync.cli.options import (
    config_option,
    csv_option,
    json_option,
    load,
    message,
    print_csv,
    print_json,
    user_errors,
)
from keysync.domain.observations import SYSTEMS
from keysync.domain.statuses import STATUSES

# The table's columns on a terminal; --wide shows every column of the registry.
SHOWN = ("master_key", "status", "source_systems", "source_key", "updated_at", "status_reason")


@click.group("registry")
def registry_group() -> None:
    """The master-key registry: Proposed -> Active -> Deprecated.

    Example: keysync registry list --status Proposed && keysync registry approve CUST-12345
    """


@registry_group.command("list")
@config_option
@click.option("--status", type=click.Choice(STATUSES, case_sensitive=False), help="Only keys in this status.")
@click.option("--system", type=click.Choice(SYSTEMS, case_sensitive=False),
              help="Only master keys seen in this system.")  # fmt: skip
@click.option("--search", metavar="TEXT", help="Only master keys whose master or source key holds TEXT (any case).")
@click.option("--as-of", "as_of", metavar="RUN_ID|TIME", default="", help="The registry as it stood then.")
@listing_options
@csv_option
@json_option
@user_errors
def list_command(
    config_path: Path | None, status: str | None, system: str | None, search: str | None, as_of: str,
    style: Style, as_csv: bool, as_json: bool,
) -> None:  # fmt: skip
    """List master keys, now or as they stood at a run or a time: the first 50 in a table (--limit), every one
    with --json or --csv.

    Example: keysync registry list --status Proposed --system B --search CUST-12 --as-of 2026-11-01
    """
    from keysync.projections.views import REGISTRY_COLUMNS  # with the store: not for every command's start

    if as_json and as_csv:
        raise click.UsageError("give --json or --csv, not both")
    status = next((s for s in STATUSES if status and s.lower() == status.lower()), None)
    config = load(config_path)
    rows = build(config).registry_rows(status, as_of=as_of, system=system and system.upper(), search=search)
    if as_json:
        print_json(rows)
    elif as_csv:
        print_csv(REGISTRY_COLUMNS, rows, escape_formulas=config.reports.escape_formulas)
    else:
        columns = REGISTRY_COLUMNS if style.wide else SHOWN
        show(f"Master keys ({len(rows)})", columns, rows, style)


@registry_group.command("approve")
@config_option
@click.argument("keys", nargs=-1)
@click.option("--all", "all_proposed", is_flag=True, help="Approve every Proposed key.")
@user_errors
def approve_command(config_path: Path | None, keys: tuple[str, ...], all_proposed: bool) -> None:
    """Activate Proposed master keys.

    Example: keysync registry approve CUST-12345 PROD-ABC-789
    """
    if bool(keys) == all_proposed:
        raise click.UsageError("give master keys to approve, or --all, not both" if keys else
                               "give master keys to approve, or --all")  # fmt: skip
    approved = build(load(config_path)).approve(keys, all_proposed=all_proposed)
    message(f"Approved {len(approved)} master key(s).")


def _said(_ctx: click.Context, _param: click.Parameter, reason: str) -> str:
    """A reason that says something: the audit trail keeps it."""
    if not reason.strip():
        raise click.BadParameter("say why (it is kept in the audit trail)")
    return reason


@registry_group.command("deprecate")
@config_option
@click.argument("keys", nargs=-1, required=True)
@click.option("--reason", required=True, callback=_said, help="Why the keys are deprecated (kept in the audit trail).")
@user_errors
def deprecate_command(config_path: Path | None, keys: tuple[str, ...], reason: str) -> None:
    """Deprecate master keys.

    Example: keysync registry deprecate CUST-99999 --reason "merged into CUST-12345"
    """
    deprecated = build(load(config_path)).deprecate(keys, reason)
    message(f"Deprecated {len(deprecated)} master key(s).")


@registry_group.command("reactivate")
@config_option
@click.argument("keys", nargs=-1, required=True)
@click.option(
    "--reason", required=True, callback=_said, help="Why the keys are Active again (kept in the audit trail)."
)
@user_errors
def reactivate_command(config_path: Path | None, keys: tuple[str, ...], reason: str) -> None:
    """Bring Deprecated master keys back to Active.

    Example: keysync registry reactivate CUST-12345 --reason "System D's export was truncated"
    """
    reactivated = build(load(config_path)).reactivate(keys, reason)
    message(f"Reactivated {len(reactivated)} master key(s).")

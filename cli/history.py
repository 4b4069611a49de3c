"""keysync history, audit and key: looking back through the event log."""

from __future__ import annotations

import csv
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from keysync.application.bootstrap import build
from keysync.cli.audit_chain import seal_command, verify_command
from keysync.cli.display import safe
from keysync.cli.listing import Style, listing_options, show
from keysync.cli.options import config_option, csv_option, json_option, load, print_json, user_errors

HISTORY_COLUMNS = (
    "run_id", "started_at", "finished_at", "status", "mode", "duration_s", "errors",
    "missing_in_A_count", "missing_from_system_count", "duplicate_keys_count", "rows_rejected_count",
    "proposed_count", "auto_approval_rate",
)  # fmt: skip


def _flat(run: dict) -> dict:
    kpis = json.loads(run["kpis"]) if run["kpis"] else {}
    return {c: run.get(c, kpis.get(c, "")) for c in HISTORY_COLUMNS}


@click.command("history")
@config_option
@click.option("--last", type=click.IntRange(min=1), help="Only the newest N runs.")
@listing_options
@csv_option
@json_option
@user_errors
def history_command(config_path: Path | None, last: int | None, style: Style, as_csv: bool, as_json: bool) -> None:
    """List runs, newest first, with their status, duration, errors and KPIs.

    Example: keysync history --last 10
    """
    if as_json and as_csv:
        raise click.UsageError("give --json or --csv, not both")
    rows = [_flat(r) for r in build(load(config_path)).runs(last)]
    if as_json:
        print_json(rows)
    elif as_csv:
        writer = csv.DictWriter(sys.stdout, HISTORY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        # The counts under short names, so that a terminal's width holds the table; each failed run's reason
        # follows it whole (in a column it would be cut to nothing).
        shown = {"run_id": "run_id", "started_at": "started_at", "status": "status", "mode": "mode",
                 "duration_s": "seconds", "missing_in_A_count": "missing_in_A",
                 "missing_from_system_count": "missing_from_sys", "duplicate_keys_count": "duplicates"}  # fmt: skip
        cells = [[row[c] for c in shown] for row in rows]
        failed = [row for row in rows[: style.limit or None] if row["errors"]]
        reasons = [f"{row['run_id']} {row['status']}: {row['errors']}" for row in failed]
        show(f"Runs ({len(rows)})", list(shown.values()), cells, style, after=reasons)


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as error:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date or time", param_hint="--since") from error
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@click.group("audit", invoke_without_command=True)
@config_option
@click.option("--run", "run_id", help="Only this run's events.")
@click.option("--key", help="Only events about this key (compared after normalization).")
@click.option("--since", help="Only events at or after this ISO 8601 time.")
@click.option("--type", "event_type", help="Only this event type, e.g. MasterKeysActivated.")
@listing_options
@json_option
@click.pass_context
@user_errors
def audit_command(
    ctx: click.Context, config_path: Path | None, run_id: str | None, key: str | None, since: str | None,
    event_type: str | None, style: Style, as_json: bool,
) -> None:  # fmt: skip
    """Replay the event log and print the matching events in order; `keysync audit verify` checks that the
    log still holds what it held when it was sealed.

    Example: keysync audit --type MasterKeysActivated --since 2026-01-01
    """
    if ctx.invoked_subcommand is not None:
        return
    from keysync.application.history import AuditFilter, event_types

    known = event_types()
    if event_type is not None and event_type.lower() not in {name.lower() for name in known}:
        raise click.BadParameter(f"{event_type!r} is not an event type; the types: {', '.join(known)}",
                                 param_hint="--type")  # fmt: skip
    chosen = AuditFilter(run_id=run_id, key=key, since=_since(since), event_type=event_type)
    rows = build(load(config_path)).audit(chosen)
    if as_json:
        print_json(rows)
    elif key is not None:
        # Which event did what to the key, who did it and when: the payload's counts say nothing of one key.
        cells = [[r["event_id"], r["run_id"], r["event_type"], r["created_at"], _actor(r), r["for_key"]] for r in rows]
        show(f"Events about {key} ({len(rows)})", AUDIT_KEY_COLUMNS, cells, style)
    else:
        show(f"Events ({len(rows)})", ("event_id", "run_id", "event_type", "created_at", "payload"), rows, style)


AUDIT_KEY_COLUMNS = ("event_id", "run_id", "event_type", "created_at", "actor", "what")


def _actor(row: dict) -> str:
    return str(json.loads(row["payload"]).get("actor", ""))


audit_command.add_command(verify_command)
audit_command.add_command(seal_command)


@click.command("key")
@config_option
@click.argument("key")
@listing_options
@json_option
@user_errors
def key_command(config_path: Path | None, key: str, style: Style, as_json: bool) -> None:
    """Show one key: its registry status and why, then its timeline (where it was seen, when it appeared or
    vanished, how the registry and the sandbox changed it), oldest first.

    Example: keysync key CUST-12345
    """
    timeline = build(load(config_path)).key_timeline(key)
    if as_json:
        print_json(timeline)
        return
    name = timeline["normalized_key"]
    if not timeline["timeline"]:
        click.echo(safe(f"{name}: no run has seen it, and no master key is it"))
        return
    if timeline["status"]:
        master = "" if timeline["master_key"] == name else f" (master key {timeline['master_key']})"
        reason = f": {timeline['status_reason']}" if timeline["status_reason"] else ""
        status = f"{name}{master}: {timeline['status']}{reason}"
    else:
        status = f"{name}: not a master key"
    present = f"now in {', '.join(timeline['present_in']) or 'no system'}"
    before = [status, present]
    if timeline["last_seen_run_id"]:  # master_key_registry.csv no longer says it
        before.append(f"last seen by run {timeline['last_seen_run_id']}")
    rows = [[line["at"], line["run_id"], line["what"]] for line in timeline["timeline"]]
    show("Timeline", ("at", "run_id", "what"), rows, style, before=before)

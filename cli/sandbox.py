"""keysync sandbox: edit Systems A-E's data by hand, see what a reconciliation would make of it, undo, save states.

Every change is an event in the store (who, when, what) and the five CSV files keysync run reads are rewritten
from them, atomically and checked, after each command. The commands that only read are in sandbox_views, the saved
states in sandbox_states, the shell and batch files in sandbox_scripting, the scenarios in sandbox_scenarios.
"""

from __future__ import annotations

from pathlib import Path

import click

from keysync.cli.options import config_option, json_option, print_json
from keysync.cli.sandbox_common import (
    confirm,
    confirm_replacing_exports,
    read_keys,
    report_change,
    sandbox_errors,
    service,
    shown_keys,
    systems_option,
    user_option,
)
from keysync.domain.sandbox_rows import CORRUPTIONS, DEFAULT_KEYS, DEFAULT_SEED, VARIANTS


@click.group("sandbox")
def sandbox_group() -> None:
    """Edit Systems A-E by hand to try reconciliation out: add, remove and modify keys, undo, save states.

    The sandbox writes the files keysync run reads (the config's sources, or sandbox.input_dir) and rewrites
    them after every command: edit them through the sandbox. Every change is recorded in the event store with
    who made it and when; undo adds compensating changes, it never deletes history.

    Example: keysync sandbox init --keys 1000 && keysync sandbox add-key UNAUTH-001 --systems B,C
    """


@sandbox_group.command("init")
@config_option
@click.option("--keys", type=click.IntRange(min=1), default=DEFAULT_KEYS, show_default=True, help="Keys per system.")
@click.option("--seed", type=click.IntRange(min=0), default=DEFAULT_SEED, show_default=True, help="Which keys.")
@click.option("-y", "--yes", is_flag=True, help="Replace exports the sandbox did not write without asking.")
@user_option
@json_option
@sandbox_errors
def init_command(config_path: Path | None, keys: int, seed: int, yes: bool, user: str | None, as_json: bool) -> None:
    """Replace the sandbox's data by the same KEYS synchronised keys in every system (saved states are kept).
    Files at the sandbox's paths that it did not write (real exports) are replaced only once confirmed.

    Example: keysync sandbox init --keys 1000 --seed 7
    """
    sandbox = service(config_path, user)
    confirm_replacing_exports(sandbox, yes)
    change = sandbox.init(keys, seed, replace_exports=True)
    report_change(change, f"Initialized {keys} synchronised keys in every system", as_json)


@sandbox_group.command("add-key")
@config_option
@click.argument("keys", nargs=-1)
@systems_option
@click.option("--from-file", "from_file", help="Keys from a file, one a line or a CSV with source_key; - = stdin.")
@user_option
@json_option
@sandbox_errors
def add_key_command(
    config_path: Path | None,
    keys: tuple[str, ...],
    systems: list[str],
    from_file: str | None,
    user: str | None,
    as_json: bool,
) -> None:
    """Add keys to systems (a key given twice is added once; adding a key a system has makes a duplicate).

    Example: keysync sandbox add-key UNAUTH-001 UNAUTH-002 --systems B,C
    """
    wanted = [*keys, *(read_keys(from_file) if from_file else [])]
    change = service(config_path, user).add_keys(wanted, systems)
    op = change.operation
    report_change(change, f"Added {op['keys']} key(s) to {', '.join(systems)}: {shown_keys(op['sample'])}", as_json)


@sandbox_group.command("remove-key")
@config_option
@click.argument("keys", nargs=-1)
@systems_option
@click.option("--pattern", "patterns", multiple=True, help="Glob pattern of keys to remove (e.g. 'CUST-*'); repeat.")
@click.option("--dry-run", is_flag=True, help="Show what would be removed, change nothing.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@user_option
@json_option
@sandbox_errors
def remove_key_command(
    config_path: Path | None,
    keys: tuple[str, ...],
    systems: list[str],
    patterns: tuple[str, ...],
    dry_run: bool,
    yes: bool,
    user: str | None,
    as_json: bool,
) -> None:
    """Remove keys, or every key matching a pattern, from systems (asks first unless --yes).

    Example: keysync sandbox remove-key --pattern 'CUST-0*' --systems D --yes
    """
    sandbox = service(config_path, user)
    plan = sandbox.plan_removal(systems, keys, patterns)
    counts = {s: sum(1 for entry in plan if entry[0] == s) for s in systems}
    distinct = list(dict.fromkeys(entry[2] for entry in plan))
    summary = ", ".join(f"{n} from {s}" for s, n in counts.items())
    if dry_run:
        if as_json:
            print_json({"dry_run": True, "rows": counts, "keys": len(distinct), "sample": distinct[:10]})
        else:
            click.echo(f"Would remove {len(distinct)} key(s), {len(plan)} row(s): {summary}")
            click.echo(f"Keys: {shown_keys(distinct, 10)}")
        return
    confirm(f"Remove {len(distinct)} key(s) ({summary})?", yes, f"remove {len(distinct)} key(s)")
    change = sandbox.remove_keys(systems, keys, patterns)
    rows = change.operation["rows_removed"]
    report_change(change, f"Removed {change.operation['keys']} key(s), {rows} row(s), from {', '.join(systems)}",
                  as_json)  # fmt: skip


@sandbox_group.command("modify-key")
@config_option
@click.argument("key")
@systems_option
@click.option("--to", "to", help="The new key.")
@click.option("--variant", type=click.Choice(VARIANTS), help="A formatting variation, or corrupt.")
@click.option(
    "--corruption",
    type=click.Choice(CORRUPTIONS),
    default="control",
    show_default=True,
    help="With --variant corrupt: an ESC character, an empty key, one over max_key_length, or bytes not UTF-8.",
)
@user_option
@json_option
@sandbox_errors
def modify_key_command(
    config_path: Path | None,
    key: str,
    systems: list[str],
    to: str | None,
    variant: str | None,
    corruption: str,
    user: str | None,
    as_json: bool,
) -> None:
    """Rewrite a key in place, in every row of it in the given systems: to a new value, or to a variant.

    Variants: lower, upper; spaces (around it); delims (another delimiter); pad (digits without leading zeros,
    equal only under normalize.pad_numbers); corrupt (rejected by the reader: see --corruption).

    Example: keysync sandbox modify-key CUST-00042 --systems B --variant lower
    """
    if (to is None) == (variant is None):
        raise click.UsageError("give exactly one of --to NEW or --variant KIND")
    change = service(config_path, user).modify_key(key, systems, to=to, kind=variant or "", corruption=corruption)
    op = change.operation
    report_change(change, f"Modified {shown_keys([key])} in {', '.join(op['systems'])}: {op['detail']}", as_json)


@sandbox_group.command("reset")
@config_option
@click.option("--empty", is_flag=True, help="Leave every system empty.")
@click.option("--keys", type=click.IntRange(min=1), help="A new baseline of this many keys (default: the last init's).")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@user_option
@json_option
@sandbox_errors
def reset_command(
    config_path: Path | None, empty: bool, keys: int | None, yes: bool, user: str | None, as_json: bool
) -> None:
    """Back to a synchronised baseline (the last init's keys), or to empty; saved states are kept.

    Example: keysync sandbox reset --empty --yes
    """
    if empty and keys is not None:
        raise click.UsageError("give --empty or --keys, not both")
    confirm("Replace every system's data?", yes, "reset the sandbox")
    change = service(config_path, user).reset(keys=keys, empty=empty)
    said = "Reset every system to empty" if empty else f"Reset every system to {change.operation['keys']} keys"
    report_change(change, said, as_json)


@sandbox_group.command("undo")
@config_option
@click.argument("count", type=click.IntRange(min=1), default=1)
@user_option
@json_option
@sandbox_errors
def undo_command(config_path: Path | None, count: int, user: str | None, as_json: bool) -> None:
    """Revert the last COUNT operations (default 1) by recording compensating events; history is kept.

    Example: keysync sandbox undo 2
    """
    change = service(config_path, user).undo(count)
    reverted = ", ".join(o["detail"] for o in change.operations)
    report_change(change, f"Undid {count} operation(s): {reverted}", as_json)


@sandbox_group.command("redo")
@config_option
@click.argument("count", type=click.IntRange(min=1), default=1)
@user_option
@json_option
@sandbox_errors
def redo_command(config_path: Path | None, count: int, user: str | None, as_json: bool) -> None:
    """Apply again the last COUNT operations that undo reverted (until a new change is made).

    Example: keysync sandbox redo
    """
    change = service(config_path, user).redo(count)
    restored = ", ".join(o["detail"] for o in change.operations)
    report_change(change, f"Redid {count} operation(s): {restored}", as_json)


def _register() -> None:
    # The other command modules import nothing from here, so there is no import cycle.
    from keysync.cli.sandbox_scenarios import scenario_group
    from keysync.cli.sandbox_scripting import batch_command, shell_command
    from keysync.cli.sandbox_states import (
        delete_state_command,
        export_state_command,
        import_state_command,
        load_state_command,
        save_state_command,
        states_command,
    )
    from keysync.cli.sandbox_views import history_command, predict_command, status_command

    for command in (
        status_command, history_command, predict_command, save_state_command, load_state_command, states_command,
        delete_state_command, export_state_command, import_state_command, shell_command, batch_command,
        scenario_group,
    ):  # fmt: skip
        sandbox_group.add_command(command)


_register()

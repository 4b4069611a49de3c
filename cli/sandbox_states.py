"""keysync sandbox save-state | load-state | states | delete-state | export-state | import-state."""

from __future__ import annotations

from pathlib import Path

import click

from keysync.cli.display import stdout, table
from keysync.cli.options import config_option, json_option, message, print_json
from keysync.cli.sandbox_common import confirm, report_change, sandbox_errors, service, show_status, user_option


@click.command("save-state")
@config_option
@click.argument("name")
@click.option("-d", "--description", default="", help="What this state is for.")
@click.option("--force", is_flag=True, help="Replace a state of the same name.")
@user_option
@sandbox_errors
def save_state_command(config_path: Path | None, name: str, description: str, force: bool, user: str | None) -> None:
    """Save every system's data under NAME (letters, digits, - and _) in the states folder.

    Example: keysync sandbox save-state before-demo --description "clean 1000 keys"
    """
    sandbox = service(config_path, user)
    saved = sandbox.save_state(name, description, force=force)
    message(f"Saved state {saved.name}: {saved.row_count} rows.")
    show_status(sandbox.status())


@click.command("load-state")
@config_option
@click.argument("name")
@user_option
@json_option
@sandbox_errors
def load_state_command(config_path: Path | None, name: str, user: str | None, as_json: bool) -> None:
    """Replace every system's data by a saved state's (undo brings the previous data back).

    Example: keysync sandbox load-state before-demo
    """
    change = service(config_path, user).load_state(name)
    report_change(change, f"Loaded state {name}", as_json)


@click.command("states")
@config_option
@json_option
@sandbox_errors
def states_command(config_path: Path | None, as_json: bool) -> None:
    """List the saved states: name, when, by whom, rows, file size, description.

    Example: keysync sandbox states --json
    """
    states = service(config_path).saved_states()
    if as_json:
        print_json(states)
        return
    columns = ["name", "created_at", "actor", "rows", "bytes", "description"]
    stdout().print(table(f"Saved states ({len(states)})", columns, states))


@click.command("delete-state")
@config_option
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@user_option
@sandbox_errors
def delete_state_command(config_path: Path | None, name: str, yes: bool, user: str | None) -> None:
    """Delete a saved state (this cannot be undone; export it first to keep a copy).

    Example: keysync sandbox delete-state before-demo --yes
    """
    sandbox = service(config_path, user)
    confirm(f"Delete saved state {name}?", yes, f"delete state {name}")
    sandbox.delete_state(name)
    message(f"Deleted state {name}.")


@click.command("export-state")
@config_option
@click.argument("name")
@click.argument("file", type=click.Path(path_type=Path))
@sandbox_errors
def export_state_command(config_path: Path | None, name: str, file: Path) -> None:
    """Copy a saved state to FILE (one portable JSON file), to share it; import-state reads it back.

    Example: keysync sandbox export-state before-demo /tmp/before-demo.json
    """
    written = service(config_path).export_state(name, file)
    message(f"Exported state {name} to {written}")


@click.command("import-state")
@config_option
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", help="Save it under this name instead of the one in the file.")
@click.option("--force", is_flag=True, help="Replace a state of the same name.")
@user_option
@sandbox_errors
def import_state_command(config_path: Path | None, file: Path, name: str | None, force: bool, user: str | None) -> None:
    """Add a state exported with export-state to the states folder (load-state then uses it).

    Example: keysync sandbox import-state /tmp/before-demo.json --name from-alice
    """
    state = service(config_path, user).import_state(file, name, force=force)
    message(
        f"Imported state {state.name}: {state.row_count} rows. Load it with: keysync sandbox load-state {state.name}"
    )

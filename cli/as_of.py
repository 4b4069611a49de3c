"""keysync show-as-of: the registry and every report as they stood at a time or at the end of a run."""

from __future__ import annotations

from pathlib import Path

import click

from keysync.application.bootstrap import build
from keysync.cli.display import stdout, table
from keysync.cli.options import config_option, json_option, load, message, print_json, user_errors


@click.command("show-as-of")
@config_option
@click.argument("moment", metavar="TIME|RUN_ID")
@click.option(
    "-o", "--output-dir", type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the reports (default: <output_dir>/as-of-<RUN_ID or UTC time>/).",
)  # fmt: skip
@json_option
@user_errors
def show_as_of_command(config_path: Path | None, moment: str, output_dir: Path | None, as_json: bool) -> None:
    """Rebuild the registry and every report as they stood at TIME, or at the end of run RUN_ID, by replaying
    the event log up to then; the live registry and reports are left as they are.

    TIME is ISO 8601 (UTC unless it has an offset; a date alone means its midnight). Prints the registry as it
    stood, and writes the reports into a folder of their own.

    Example: keysync show-as-of 2026-01-15T12:00:00Z -o reports-jan15
    """
    from keysync.application.as_of import AsOfError, reports_as_of
    from keysync.projections.views import REGISTRY_COLUMNS

    projections = build(load(config_path)).projections
    try:
        found = reports_as_of(projections, moment, output_dir)
    except AsOfError as error:
        raise click.ClickException(str(error)) from error
    if as_json:
        print_json(
            {
                "as_of": found.moment.label,
                "latest_completed_run": found.latest_run_id,
                "output_dir": str(found.output_dir),
                "reports": [str(p) for p in found.reports],
                "registry": found.registry_rows,
            }
        )
    else:
        rows = found.registry_rows
        stdout().print(table(f"Master keys as of {found.moment.label} ({len(rows)})", REGISTRY_COLUMNS, rows))
    latest = f"latest completed run then: {found.latest_run_id}" if found.latest_run_id else "no completed run then"
    message(f"Reports as of {found.moment.label} ({latest}) written to {found.output_dir}")

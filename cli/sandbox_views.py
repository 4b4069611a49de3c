"""keysync sandbox status | history | predict: what the sandbox holds, what was done to it, what a run would find."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import click

from keysync.cli.display import stdout, table
from keysync.cli.listing import Style, listing_options, show
from keysync.cli.options import config_option, json_option, message, print_json
from keysync.cli.sandbox_common import STATUS_COLUMNS, hints_line, sandbox_errors, service, shown_keys, status_table
from keysync.domain.observations import SYSTEMS

SUMMED = ("rows", "out_of_authority", "missing_vs_A", "duplicates", "rejected")
CSV_COLUMNS = ("rows", "unique_keys", "only_here", "matched_in_A", "out_of_authority", "missing_vs_A", "duplicates",
               "rejected")  # fmt: skip


@click.command("status")
@config_option
@listing_options
@json_option
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the summary as CSV (- = standard output).",
)
@sandbox_errors
def status_command(config_path: Path | None, style: Style, as_json: bool, csv_path: Path | None) -> None:
    """Per system: rows, distinct keys, keys only there, System A's keys held, keys not in A, A's keys missing,
    duplicates and rejected rows; and what a run would report on these files.

    Example: keysync sandbox status --csv sandbox-status.csv
    """
    if as_json and csv_path is not None:
        raise click.UsageError("give --json or --csv FILE, not both")
    to_stdout = csv_path is not None and str(csv_path) == "-"
    sandbox = service(config_path)
    if csv_path is not None and not to_stdout:
        sandbox.check_free_to_write(csv_path)
    status = sandbox.status()
    if csv_path is not None:
        columns: dict[str, list] = {"system": [*SYSTEMS, "total"]}
        for c in CSV_COLUMNS:
            values = [status.systems[s][c] for s in SYSTEMS]
            columns[c] = [*values, sum(values) if c in SUMMED else ""]
        if to_stdout:
            writer = csv.writer(sys.stdout, lineterminator="\n")
            writer.writerow(columns)
            writer.writerows(zip(*columns.values(), strict=True))
            return
        from keysync.infrastructure.report_files import write_csv_atomic  # pyarrow: only to write the file

        write_csv_atomic(csv_path, columns)
        message(f"Wrote {csv_path}")
    elif as_json:
        print_json(status.as_dict())
    else:
        rows = [[s, *(status.systems[s][c] for c in STATUS_COLUMNS)] for s in SYSTEMS]
        show("Sandbox", ["system", *STATUS_COLUMNS.values()], rows, style, after=[hints_line(status)])


@click.command("history")
@config_option
@click.option("--last", type=click.IntRange(min=1), help="Only the last N operations.")
@json_option
@sandbox_errors
def history_command(config_path: Path | None, last: int | None, as_json: bool) -> None:
    """The sandbox's operations, newest first: time, user, operation, systems, keys changed and a sample of them.

    Example: keysync sandbox history --last 10
    """
    operations = list(reversed(service(config_path).history()))[:last]
    if as_json:
        print_json(operations)
        return
    rows = [
        [
            o["at"][:19].replace("T", " "),
            o["actor"],
            o["operation"] + (" (undone)" if o["undone"] else ""),
            ",".join(o["systems"]),
            o["keys"],
            shown_keys(o["sample"], 3),
            o["detail"],
        ]
        for o in operations
    ]
    columns = ["time (UTC)", "user", "operation", "systems", "keys", "sample", "detail"]
    stdout().print(table(f"Sandbox history ({len(rows)} operations)", columns, rows))


@click.command("predict")
@config_option
@click.option("--compare-last-run", is_flag=True, help="Compare the prediction with the latest completed run.")
@json_option
@sandbox_errors
def predict_command(config_path: Path | None, compare_last_run: bool, as_json: bool) -> None:
    """Predict the next run's outcome from the sandbox alone: discrepancies, new master keys, systems affected.
    With --compare-last-run: predicted against actual for the latest run, exit 1 if they differ.

    Example: keysync sandbox predict && keysync run && keysync sandbox predict --compare-last-run
    """
    sandbox = service(config_path)
    if compare_last_run:
        comparison = sandbox.compare_last_run()
        if as_json:
            print_json(comparison.as_dict())
        else:
            rows = [[w, p, a, "ok" if p == a else "DIFFERS"] for w, p, a in comparison.checks]
            stdout().print(table(f"Predicted vs run {comparison.run_id}", ["what", "predicted", "actual", ""], rows))
        if comparison.changed_since:
            message(f"The sandbox changed after run {comparison.run_id} started: differences are expected.")
        if not comparison.matches:
            message("The prediction differs from the run.")
            click.get_current_context().exit(1)
        message("The prediction matches the run.")
        return
    prediction = sandbox.predict()
    if prediction.held_back:  # said with --json too: that run will not report the numbers below
        held = sorted(prediction.held_back)
        message(
            f"The next run would hold back {', '.join(held)} as suspect (far smaller than the last accepted "
            "exports) and reconcile those rows instead, so it would report other numbers than these: "
            f"`keysync run --accept-shrink {','.join(held)}` takes them as they are."
        )
    if as_json:
        print_json(prediction.as_dict())
        return
    stdout().print(status_table(prediction.status, "Predicted for the next run"))
    click.echo(hints_line(prediction.status))
    new = prediction.new_master_keys
    click.echo(
        f"It would propose {len(new)} new master key(s){': ' + shown_keys(new) if new else ''}, deprecate "
        f"{prediction.deprecations}, and find discrepancies in {', '.join(prediction.affected) or 'no system'}."
    )

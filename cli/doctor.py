"""keysync doctor: check the event log, the projections and the reports, and say what was found."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from keysync.cli.display import stdout, table
from keysync.cli.options import config_option, json_option, load, message, print_json, user_errors


@click.command("doctor")
@config_option
@click.option("-o", "--output-dir", type=click.Path(file_okay=False, path_type=Path), help="Reports folder to check.")
@json_option
@user_errors
def doctor_command(config_path: Path | None, output_dir: Path | None, as_json: bool) -> None:
    """Replay every aggregate, check the projections' positions, and compare the read models and the report files
    with a rebuild from the log. Changes nothing; exits 1 when something is wrong, saying what to do.

    Example: keysync doctor --json
    """
    from rich.console import Console

    from keysync.application.doctor_bootstrap import build_doctor
    from keysync.infrastructure.config import override

    config = override(load(config_path), output_dir=output_dir)
    doctor = build_doctor(config)
    with Console(stderr=True).status("Examining...") as status:
        diagnosis = doctor.examine(progress=lambda phase: status.update(f"Examining: {phase}..."))
    if as_json:
        print_json(diagnosis.as_dict())
    else:
        rows = [[c.name, "ok" if c.ok else "PROBLEM", c.detail] for c in diagnosis.checks]
        stdout().print(table(f"keysync doctor: {diagnosis.events} events", ["check", "result", "detail"], rows))
    if diagnosis.healthy:
        message("No problem found.")
        return
    message(f"{len(diagnosis.problems)} problem(s) found.")
    sys.exit(1)

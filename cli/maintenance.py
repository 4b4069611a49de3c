"""keysync generate, rebuild and config show."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from keysync.application.bootstrap import build, run_settings
from keysync.cli.options import config_option, json_option, load, message, print_json, user_errors
from keysync.infrastructure.mock_options import DEFAULT_AS_OF, SCENARIOS


@click.command("generate")
@config_option
@click.option("--scenario", type=click.Choice(SCENARIOS), help="normal | drift | failure | recovery.")
@click.option("--keys", type=click.IntRange(min=1), help="Keys per system.")
@click.option("--seed", type=click.IntRange(min=0), help="Random seed: the same seed gives the same files.")
@click.option("--output", type=click.Path(file_okay=False, path_type=Path), help="Folder (default: input_dir).")
@click.option("--format", "kind", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--days", type=click.IntRange(min=1), help="Write one dated snapshot per day (input/history/DATE/).")
@click.option(
    "--end-date",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help=f"The date the data describes: with --days, the last day's (default {DEFAULT_AS_OF.date()}).",
)
@user_errors
def generate_command(
    config_path: Path | None,
    scenario: str | None,
    keys: int | None,
    seed: int | None,
    output: Path | None,
    kind: str,
    days: int | None,
    end_date: datetime | None,
) -> None:
    """Write mock exports for Systems A-E, or with --days a day-by-day history of them.

    Example: keysync generate --scenario failure --keys 5000 --seed 7

    Example: keysync generate --days 30 --scenario drift && keysync replay-history input/history

    Example: keysync generate --days 30 --end-date 2026-12-06 (the 30 days up to that date)
    """
    from keysync.infrastructure.config import override

    config = override(load(config_path), scenario=scenario, keys=keys, seed=seed)
    sim = config.simulation
    options = {
        "scenario": sim.scenario,
        "keys": sim.keys,
        "seed": sim.seed,
        "corruption_rate": sim.failures.inject_corruption,
        "days_of_history": sim.temporal.days_of_history,
        "spread_history": sim.temporal.simulate_history,
        "kind": kind,
        "as_of": None if end_date is None else end_date.replace(tzinfo=UTC),
    }
    keysync = build(config)
    if days:
        root = output or config.input_dir / "history"
        for files in keysync.generate_history(root, days=days, **options).values():
            click.echo(str(files["A"].parent))
        message(f"Generated {days} daily {sim.scenario} snapshots under {root}: {sim.keys} keys per system.")
        return
    for path in keysync.generate(output or config.input_dir, **options).values():
        click.echo(str(path))
    message(f"Generated {sim.scenario} mock data: {sim.keys} keys per system, seed {sim.seed}.")


@click.command("replay-history")
@config_option
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--auto-approve", is_flag=True, default=None, help="Activate new master keys in each run.")
@user_errors
def replay_history_command(config_path: Path | None, folder: Path, auto_approve: bool | None) -> None:
    """Reconcile each dated snapshot (FOLDER/YYYY-MM-DD/A.csv ...) in order, stamped with its date.

    Example: keysync replay-history input/history && keysync trends --plot trends.png
    """
    from keysync.application.reconcile import RunFailed
    from keysync.infrastructure.config import override

    config = override(load(config_path), auto_approve=auto_approve)
    replayed, failed = 0, []
    for day, outcome in build(config).replay_history(folder, run_settings(config)):
        if isinstance(outcome, RunFailed):
            failed.append(day)
            message(f"{day} run {outcome.run.run_id} failed: {outcome.reason}")
            continue
        replayed += 1
        kpis = outcome.result.run.kpis
        rates = " ".join(
            f"{s}={k['match_rate']:.0%}" for s, k in kpis["systems"].items() if s != "A" and k["status"] == "ok"
        )
        click.echo(f"{day} run {outcome.run_id}: {rates}")
    if failed:
        raise click.ClickException(
            f"replayed {replayed} snapshot(s); {len(failed)} failed ({', '.join(failed)}): see the lines above"
        )
    message(f"Replayed {replayed} snapshots.")


@click.command("rebuild")
@config_option
@user_errors
def rebuild_command(config_path: Path | None) -> None:
    """Rebuild every read model and report from the event log, with the current normalization rules.

    Example: keysync rebuild -c keysync-config.yaml
    """
    written = build(load(config_path)).rebuild()
    message("Rebuilt the registry, run history, audit trail and reports from the event log:")
    for path in written:
        click.echo(str(path))


@click.command("reports")
@config_option
@user_errors
def reports_command(config_path: Path | None) -> None:
    """Bring the read models and the reports up to date with the event log (cheap when they are).

    Example: keysync reports
    """
    for path in build(load(config_path)).reports():
        click.echo(str(path))


@click.group("config")
def config_group() -> None:
    """Inspect the configuration.

    Example: keysync config show --json
    """


@config_group.command("show")
@config_option
@json_option
@user_errors
def show_command(config_path: Path | None, as_json: bool) -> None:
    """Print the effective configuration (file, environment and defaults combined).

    Example: keysync config show --json
    """
    import yaml

    from keysync.infrastructure.config import config_as_dict

    data = config_as_dict(load(config_path))
    if as_json:
        print_json(data)
    else:
        click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip())

"""keysync trends and compare: how the reconciliation moves from run to run."""

from __future__ import annotations

from pathlib import Path

import click

from keysync.application.bootstrap import build
from keysync.cli.listing import Style, fits, listing_options, show
from keysync.cli.options import config_option, json_option, load, message, print_json, user_errors
from keysync.domain.observations import DOWNSTREAM
from keysync.projections.trends import TrendPoint, plot_format, trend_points, write_trend_plot


def _cell(point: TrendPoint | None) -> str:
    if point is None or point.match_rate is None:
        return "unavailable"
    held_back = "*" if point.status == "suspect" else ""  # the counts of the last accepted export, standing in
    return f"{point.match_rate:.1%} {point.missing_in_A}/{point.missing_from_system}{held_back}"


def _matrix(points: list[TrendPoint]) -> list[list[str]]:
    """One row per run, one cell per downstream system: fits a terminal and shows drift down each column."""
    runs = {p.run_id: p.finished_at for p in points}
    cells = {(p.run_id, p.system): p for p in points}
    return [[run, finished, *(_cell(cells.get((run, s))) for s in DOWNSTREAM)] for run, finished in runs.items()]


def _plot_path(_ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
    if value is not None:
        try:
            plot_format(value)
        except ValueError as error:
            raise click.BadParameter(str(error)) from error
    return value


@click.command("trends")
@config_option
@click.option("--last", type=click.IntRange(min=1), help="Only the newest N completed runs.")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    callback=_plot_path,
    help="Also draw match rate and discrepancies per system over the runs to FILE.png or FILE.svg.",
)
@listing_options
@json_option
@user_errors
def trends_command(config_path: Path | None, last: int | None, plot: Path | None, style: Style, as_json: bool) -> None:
    """Show match rate and discrepancy counts per completed run and system, oldest first.

    Example: keysync trends --last 20 --plot trends.png
    """
    points = trend_points(build(load(config_path)).runs(), last)
    if as_json:
        print_json([p.as_dict() for p in points])
    else:
        rows, columns = _matrix(points), ["run_id", "finished_at", *DOWNSTREAM]
        caption = "cell: match rate, missing_in_A/missing_from_system"
        if any(p.status == "suspect" for p in points):
            caption += "; * held back as suspect: the last accepted export's counts"
        if not style.wide and not fits(columns, rows):
            # The systems' cells are what trends is for: the time of each run gives way to them first.
            rows, columns = [[row[0], *row[2:]] for row in rows], [columns[0], *columns[2:]]
            caption += " (--wide adds finished_at)"
        show(f"Trends ({len(rows)} completed runs, oldest first)", columns, rows, style, after=[caption])
    if plot is not None:
        if not points:
            raise click.ClickException("no completed runs to plot: run keysync run first")
        message(f"wrote {write_trend_plot(points, plot)}")


@click.command("compare")
@config_option
@click.argument("run_a")
@click.argument("run_b")
@listing_options
@json_option
@user_errors
def compare_command(config_path: Path | None, run_a: str, run_b: str, style: Style, as_json: bool) -> None:
    """Show the discrepancies opened and resolved going from run RUN_A to run RUN_B, per system and key.

    Example: keysync compare 87e0c925b3db da6d1422b188
    """
    from keysync.application.trends import CHANGE_COLUMNS, CompareError, compare_runs

    try:
        comparison = compare_runs(build(load(config_path)).projections, run_a, run_b)
    except CompareError as error:
        raise click.ClickException(str(error)) from error
    if as_json:
        print_json(comparison.as_dict())
    else:
        rows = [[c.system, c.kind, c.change, c.key] for c in comparison.changes]
        show(f"Changes from {run_a} to {run_b} ({len(rows)})", CHANGE_COLUMNS, rows, style)
    message(comparison.summary())

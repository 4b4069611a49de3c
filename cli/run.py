"""keysync run: one reconciliation."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from keysync.application.bootstrap import build, run_settings
from keysync.cli.display import stdout, table
from keysync.cli.options import config_option, json_option, load, message, print_json, user_errors
from keysync.domain.observations import SYSTEMS
from keysync.infrastructure.logs import setup_logging
from keysync.infrastructure.mock_options import SCENARIOS

if TYPE_CHECKING:
    from rich.console import Console

    from keysync.application.service import Interruption, RunOutcome
    from keysync.domain.rules import NormalizationRules

EXIT_DISCREPANCY = 3
EXIT_INTERRUPTED = 130  # as a shell reports a command stopped by Ctrl-C (128 + SIGINT)
log = logging.getLogger("keysync")


@click.command("run")
@config_option
@click.option("-m", "--mode", type=click.Choice(["full", "incremental"]), help="Reconciliation mode.")
@click.option("--dry-run", is_flag=True, help="Compute and write the reports, but store nothing.")
@click.option("--auto-approve", is_flag=True, default=None, help="Activate new master keys in this run.")
@click.option("--generate-data", is_flag=True, help="Generate mock data into the input folder first.")
@click.option("--scenario", type=click.Choice(SCENARIOS), help="Mock data scenario (with --generate-data).")
@click.option("--keys", type=click.IntRange(min=1), help="Mock keys per system (with --generate-data).")
@click.option("--seed", type=click.IntRange(min=0), help="Mock data seed (with --generate-data).")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False, path_type=Path), help="Reports folder.")
@click.option("--fail-on-discrepancy", is_flag=True, help="Exit 3 when any discrepancy is found (for CI).")
@click.option(
    "--resume/--no-resume",
    default=True,
    show_default=True,
    help="Resume a run that was interrupted (else mark it failed and start afresh).",
)
@click.option(
    "--accept-shrink",
    "accept_shrink",
    metavar="D[,E]",
    multiple=True,
    help="Take these systems' exports as they are, however far their valid rows fell (not held back as suspect).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log progress on the console.")
@json_option
@user_errors
def run_command(
    config_path: Path | None,
    mode: str | None,
    dry_run: bool,
    auto_approve: bool | None,
    generate_data: bool,
    scenario: str | None,
    keys: int | None,
    seed: int | None,
    output_dir: Path | None,
    fail_on_discrepancy: bool,
    resume: bool,
    accept_shrink: tuple[str, ...],
    verbose: bool,
    as_json: bool,
) -> None:
    """Reconcile Systems B-E against System A and write the reports (the seven of the contract, the trend report
    and the changes since the last run).

    An export whose valid rows fell by more than processing.max_shrink against the system's last
    accepted export is held back as suspect: those rows stand in for it, and nothing is deprecated on its account.

    Example: keysync run --generate-data --scenario drift --keys 2000
    """
    from rich.console import Console

    from keysync.application.notify import failed_run_summary
    from keysync.application.reconcile import RunFailed
    from keysync.application.sandbox_bootstrap import sandbox_exports_read
    from keysync.application.service import RunInterrupted
    from keysync.domain.rules import NormalizationRules
    from keysync.infrastructure.config import override

    accepted_shrink = _systems(accept_shrink)
    mock = {"--scenario": scenario, "--keys": keys, "--seed": seed}
    unused = [name for name, value in mock.items() if value is not None]
    if unused and not generate_data:
        raise click.UsageError(f"{', '.join(unused)} shape generated mock data: give --generate-data too")
    config = override(
        load(config_path),
        mode=mode,
        auto_approve=auto_approve,
        scenario=scenario,
        keys=keys,
        seed=seed,
        output_dir=output_dir,
    )
    setup_logging(config.logs_dir, verbose)
    keysync = build(config)
    if generate_data:
        sim = config.simulation
        written = keysync.generate(
            config.input_dir,
            scenario=sim.scenario,
            keys=sim.keys,
            seed=sim.seed,
            corruption_rate=sim.failures.inject_corruption,
            days_of_history=sim.temporal.days_of_history,
            spread_history=sim.temporal.simulate_history,
        )
        message(
            f"Generated {sim.scenario} mock data, {sim.keys} keys per system, seed {sim.seed}: "
            f"{', '.join(str(p) for p in written.values())}"
        )
    settings = run_settings(config, dry_run=dry_run, accept_shrink=accepted_shrink)
    sandboxed = sandbox_exports_read(config, keysync.store)
    if sandboxed:
        message(
            f"Reconciling sandbox data: the sandbox wrote the exports of {', '.join(sandboxed)} "
            "(`keysync sandbox status`)."
        )
    try:
        with _spinner(Console(stderr=True)) as progress:
            outcome = keysync.run(settings, progress=progress, resume=resume)
    except RunInterrupted as interrupted:
        message(interruption_line(interrupted.where))
        sys.exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        if not settings.dry_run:
            raise
        message("Interrupted: a dry run stores nothing.")
        sys.exit(EXIT_INTERRUPTED)
    except RunFailed as failure:
        summary = failed_run_summary(failure.run.run_id, failure.reason)
        _notify(config.notify.command, summary)
        if as_json:  # a script reading stdout gets an answer either way (the exit code and stderr say it too)
            print_json(summary)
        raise
    if not outcome.dry_run:
        _notify(config.notify.command, {**outcome_json(outcome), "status": "completed"})
    if outcome.result.resumed:
        message(f"Resumed run {outcome.run_id}, which had been interrupted.")
    for system, why in outcome.superseded.items():
        message(f"System {system} {why}: read again (the log keeps both recordings; the run used the newer).")
    held_back = outcome.result.run.held_back
    for system, reason in held_back.items():  # said with --json too: it is news for a person
        message(f"System {system}'s export was held back as suspect: {reason}.")
    edited = [s for s in sandboxed if s in held_back]
    if edited:  # the sandbox's few keys are meant: say how to take them
        message(
            f"The sandbox's exports of {', '.join(edited)} were held back against the last accepted ones: "
            f"`keysync run --accept-shrink {','.join(edited)}` reconciles them as they are."
        )
    if as_json:
        print_json(outcome_json(outcome))
    else:
        show(outcome)
    _say_letters_lost(outcome.result.run.kpis, NormalizationRules(**outcome.result.run.options["rules"]))
    totals = outcome.result.run.kpis  # holds the totals, also for a run that carried them over
    if fail_on_discrepancy and (
        totals["missing_in_A_count"] or totals["missing_from_system_count"] or totals["duplicate_keys_count"]
    ):
        message("Discrepancies found (--fail-on-discrepancy).")
        sys.exit(EXIT_DISCREPANCY)


@contextmanager
def _spinner(console: Console) -> Iterator[Callable[[str], None]]:
    """Each phase of the run on a spinner line of a terminal; elsewhere (a pipe, a log) there is nothing to show."""
    if not console.is_terminal:
        yield lambda _phase: None
        return
    with console.status("Reconciling...") as status:
        yield lambda phase: status.update(f"Reconciling: {phase}...")


def _say_letters_lost(kpis: dict[str, Any], rules: NormalizationRules) -> None:
    """One line when strip_non_alnum dropped letters outside ASCII: distinct keys may have merged silently."""
    count = kpis.get("letters_lost_count", 0)
    if not count:
        return
    examples = ", ".join(f"{raw!r} -> {normalized!r}" for raw, normalized in kpis.get("letters_lost_examples", []))
    remedy = "normalize.letters: unicode" if rules.ascii_fold else "normalize.ascii_fold or normalize.letters: unicode"
    message(
        f"{count} key{'s' if count != 1 else ''} lost non-ASCII letters under strip_non_alnum"
        f"{f' (e.g. {examples})' if examples else ''}; set {remedy} to keep them"
    )


def interruption_line(where: Interruption | None) -> str:
    """What Ctrl-C left behind, and what the next `keysync run` will do about it."""
    if where is None or not where.state:
        return "Interrupted before the run stored anything; the next `keysync run` starts afresh."
    run = f"run {where.run_id}"
    if where.state == "unknown":
        return f"Interrupted: {run}; `keysync history` shows whether the next `keysync run` resumes it."
    if where.state == "completed":
        return f"Interrupted: {run} is complete and stored, its reports may lag behind: `keysync reports` writes them."
    if where.state != "running":
        return f"Interrupted: {run} is {where.state}; the next `keysync run` starts afresh."
    recorded = [*where.recorded, *(f"{s} (unavailable)" for s in where.unavailable)]
    has = f"has recorded {', '.join(sorted(recorded))}" if recorded else "has recorded no system yet"
    return (
        f"Interrupted: {run} {has}; the next `keysync run` resumes it, reading again any export that changed "
        "meanwhile (`keysync run --no-resume` starts afresh)."
    )


def _systems(given: tuple[str, ...]) -> list[str]:
    """--accept-shrink D,E (or given twice): the systems named, checked."""
    named = [s.strip().upper() for value in given for s in value.split(",") if s.strip()]
    wrong = [s for s in named if s not in SYSTEMS]
    if wrong:
        raise click.BadParameter(
            f"{', '.join(wrong)}: name systems ({', '.join(SYSTEMS)})", param_hint="--accept-shrink"
        )
    return list(dict.fromkeys(named))


def _notify(command: str, summary: dict) -> None:
    from keysync.application.notify import notify_after_run

    problem = notify_after_run(command, summary)
    if problem:
        message(problem)


def outcome_json(outcome: RunOutcome) -> dict:
    result = outcome.result
    return {
        "run_id": result.run_id,
        "dry_run": outcome.dry_run,
        "kpis": result.run.kpis,
        "proposed": len(result.proposed),
        "deprecated": result.run.kpis.get("deprecated_count", 0),
        "suspect": dict(result.run.held_back),
        "timings_s": {k: round(v, 3) for k, v in result.timings.items()},
        "reports": [str(p) for p in outcome.reports],
        # a resumed run: each system recorded again, as its export changed since (say), and why
        **({"read_again": outcome.superseded} if outcome.superseded else {}),
    }


SHOWN = {  # KPI -> column heading; short, so the table fits an 80-column terminal
    "rows_read": "rows",
    "rows_rejected": "rejected",
    "unique_keys": "unique",
    "matched_in_A": "matched",
    "missing_in_A": "not in A",
    "missing_from_system": "gaps",
    "duplicate_keys": "dups",
}


def show(outcome: RunOutcome) -> None:
    result = outcome.result
    kpis = result.run.kpis
    rows = [
        [system, *(k[c] for c in SHOWN), f"{k['match_rate']:.1%}"]
        if k["status"] == "ok"
        else [system, *(k[c] for c in SHOWN), "suspect"]
        if k["status"] == "suspect"
        else [system, *[""] * len(SHOWN), "unavailable"]
        for system, k in kpis["systems"].items()
    ]
    title = f"Run {result.run_id}" + (" (dry run: nothing stored)" if outcome.dry_run else "")
    stdout().print(table(title, ["system", *SHOWN.values(), "match"], rows))
    stdout().print(table("Master keys", ["change", "count", "reason", "first"], _decisions(kpis)))
    message(
        f"{len(result.proposed)} new master key(s) proposed; {kpis['missing_in_A_count']} out-of-authority, "
        f"{kpis['missing_from_system_count']} propagation gaps, {kpis['duplicate_keys_count']} duplicates, "
        f"{kpis['rows_rejected_count']} rejected rows."
    )
    if "carried_from" in kpis:
        message(f"No export changed since run {kpis['carried_from']}: its reconciliation carries over.")
    elif "recorded" in kpis:
        message(_recorded(kpis["recorded"], dry_run=outcome.dry_run))
    for system in kpis["systems_unavailable"]:
        message(f"System {system} was unavailable: {result.run.unavailable.get(system, '')}")
    message("Reports:")
    for path in outcome.reports:
        message(f"  {path}")


def _decisions(kpis: dict[str, Any]) -> list[list[Any]]:
    """The run's registry decisions, a row each: proposed, deprecated (by reason), returned (by status)."""
    from keysync.domain.registry import REASON_SEEN_AGAIN

    rows = [["proposed", kpis["proposed_count"], "", _first(kpis.get("proposed_first", []), kpis["proposed_count"])]]
    deprecated = kpis.get("deprecated", [])
    rows += [["deprecated", d["count"], d["reason"], _first(d["first"], d["count"])] for d in deprecated]
    if not deprecated:
        rows.append(["deprecated", 0, "", ""])
    rows += [[f"back to {r['status']}", r["count"], REASON_SEEN_AGAIN, _first(r["first"], r["count"])]
             for r in kpis.get("returned", [])]  # fmt: skip
    return rows


def _first(keys: list[str], count: int) -> str:
    return ", ".join(keys) + (f" (+{count - len(keys):,})" if count > len(keys) else "")


_TOOK = {
    "changes": "recorded as changes",
    "whole": "read whole",
    "unchanged": "unchanged",
    "suspect": "held back as suspect",
}


def _recorded(recorded: dict[str, str], *, dry_run: bool = False) -> str:
    """One line on what an incremental run read: "B, C recorded as changes; A, D, E unchanged"."""
    said: dict[str, list[str]] = {how: [] for how in _TOOK.values()}
    for system, how in recorded.items():
        said[_TOOK[how]].append(system)
    parts = "; ".join(f"{', '.join(systems)} {how}" for how, systems in said.items() if systems)
    return f"Incremental: {parts}{' (dry run: nothing stored)' if dry_run else ''}."

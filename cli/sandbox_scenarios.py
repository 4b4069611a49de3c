"""keysync sandbox scenario list | show | run: scripted sandbox sessions with expected outcomes, checked by a run."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import click

from keysync.application.bootstrap import build
from keysync.cli.display import safe, stdout, table
from keysync.cli.options import config_option, configs_adjusted, json_option, load, message, print_json
from keysync.cli.sandbox_common import confirm_replacing_exports, sandbox_errors, service
from keysync.cli.sandbox_scripting import dispatch, split_line

if TYPE_CHECKING:
    from keysync.application.sandbox_scenarios import Scenario
    from keysync.domain.normalization import NormalizationRules
    from keysync.infrastructure.config import Config

    Rules = tuple[NormalizationRules, str]  # normalization rules and strategy


def describe_rules(rules: Rules, *, beside: Rules | None = None) -> str:
    """Rules as a scenario or the config writes them (``trim: true, ..., pad_numbers: 0; strategy mirror``); with
    ``beside``, only the settings that differ from those."""
    (normalize, strategy), other = rules, beside or (None, None)
    theirs = attrs.asdict(other[0]) if other[0] is not None else {}
    settings = [f"{name}: {json.dumps(value, default=str)}" for name, value in attrs.asdict(normalize).items()
                if name not in theirs or theirs[name] != value]  # fmt: skip
    text = ", ".join(settings)
    if strategy and strategy != other[1]:
        text += f"{'; ' if text else ''}strategy {strategy}"
    return text


def rules_said(found: Scenario, config: Config) -> tuple[str, bool]:
    """Which rules the scenario runs under, in a sentence; and whether they are other than the config's."""
    configured = (config.normalize, config.provisioning.strategy)
    own = found.rules(*configured)
    if found.normalize is None and found.strategy is None:
        return f"Scenario {found.name} runs under the config's rules ({describe_rules(own)}).", False
    whose = "its own rules" if found.normalize is not None else "the config's rules and its own strategy"
    said = f"Scenario {found.name} runs under {whose} ({describe_rules(own)})"
    if own == configured:
        return f"{said}, which are the config's.", False
    return f"{said}, not the config's ({describe_rules(configured, beside=own)}).", True


@click.group("scenario")
def scenario_group() -> None:
    """Scripted sandbox sessions with the outcome a run should report: list, show, run (exit 1 on a mismatch).

    Example: keysync sandbox scenario run unauthorized-keys
    """


@scenario_group.command("list")
@config_option
@json_option
@sandbox_errors
def list_command(config_path: Path | None, as_json: bool) -> None:
    """The scenarios shipped with KeySync.

    Example: keysync sandbox scenario list
    """
    from keysync.infrastructure.sandbox_scenarios import library_names, load_scenario

    scenarios = [load_scenario(name) for name in library_names()]
    if as_json:
        print_json([s.as_dict() for s in scenarios])
        return
    rows = [[s.name, len(s.steps), s.description.split(". ")[0].rstrip(".") + "."] for s in scenarios]
    stdout().print(table(f"Scenarios ({len(rows)})", ["name", "steps", "description"], rows))


@scenario_group.command("show")
@config_option
@click.argument("name")
@json_option
@sandbox_errors
def show_command(config_path: Path | None, name: str, as_json: bool) -> None:
    """A scenario's description, steps and expected outcome (NAME: a shipped scenario or a .yaml file).

    Example: keysync sandbox scenario show network-partition
    """
    from keysync.infrastructure.sandbox_scenarios import load_scenario

    found = load_scenario(name)
    if as_json:
        print_json(found.as_dict())
        return
    click.echo(f"{found.name}: {safe(found.description)}\n\nSteps:")
    for number, step in enumerate(found.steps, 1):
        click.echo(f"  {number}. {safe(step)}")
    click.echo("Expected:")
    for what, value in found.totals.items():
        click.echo(f"  {what}: {value}")
    for system, expected in found.systems.items():
        click.echo(f"  System {system}: " + ", ".join(f"{what} {value}" for what, value in expected.items()))
    click.echo("Runs under: " + _rules_shown(found))


def _rules_shown(found: Scenario) -> str:
    """The rules a scenario carries, as far as it carries them (the rest: whatever the config says)."""
    own = found.own_rules
    rules = "the config's rules" if own is None else f"its own rules ({describe_rules((own, ''))})"
    return f"{rules}, " + (f"strategy {found.strategy}" if found.strategy else "the config's strategy")


@scenario_group.command("run")
@config_option
@click.argument("name")
@click.option("--step", "stepwise", is_flag=True, help="Pause before each step: Enter runs it, q stops.")
@click.option("-y", "--yes", is_flag=True, help="Replace exports the sandbox did not write without asking.")
@click.option(
    "--accept-shrink",
    is_flag=True,
    help="Take the scenario's exports as they are, however far smaller than the last accepted ones "
    "(as keysync run --accept-shrink A,B,C,D,E).",
)
@json_option
@click.pass_context
@sandbox_errors
def run_command(
    ctx: click.Context,
    config_path: Path | None,
    name: str,
    stepwise: bool,
    yes: bool,
    accept_shrink: bool,
    as_json: bool,
) -> None:
    """Run a scenario's steps on the sandbox (replacing its data), then a real reconciliation, and check the
    outcome: a pass/fail table, exit 1 on any mismatch, so scenarios can run in CI. Files at the sandbox's paths
    that it did not write (real exports) are replaced only once confirmed, or with --yes.

    After a run over larger exports, the run holds the scenario's exports back as suspect (their valid rows fell
    by more than processing.max_shrink) and the checks fail against the last accepted rows: --accept-shrink takes
    the scenario's exports as they are.

    Example: keysync sandbox scenario run data-corruption --step
    """
    from keysync.application.sandbox_bootstrap import build_sandbox, sandbox_run_settings, with_rules
    from keysync.application.sandbox_scenarios import Check
    from keysync.application.sandbox_views import HINTS
    from keysync.domain.observations import SYSTEMS
    from keysync.infrastructure.sandbox_scenarios import load_scenario

    found = load_scenario(name)
    said, other_rules = rules_said(found, load(config_path))
    message(said)
    confirm_replacing_exports(service(config_path), yes)
    # Every command the scenario runs (its steps' summaries, the prediction, the run and the reports it writes)
    # works under the scenario's rules, and the run records them as its own.
    with configs_adjusted(
        lambda config: with_rules(config, *found.rules(config.normalize, config.provisioning.strategy))
    ):
        for number, line in enumerate(found.steps, 1):
            message(f"Step {number}/{len(found.steps)}: {safe(line)}")
            if stepwise and _stop_here():
                message(f"Stopped before step {number}.")
                ctx.exit(1)
            words = split_line(line)
            if words[:1] == ["init"]:
                words.append("--yes")  # asked above, once for the whole scenario
            code = dispatch(words, config_path, refuse=("shell", "batch", "scenario"))
            if code:
                raise click.ClickException(f"scenario {found.name}: step {number} failed (exit {code}): {safe(line)}")
        config = load(config_path)
        accepted = SYSTEMS if accept_shrink else ()
        prediction = build_sandbox(config).predict(accept_shrink=accepted)
        message("Reconciling the sandbox's files...")
        run = build(config).run(sandbox_run_settings(config, accept_shrink=accepted)).result.run
    kpis, held_back = run.kpis, dict(run.held_back)
    if held_back:  # before the checks: it explains why they fail
        message(_held_back_line(name, sorted(held_back)))
    checks = found.checks(kpis)
    # The impact analysis is checked too: what the sandbox predicted before the run against what the run found.
    checks += [Check(f"predicted {hint}", prediction.status.hints[hint], kpis[kpi]) for hint, kpi in HINTS.items()]
    checks.append(Check("predicted new_master_keys", len(prediction.new_master_keys), kpis["proposed_count"]))
    passed = all(c.ok for c in checks)
    if as_json:
        print_json({"scenario": found.name, "passed": passed,
                    "rules": {"normalize": attrs.asdict(config.normalize), "strategy": config.provisioning.strategy,
                              "own": other_rules},
                    "held_back": held_back,
                    "checks": [{"what": c.what, "expected": c.expected, "actual": c.actual, "ok": c.ok}
                               for c in checks]})  # fmt: skip
    else:
        rows = [[c.what, c.expected, c.actual, "pass" if c.ok else "FAIL"] for c in checks]
        stdout().print(table(f"Scenario {found.name}", ["check", "expected", "actual", "result"], rows))
    failures = sum(1 for c in checks if not c.ok)
    message(f"Scenario {found.name}: " + ("passed." if passed else f"{failures} check(s) failed."))
    if other_rules:
        message(
            "The run is recorded under the scenario's rules, and the reports show it so: the next keysync run, "
            "under the config's, reconciles afresh, and deprecates the master keys proposed here that the "
            "config's rules do not find (reason: not found under the run's new normalization rules or strategy)."
        )
    if not passed:
        ctx.exit(1)


def _held_back_line(name: str, systems: list[str]) -> str:
    """Why a scenario's checks compare against other rows than its own, and how to take its exports."""
    named = ", ".join(systems)
    if len(systems) == 1:
        theirs = "its export is far smaller than the last accepted one"
    else:
        theirs = "their exports are far smaller than the last accepted ones"
    return (
        f"The run held back {named} as suspect: {theirs}, so the checks compare against those rows. "
        f"`keysync sandbox scenario run {safe(shlex.quote(name))} --accept-shrink` takes the scenario's exports "
        "as they are."
    )


def _stop_here() -> bool:
    """Wait for Enter (True if the answer is q). At the end of the input, go on without pausing."""
    click.echo("Press Enter to run it, q to stop: ", err=True, nl=False)
    answer = sys.stdin.readline()
    if not answer:
        message("")
    return answer.strip().lower() in ("q", "quit")

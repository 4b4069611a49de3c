"""A scenario runs under the normalization rules and strategy it was written for, whatever the config says; one
that carries none runs under the config's."""

from __future__ import annotations

import pytest

from keysync.domain.registry import DEPRECATED, REASON_RULES_CHANGED
from tests.e2e.test_sandbox_support import as_json, sandbox, write

# Under the default rules X-7 and X-00007 are two keys; padding digits to 5 makes them one.
PADDING = """name: padding
description: B writes A's key with its zero padding.
steps:
  - init --keys 5 --seed 1
  - add-key X-7 --systems A
  - add-key X-00007 --systems B,C,D,E
{rules}expected:
  out_of_authority: 0
  systems:
    B: {{out_of_authority: 0}}
"""


def said_line(output: str, start: str) -> str:
    """The one line of the output that starts so (settings a later version adds may come between its parts)."""
    [line] = [line for line in output.splitlines() if line.startswith(start)]
    return line


def test_a_shipped_scenario_holds_under_a_config_with_other_rules(any_project):
    any_project.write_config("normalize:\n  pad_numbers: 5\nprovisioning:\n  strategy: namespaced\n")

    result = sandbox(any_project, "scenario", "run", "data-corruption", "--yes", "--json")

    outcome = as_json(result)
    assert outcome["passed"], [c for c in outcome["checks"] if not c["ok"]]
    assert (outcome["rules"]["normalize"]["pad_numbers"], outcome["rules"]["strategy"]) == (0, "mirror")
    assert outcome["rules"]["own"] is True
    said = said_line(result.stderr, "Scenario data-corruption runs under its own rules (trim: true, uppercase: true")
    assert 'collapse_delims: "-", ' in said and "pad_numbers: 0" in said
    assert said.endswith("; strategy mirror), not the config's (pad_numbers: 5; strategy namespaced).")
    # The steps' summaries are under the scenario's rules too, so they say what its run then finds.
    assert "A run would report 1 out-of-authority key(s), 5 propagation gap(s)" in result.stderr
    assert "The run is recorded under the scenario's rules" in result.stderr


def test_the_next_run_under_the_configs_rules_sees_the_rules_changed(any_project):
    any_project.write_config("normalize:\n  pad_numbers: 5\n")
    sandbox(any_project, "scenario", "run", "data-corruption", "--yes")
    proposed = as_json(any_project.invoke("registry", "list", "--json"))
    assert [(row["master_key"], row["status"]) for row in proposed] == [("CUST-3611", "Proposed")]

    kpis = as_json(any_project.invoke("run", "--json"))["kpis"]

    # Padded to five digits, CUST-3611 is A's CUST-03611: nothing is out of authority under the config's rules,
    # and the key proposed under the scenario's is deprecated for the change of rules, not as vanished.
    assert kpis["missing_in_A_count"] == 0
    [row] = as_json(any_project.invoke("registry", "list", "--json"))
    assert (row["master_key"], row["status"], row["status_reason"]) == ("CUST-3611", DEPRECATED, REASON_RULES_CHANGED)


def test_a_scenario_without_rules_runs_under_the_configs(any_project):
    any_project.write_config("normalize:\n  pad_numbers: 5\n")
    custom = write(any_project.root / "padding.yaml", PADDING.format(rules=""))

    result = sandbox(any_project, "scenario", "run", str(custom), "--json")

    outcome = as_json(result)
    assert outcome["passed"] and outcome["rules"]["own"] is False  # X-00007 is A's X-7 under pad_numbers: 5
    said = said_line(result.stderr, "Scenario padding runs under the config's rules (trim: true")
    assert "pad_numbers: 5" in said and said.endswith("; strategy mirror).")
    assert "recorded under the scenario's rules" not in result.stderr
    shown = sandbox(any_project, "scenario", "show", str(custom)).stdout
    assert "Runs under: the config's rules, the config's strategy" in shown


def test_a_users_scenario_with_rules_runs_under_them(any_project):
    any_project.write_config("normalize:\n  pad_numbers: 5\n")
    custom = write(any_project.root / "padding.yaml", PADDING.format(rules="normalize: {}\n"))

    result = sandbox(any_project, "scenario", "run", str(custom), expect=1)

    # Under the default rules (an empty normalize section means them) X-00007 is not A's X-7.
    assert "Scenario padding runs under its own rules (" in result.stderr
    assert "not the config's (pad_numbers: 5)." in result.stderr
    assert "Scenario padding: 2 check(s) failed." in result.stderr
    shown = sandbox(any_project, "scenario", "show", str(custom)).stdout
    said = said_line(shown, "Runs under: its own rules (trim: true, uppercase: true")
    assert "pad_numbers: 0" in said and said.endswith("), the config's strategy")


def test_rules_that_are_the_configs_are_said_to_be(any_project):
    result = sandbox(any_project, "scenario", "run", "new-product-launch")
    assert "runs under its own rules (" in result.stderr and "), which are the config's." in result.stderr
    assert "recorded under the scenario's rules" not in result.stderr


@pytest.mark.parametrize(
    ("rules", "said"),
    [
        ("normalize: {pad_number: 5}\n", "normalize.pad_number: unknown key (allowed: trim, uppercase,"),
        ("normalize: {trim: 'yes'}\n", "normalize.trim: 'yes' is not a boolean (true or false)"),
        ("normalize: {pad_numbers: -1}\n", "normalize.pad_numbers: -1 is out of range (must be >= 0)"),
        ("normalize: {collapse_delims: '+'}\n", "normalize.collapse_delims: '+' is not allowed by the rules"),
        ("normalize: [trim]\n", "normalize: ['trim'] is not a mapping"),
        ("strategy: mirrored\n", "strategy: 'mirrored' is not one of mirror, namespaced"),
    ],
)
def test_a_scenarios_bad_rules_are_one_clear_error_naming_the_file(any_project, rules, said):
    custom = write(any_project.root / "bad.yaml", PADDING.format(rules=rules))

    for command in (["run", str(custom), "--yes"], ["show", str(custom)]):
        result = sandbox(any_project, "scenario", *command, expect=1)
        assert f"Error: {custom}: {said}" in result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1

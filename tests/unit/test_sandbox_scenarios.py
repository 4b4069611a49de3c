"""Scenario documents: what is checked, against which run KPIs; and the shipped library parses."""

from __future__ import annotations

import pytest

from keysync.application.sandbox_scenarios import ScenarioError, parse_scenario
from keysync.infrastructure.sandbox_scenarios import library_names, read_scenario

KPIS = {
    "missing_in_A_count": 2,
    "missing_from_system_count": 1,
    "duplicate_keys_count": 0,
    "rows_rejected_count": 0,
    "proposed_count": 2,
    "systems": {"B": {"matched_in_A": 10, "unique_keys": 12, "missing_in_A": 2, "missing_from_system": 0}},
}


def test_checks_compare_totals_and_systems_with_the_run():
    scenario = parse_scenario(
        {
            "name": "x",
            "steps": ["init --keys 10"],
            "expected": {"out_of_authority": 2, "gaps": 0, "systems": {"B": {"master_keys": 10, "keys": 11}}},
        },
        "test",
    )
    checks = {c.what: (c.expected, c.actual, c.ok) for c in scenario.checks(KPIS)}
    assert checks == {
        "out_of_authority": (2, 2, True),
        "gaps": (0, 1, False),
        "B.master_keys": (10, 10, True),
        "B.keys": (11, 12, False),
    }


@pytest.mark.parametrize("name", library_names())
def test_the_shipped_scenarios_parse(name: str):
    scenario = parse_scenario(*read_scenario(name))
    assert scenario.name == name
    assert scenario.steps[0].startswith("init ")
    assert scenario.totals and scenario.systems


def test_a_scenario_must_be_a_mapping():
    with pytest.raises(ScenarioError, match="origin: not a mapping"):
        parse_scenario(["x"], "origin")

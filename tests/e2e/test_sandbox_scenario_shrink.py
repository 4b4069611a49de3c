"""A scenario's few keys after a run over larger exports: the run holds its exports back as suspect (the last
accepted rows stand in), the scenario says so before its checks, and --accept-shrink takes its exports as they are.
The sandbox's prediction warns of the same."""

from __future__ import annotations

import pytest

from keysync.projections.reports import SUMMARY
from tests.e2e.test_sandbox_support import SYSTEMS, as_json, sandbox

HELD_BACK = (
    "The run held back A, B, C, D, E as suspect: their exports are far smaller than the last accepted ones, so "
    "the checks compare against those rows. `keysync sandbox scenario run data-corruption --accept-shrink` takes "
    "the scenario's exports as they are."
)


@pytest.fixture
def after_a_larger_run(any_project):
    """A project whose last run accepted 500 keys per system."""
    any_project.invoke("generate", "--keys", "500")
    any_project.invoke("run")
    return any_project


def test_a_scenario_after_a_larger_run_says_its_exports_were_held_back(after_a_larger_run):
    result = sandbox(after_a_larger_run, "scenario", "run", "data-corruption", "--yes", "--json", expect=1)

    assert HELD_BACK in result.stderr
    stderr = result.stderr
    assert stderr.index(HELD_BACK) < stderr.index("Scenario data-corruption: ")  # before the checks' verdict
    outcome = as_json(result)
    assert not outcome["passed"]
    assert sorted(outcome["held_back"]) == list(SYSTEMS)
    assert "processing.max_shrink" in outcome["held_back"]["A"]
    failed = {c["what"]: (c["expected"], c["actual"]) for c in outcome["checks"] if not c["ok"]}
    assert failed["A.master_keys"] == (200, 500)  # the accepted rows stood in


def test_accept_shrink_takes_the_scenarios_exports_and_every_check_passes(after_a_larger_run):
    result = sandbox(after_a_larger_run, "scenario", "run", "data-corruption", "--yes", "--accept-shrink", "--json")

    outcome = as_json(result)
    assert outcome["passed"], [c for c in outcome["checks"] if not c["ok"]]
    assert outcome["held_back"] == {}
    assert "held back" not in result.stderr
    summary = {row["system"]: row["status"] for row in after_a_larger_run.report(SUMMARY)}
    assert summary == dict.fromkeys(SYSTEMS, "ok")


def test_a_scenario_on_a_fresh_store_holds_nothing_back(any_project):
    outcome = as_json(sandbox(any_project, "scenario", "run", "data-corruption", "--yes", "--json"))

    assert outcome["passed"] and outcome["held_back"] == {}


def test_predict_warns_that_the_next_run_would_hold_the_sandbox_back(after_a_larger_run):
    sandbox(after_a_larger_run, "init", "--keys", "5", "--yes")

    result = sandbox(after_a_larger_run, "predict", "--json")

    assert sorted(as_json(result)["held_back"]) == list(SYSTEMS)
    assert "The next run would hold back A, B, C, D, E as suspect" in result.stderr
    assert "`keysync run --accept-shrink A,B,C,D,E` takes them as they are." in result.stderr
    # The run does hold them back, as predicted.
    assert sorted(as_json(after_a_larger_run.invoke("run", "--json"))["suspect"]) == list(SYSTEMS)


def test_predict_says_nothing_of_holding_back_a_small_change(after_a_larger_run):
    sandbox(after_a_larger_run, "init", "--keys", "500", "--yes")

    result = sandbox(after_a_larger_run, "predict", "--json")

    assert as_json(result)["held_back"] == {}
    assert "would hold back" not in result.stderr

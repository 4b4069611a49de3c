"""Scenario documents: what is checked, against which run KPIs; and the shipped library parses."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from keysync.application.sandbox_scenarios import ScenarioError, parse_scenario
from keysync.domain.normalization import NormalizationRules
from keysync.infrastructure.sandbox_scenarios import library_names, load_scenario

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
    scenario = load_scenario(name)
    assert scenario.name == name
    assert scenario.steps[0].startswith("init ")
    assert scenario.totals and scenario.systems
    # Each carries the rules its expected outcome holds under, so that no config can change its outcome.
    assert scenario.normalize is not None and scenario.strategy == "mirror"
    other = NormalizationRules(uppercase=False, pad_numbers=5)
    assert scenario.rules(other, "namespaced") == (NormalizationRules(), "mirror")


def test_a_scenario_must_be_a_mapping():
    with pytest.raises(ScenarioError, match="origin: not a mapping"):
        parse_scenario(["x"], "origin")


SETTINGS = st.fixed_dictionaries(
    {},
    optional={
        "trim": st.booleans(),
        "uppercase": st.booleans(),
        "strip_non_alnum": st.booleans(),
        "collapse_delims": st.sampled_from(["", "-", "_", "."]),
        "pad_numbers": st.integers(0, 12),
    },
)


@given(written=SETTINGS, config=SETTINGS, strategy=st.sampled_from([None, "mirror", "namespaced"]))
def test_a_scenarios_rules_are_its_settings_over_the_defaults_never_the_configs(written, config, strategy):
    document = {"name": "x", "steps": ["status"], "normalize": written, "strategy": strategy}
    rules, chosen = parse_scenario(document, "test").rules(NormalizationRules(**config), "namespaced")
    assert rules == attrs.evolve(NormalizationRules(), **written)
    assert chosen == (strategy or "namespaced")


@given(config=SETTINGS)
def test_a_scenario_without_rules_takes_the_configs(config):
    scenario = parse_scenario({"name": "x", "steps": ["status"]}, "test")
    assert scenario.rules(NormalizationRules(**config), "namespaced") == (NormalizationRules(**config), "namespaced")


def test_an_empty_normalize_section_means_the_default_rules():
    scenario = parse_scenario({"name": "x", "steps": ["status"], "normalize": None}, "test")
    assert scenario.rules(NormalizationRules(pad_numbers=5), "mirror") == (NormalizationRules(), "mirror")


@pytest.mark.parametrize(
    ("written", "said"),
    [
        ("normalize: {pad: 5}", "bad.yaml: normalize.pad: unknown key (allowed: trim,"),
        ("normalize: {uppercase: 1}", "bad.yaml: normalize.uppercase: 1 is not a boolean"),
        ("normalize: {pad_numbers: 65}", "bad.yaml: normalize.pad_numbers: 65 is out of range (must be <= 64)"),
        ("strategy: [mirror]", "bad.yaml: strategy: ['mirror'] is not one of mirror, namespaced"),
    ],
)
def test_a_scenario_files_rules_are_checked_as_the_configs_are(tmp_path, monkeypatch, written, said):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text(f"name: x\nsteps: [status]\n{written}\n", encoding="utf-8")
    with pytest.raises(ScenarioError) as raised:
        load_scenario("bad.yaml")
    assert str(raised.value).startswith(said)


def test_rules_that_do_not_build_are_refused_without_the_configs_checks():
    with pytest.raises(ScenarioError, match=r"origin: normalize: .*unexpected keyword argument 'pad'"):
        parse_scenario({"name": "x", "steps": ["status"], "normalize": {"pad": 1}}, "origin")

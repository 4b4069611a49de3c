"""Sandbox scenarios: a named list of sandbox command lines and the outcome a reconciliation should then report.

A scenario is a YAML document (the shipped library is in ``scenarios/``)::

    name: unauthorized-keys
    description: Keys created in downstream systems that System A never issued.
    steps:
      - init --keys 200 --seed 7
      - add-key UNAUTH-001 --systems B,C
    expected:               # totals over the run (any may be left out)
      out_of_authority: 2   # run KPI missing_in_A_count
      gaps: 0               # missing_from_system_count
      duplicates: 0
      rejected: 0
      systems:              # per system (any system, any field may be left out)
        B: {master_keys: 200, out_of_authority: 1}

Per system, ``master_keys`` is how many of System A's master keys the system holds (the run's matched_in_A), and
``keys`` its distinct normalized keys.

The expected numbers hold under some normalization rules and strategy only. A scenario may say which it was written
for, and then runs under them whatever the config says (every shipped scenario does)::

    normalize: {pad_numbers: 0}   # the settings of the config's normalize section; the rest are the defaults
    strategy: mirror              # provisioning.strategy

A scenario that leaves either out runs under the config's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from keysync.domain.normalization import NormalizationRules
from keysync.domain.observations import SYSTEMS

TOTALS = {  # scenario name -> run KPI
    "out_of_authority": "missing_in_A_count",
    "gaps": "missing_from_system_count",
    "duplicates": "duplicate_keys_count",
    "rejected": "rows_rejected_count",
    "master_keys_proposed": "proposed_count",
}
PER_SYSTEM = {
    "master_keys": "matched_in_A",
    "keys": "unique_keys",
    "out_of_authority": "missing_in_A",
    "gaps": "missing_from_system",
    "duplicates": "duplicate_keys",
    "rejected": "rows_rejected",
}
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
NESTED = ("shell", "batch", "scenario")  # commands a step may not run: no scenario inside a scenario
FIELDS = ("name", "description", "steps", "normalize", "strategy", "expected")

# Checks a scenario's normalize settings and strategy (each None when left out) and returns them; raises
# ScenarioError naming the origin (its last argument) and the problem. The file reader passes the config's own checks,
# so a scenario's rules are checked as the config's are and new settings flow through without a change here.
RulesCheck = Callable[[Any, Any, str], tuple[dict[str, Any] | None, str | None]]


class ScenarioError(Exception):
    """A scenario that cannot be used, or is not there; the message says which and why."""


@attrs.frozen
class Check:
    what: str
    expected: int
    actual: int

    @property
    def ok(self) -> bool:
        return self.expected == self.actual


@attrs.frozen
class Scenario:
    name: str
    description: str
    steps: list[str]
    totals: dict[str, int]
    systems: dict[str, dict[str, int]]
    # The normalize settings it was written for, laid over the default rules (None: the config's rules); and the
    # strategy (None: the config's).
    normalize: dict[str, Any] | None = None
    strategy: str | None = None

    @property
    def own_rules(self) -> NormalizationRules | None:
        """The rules it was written for: its settings over the defaults (never over the config's, which would make
        its outcome depend on the config again); None if it has none."""
        return None if self.normalize is None else attrs.evolve(NormalizationRules(), **self.normalize)

    def rules(self, config_rules: NormalizationRules, config_strategy: str) -> tuple[NormalizationRules, str]:
        """The rules and strategy it runs under: its own where it has them, else the config's."""
        return self.own_rules or config_rules, self.strategy or config_strategy

    def checks(self, kpis: Mapping[str, Any]) -> list[Check]:
        """Each expected number against a run's KPIs."""
        found = [Check(name, value, kpis[TOTALS[name]]) for name, value in self.totals.items()]
        for system, expected in self.systems.items():
            actual = kpis["systems"][system]
            found += [Check(f"{system}.{name}", value, actual[PER_SYSTEM[name]]) for name, value in expected.items()]
        return found

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "steps": self.steps,
            "normalize": self.normalize,
            "strategy": self.strategy,
            "expected": {**self.totals, "systems": self.systems},
        }


def _rules_that_build(normalize: Any, strategy: Any, origin: str) -> tuple[dict[str, Any] | None, str | None]:
    """Without the config's checks (a document not read from a file): the rules must at least build."""
    try:
        if normalize is not None:
            attrs.evolve(NormalizationRules(), **normalize)
    except (TypeError, ValueError) as error:
        raise ScenarioError(f"{origin}: normalize: {' '.join(str(error).split())}") from error
    if strategy is not None and not isinstance(strategy, str):
        raise ScenarioError(f"{origin}: strategy: {strategy!r} is not text")
    return normalize, strategy


def parse_scenario(document: Any, origin: str, check_rules: RulesCheck = _rules_that_build) -> Scenario:
    """A Scenario from a parsed YAML document; ScenarioError naming ``origin`` and the problem if it is not one.
    ``check_rules`` checks its normalize settings and strategy (the config's checks, when read from a file)."""

    def fail(problem: str) -> ScenarioError:
        return ScenarioError(f"{origin}: {problem}")

    if not isinstance(document, dict):
        raise fail("not a mapping with name, description, steps and expected")
    unknown = set(document) - set(FIELDS)
    if unknown:
        raise fail(f"unknown field {', '.join(sorted(map(str, unknown)))} (allowed: {', '.join(FIELDS)})")
    name, description = document.get("name"), document.get("description", "")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise fail(f"name {name!r} must be lower-case letters, digits and '-'")
    if not isinstance(description, str):
        raise fail("description is not text")
    steps = document.get("steps")
    if not isinstance(steps, list) or not steps or not all(isinstance(s, str) and s.strip() for s in steps):
        raise fail("steps must be a non-empty list of sandbox command lines")
    for number, step in enumerate(steps, 1):
        if step.split()[0] in NESTED:
            raise fail(f"step {number}: {step.split()[0]} cannot run inside a scenario")
    expected = document.get("expected") or {}
    if not isinstance(expected, dict):
        raise fail("expected is not a mapping")
    systems_doc = expected.get("systems") or {}
    totals = _numbers({k: v for k, v in expected.items() if k != "systems"}, TOTALS, "expected", fail)
    if not isinstance(systems_doc, dict) or set(systems_doc) - set(SYSTEMS):
        raise fail(f"expected.systems must be a mapping of some of {', '.join(SYSTEMS)}")
    systems = {
        s: _numbers(systems_doc[s] or {}, PER_SYSTEM, f"expected.systems.{s}", fail)
        for s in SYSTEMS
        if s in systems_doc
    }
    # An empty ``normalize:`` is written for the default rules, as an empty section of the config means them.
    written_for = (document.get("normalize") or {}) if "normalize" in document else None
    normalize, strategy = check_rules(written_for, document.get("strategy"), origin)
    return Scenario(
        name, description.strip(), [s.strip() for s in steps], totals, systems, normalize=normalize, strategy=strategy
    )


def _numbers(values: Any, allowed: Mapping[str, str], where: str, fail: Any) -> dict[str, int]:
    if not isinstance(values, dict):
        raise fail(f"{where} is not a mapping")
    unknown = set(values) - set(allowed)
    if unknown:
        raise fail(f"{where}: unknown {', '.join(sorted(map(str, unknown)))} (allowed: {', '.join(allowed)})")
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise fail(f"{where}.{key}: {value!r} is not a count (an integer >= 0)")
    return dict(values)

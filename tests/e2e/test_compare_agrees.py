"""keysync compare agrees with keysync trends: per system, opened minus resolved is the change of
missing_in_A + missing_from_system between the two runs, each run under the rules it ran with."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Project
from tests.e2e.test_trends import invoke, three_runs

UPPER_OFF = "normalize:\n  uppercase: false\n"


def discrepancies(project: Project) -> dict[str, dict[str, int]]:
    """run_id -> system -> missing_in_A + missing_from_system, as the trend report counts them."""
    found: dict[str, dict[str, int]] = {}
    for point in json.loads(invoke(project, "trends", "--json").stdout):
        if point["status"] in ("ok", "suspect"):  # a suspect system counts the rows that stood in for it
            found.setdefault(point["run_id"], {})[point["system"]] = (
                point["missing_in_A"] + point["missing_from_system"]
            )
    return found


def assert_compare_agrees_with_trends(project: Project, run_a: str, run_b: str) -> dict:
    comparison = json.loads(invoke(project, "compare", run_a, run_b, "--json").stdout)
    counted = discrepancies(project)
    assert comparison["systems"], "no system was compared"
    for system, counts in comparison["systems"].items():
        moved = counted[run_b][system] - counted[run_a][system]
        assert counts["opened"] - counts["resolved"] == moved, (system, counts, moved)
    return comparison


def run(project: Project) -> str:
    return json.loads(project.invoke("run", "--json").stdout)["run_id"]


def test_compare_agrees_with_trends_when_the_data_changes(any_project, write_systems):
    first, second, third = three_runs(any_project, write_systems)
    for run_a, run_b in ((first, second), (second, third), (first, third), (third, first)):
        assert_compare_agrees_with_trends(any_project, run_a, run_b)


def test_compare_agrees_with_trends_across_a_change_of_rules(any_project, write_systems):
    write_systems(A=["CUST-1", "CUST-2"], B=["cust-1", "CUST-2"], C=["CUST-1", "CUST-2"], D=["cust-2"], E=[])
    before = run(any_project)
    any_project.write_config(UPPER_OFF)  # the same exports: only the rules change
    after = run(any_project)

    comparison = assert_compare_agrees_with_trends(any_project, before, after)
    changes = {(c["system"], c["kind"], c["change"], c["key"]) for c in comparison["changes"]}
    assert changes == {
        ("B", "missing_in_A", "opened", "cust-1"),
        ("B", "missing_from_system", "opened", "CUST-1"),
        ("D", "missing_in_A", "opened", "cust-2"),
        ("D", "missing_from_system", "opened", "CUST-2"),
    }
    assert comparison["rules_differ"] is True
    back = invoke(any_project, "compare", after, before)
    assert "0 opened, 4 resolved" in back.stderr and "normalization rules differ" in back.stderr
    # Under the same rules nothing is said about them.
    same = json.loads(invoke(any_project, "compare", after, after, "--json").stdout)
    assert same["rules_differ"] is False and same["totals"] == {"opened": 0, "resolved": 0}


RAW_KEYS = ["CUST-1", "cust-1", "CUST_1", " cust 1", "CUST-2", "cust.2", "X-9", "x9"]
RULES = st.fixed_dictionaries(
    {"uppercase": st.booleans(), "strip_non_alnum": st.booleans(), "collapse_delims": st.sampled_from(["-", ""])}
)
EXPORTS = st.fixed_dictionaries(
    {s: st.lists(st.sampled_from(RAW_KEYS), min_size=s == "A", max_size=5) for s in "ABCDE"}  # A is never empty
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs=st.lists(st.tuples(EXPORTS, RULES), min_size=2, max_size=2))
def test_compare_agrees_with_trends_over_random_runs_and_rules(runs):
    with tempfile.TemporaryDirectory() as folder:
        project = Project(Path(folder))
        ids = []
        for exports, rules in runs:
            project.write_config("normalize:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in rules.items()))
            for system, keys in exports.items():
                project.write_system(system, keys)
            ids.append(run(project))
        assert_compare_agrees_with_trends(project, *ids)

"""What the sandbox says a run would find is what keysync run finds: hints, predictions and scenarios."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keysync.application.sandbox_views import HINTS, SYSTEM_KPIS
from keysync.infrastructure.sandbox_scenarios import library_names
from tests.conftest import Project
from tests.e2e.test_sandbox_support import SYSTEMS, as_json, keys, run_kpis, sandbox, write

_systems = st.lists(st.sampled_from(SYSTEMS), min_size=1, max_size=3, unique=True).map(",".join)
_new_keys = st.lists(
    st.sampled_from(["NEW-1", "new_1", " NEW-1 ", "cust-00001", "X\x07", "", "Y" * 300, "\udcff", "P-0007"]),
    min_size=1,
    max_size=3,
)
_edit = st.one_of(
    st.tuples(st.just("add"), _new_keys, _systems),
    st.tuples(st.just("remove"), st.sampled_from(["CUST-*", "*1*", "NEW*", "PROD-*"]), _systems),
    st.tuples(st.just("modify"), st.integers(0, 14), st.sampled_from(["lower", "delims", "pad", "corrupt"])),
    st.tuples(st.just("undo"), st.integers(1, 2), st.just("")),
)
_configs = st.sampled_from(["", "normalize: {pad_numbers: 5}\n", "provisioning: {strategy: namespaced}\n"])


def edit(project: Project, step: tuple, n: int) -> None:
    kind, a, b = step
    if kind == "add":
        args = ["add-key", *a, "--systems", b]
    elif kind == "remove":
        args = ["remove-key", "--pattern", a, "--systems", b, "--yes"]
    elif kind == "modify":
        present = keys(project, "A")
        if not present:
            return
        corruption = ["control", "empty", "long", "bytes"][n % 4]
        args = ["modify-key", present[a % len(present)], "--systems", "B,D", "--variant", b, "--corruption", corruption]
    else:
        args = ["undo", str(a)]
    result = sandbox(project, *args, expect=None)
    assert result.exit_code in (0, 1) and "Traceback" not in result.stderr, result.stderr  # refused is fine


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_configs, st.lists(_edit, min_size=1, max_size=5))
def test_status_hints_equal_what_keysync_run_reports(tmp_path_factory, config, edits):
    project = Project(tmp_path_factory.mktemp("project"))
    project.write_config(config)
    sandbox(project, "init", "--keys", "15", "--seed", "2")
    for n, step in enumerate(edits):
        edit(project, step, n)
    status = as_json(sandbox(project, "status", "--json"))
    if status["run_would_fail"]:
        project.invoke("run", expect=1)
        return
    kpis = run_kpis(project)
    assert status["hints"] == {hint: kpis[kpi] for hint, kpi in HINTS.items()}
    for system in SYSTEMS:
        got = status["systems"][system]
        assert {c: got[c] for c in SYSTEM_KPIS} == {c: kpis["systems"][system][k] for c, k in SYSTEM_KPIS.items()}


def test_corrupt_variants_show_up_in_the_run_s_rejected_rows(any_project):
    sandbox(any_project, "init", "--keys", "8")
    present = keys(any_project, "A")
    for key, corruption in zip(present, ["control", "empty", "long", "bytes"], strict=False):
        sandbox(any_project, "modify-key", key, "--systems", "C", "--variant", "corrupt", "--corruption", corruption)
    any_project.invoke("run")
    rejected = any_project.report("rejected_rows.csv")
    assert [(r["system"], r["reason"]) for r in rejected] == [
        ("C", "control character \\x1b in key"),
        ("C", "empty key"),
        ("C", "key longer than 256 characters (257)"),
        ("C", "key is not valid UTF-8"),
    ]
    assert rejected[3]["raw"].startswith(f"C,{present[3]}\\xff")


def test_predict_then_compare_with_the_run(any_project):
    sandbox(any_project, "init", "--keys", "10")
    sandbox(any_project, "add-key", "UNAUTH-1", "UNAUTH-2", "--systems", "B,C")
    sandbox(any_project, "remove-key", keys(any_project, "A")[0], "--systems", "E", "--yes")
    prediction = as_json(sandbox(any_project, "predict", "--json"))
    assert prediction["new_master_keys"] == 2
    assert prediction["systems_affected"] == ["B", "C", "E"]
    assert prediction["hints"]["propagation_gaps"] == 1
    assert "It would propose 2 new master key(s): UNAUTH-1, UNAUTH-2" in sandbox(any_project, "predict").stdout
    sandbox(any_project, "predict", "--compare-last-run", expect=1)  # no run yet
    any_project.invoke("run")
    compared = sandbox(any_project, "predict", "--compare-last-run", "--json")
    assert as_json(compared)["matches"] is True and "matches the run" in compared.stderr
    assert as_json(sandbox(any_project, "predict", "--json"))["new_master_keys"] == 0  # proposed by that run now
    sandbox(any_project, "add-key", "UNAUTH-3", "--systems", "D")
    changed = sandbox(any_project, "predict", "--compare-last-run", expect=1)
    assert "DIFFERS" in changed.stdout and "changed after run" in changed.stderr


@pytest.mark.parametrize("name", library_names())
def test_every_scenario_in_the_library_passes(any_project, name):
    result = sandbox(any_project, "scenario", "run", name, "--json")
    outcome = as_json(result)
    assert outcome["passed"], [c for c in outcome["checks"] if not c["ok"]]
    assert f"Scenario {name}: passed." in result.stderr


def test_the_library_has_the_five_scenarios_with_descriptions(any_project):
    listed = as_json(sandbox(any_project, "scenario", "list", "--json"))
    assert [s["name"] for s in listed] == [
        "data-corruption", "network-partition", "new-product-launch", "recovery-process", "unauthorized-keys",
    ]  # fmt: skip
    assert all(s["description"] and s["expected"]["systems"] for s in listed)
    shown = sandbox(any_project, "scenario", "show", "network-partition").stdout
    assert "1. init --keys 200 --seed 7" in shown and "System D: master_keys 188" in shown


def test_a_mismatch_fails_the_scenario_with_a_table(any_project):
    custom = write(
        any_project.root / "mine.yaml",
        "name: mine\ndescription: one key too many\nsteps:\n  - init --keys 5\n  - add-key X --systems B\n"
        "expected:\n  out_of_authority: 0\n  systems:\n    B: {keys: 6}\n",
    )
    result = sandbox(any_project, "scenario", "run", str(custom), expect=1)
    assert "out_of_authority" in result.stdout and "FAIL" in result.stdout
    assert "Scenario mine: 1 check(s) failed." in result.stderr


def test_a_failing_step_stops_the_scenario_and_says_which(any_project):
    custom = write(
        any_project.root / "broken.yaml",
        "name: broken\nsteps:\n  - init --keys 5\n  - remove-key NOPE --systems B --yes\n  - status\n",
    )
    result = sandbox(any_project, "scenario", "run", str(custom), expect=1)
    assert "scenario broken: step 2 failed (exit 1): remove-key NOPE --systems B --yes" in result.stderr
    assert "Step 3/3" not in result.stderr


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("name: Bad Name\nsteps: [status]\n", "must be lower-case"),
        ("name: x\nsteps: []\n", "steps must be a non-empty list"),
        ("name: x\nsteps: [shell]\n", "shell cannot run inside a scenario"),
        ("name: x\nsteps: [status]\nexpected: {gapz: 1}\n", "unknown gapz"),
        ("name: x\nsteps: [status]\nexpected: {systems: {F: {}}}\n", "some of A, B, C, D, E"),
        ("name: x\nsteps: [status]\nexpected: {gaps: -1}\n", "is not a count"),
        ("name: [x\n", "invalid YAML"),
    ],
)
def test_a_broken_scenario_file_is_one_clear_error(any_project, content, said):
    result = sandbox(any_project, "scenario", "run", str(write(any_project.root / "s.yaml", content)), expect=1)
    assert said in result.stderr


def test_an_unknown_scenario_lists_the_library(any_project):
    result = sandbox(any_project, "scenario", "show", "nope", expect=1)
    assert "no scenario 'nope': name one of data-corruption, network-partition" in result.stderr


def test_step_by_step_waits_for_enter_and_q_stops(any_project):
    stopped = sandbox(any_project, "scenario", "run", "new-product-launch", "--step", input="\nq\n", expect=1)
    assert "Stopped before step 2." in stopped.stderr
    assert len(keys(any_project, "A")) == 200  # step 1 ran, step 2 did not
    finished = sandbox(any_project, "scenario", "run", "new-product-launch", "--step", input="\n\n\n")
    assert finished.stderr.count("Press Enter to run it") == 3

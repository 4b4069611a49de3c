"""One bad export never costs an approved master key: a suspect export is held back and the system's last
accepted rows stand in for it; Deprecated keys come back, by hand or when a run finds their keys again."""

from __future__ import annotations

import json
import shutil

import pytest

from keysync.domain.registry import REASON_SEEN_AGAIN, REASON_VANISHED
from keysync.projections.reports import AUDIT, CHANGES, MISSING_IN_A, REGISTRY, SUMMARY
from tests.e2e.test_crash_resume import events, keysync

A = [f"CUST-{i:03}" for i in range(1, 11)]
ONLY_D = [f"DKEY-{i:02}" for i in range(1, 11)]  # master keys whose only source is System D
D = [*A[:4], *ONLY_D]


@pytest.fixture
def approved(any_project, write_systems):
    """Every system read once, every proposed master key (D's ten) approved."""
    write_systems(A=A, B=A, C=A, D=D, E=A)
    first = json.loads(any_project.invoke("run", "--json").stdout)
    assert first["proposed"] == len(ONLY_D)
    any_project.invoke("registry", "approve", "--all")
    return any_project


def run(project, *args: str) -> tuple[dict, str]:
    result = project.invoke("run", "--json", *args)
    return json.loads(result.stdout), result.stderr


def statuses(project) -> dict[str, str]:
    return {r["master_key"]: r["status"] for r in project.report(REGISTRY)}


def summary(project) -> dict[str, dict[str, str]]:
    return {r["system"]: r for r in project.report(SUMMARY)}


def test_a_header_only_export_is_held_back_and_nothing_is_deprecated(approved):
    approved.write_system("D", [])
    outcome, stderr = run(approved)
    assert outcome["deprecated"] == 0 and outcome["kpis"]["deprecated_count"] == 0
    assert set(statuses(approved).values()) == {"Active"}
    assert "System D's export was held back as suspect: its export has no valid rows" in stderr
    d = summary(approved)["D"]
    assert d["status"] == "suspect" and "no valid rows" in d["status_reason"]
    assert "processing.max_shrink 50%" in d["status_reason"] and "--accept-shrink D" in d["status_reason"]
    assert d["unique_keys"] == str(len(D)) and d["missing_in_A"] == str(len(ONLY_D))  # the accepted rows stand in
    assert summary(approved)["B"]["status"] == "ok" and summary(approved)["B"]["status_reason"] == ""
    assert sorted(r["normalized_key"] for r in approved.report(MISSING_IN_A)) == ONLY_D
    assert not [r for r in approved.report(CHANGES) if r["system"] == "D"]  # nothing opened or closed
    assert outcome["suspect"].keys() == {"D"}

    # D's real export is back: nothing changes.
    approved.write_system("D", D)
    outcome, _ = run(approved)
    assert outcome["deprecated"] == 0 and outcome["suspect"] == {}
    assert set(statuses(approved).values()) == {"Active"}
    assert summary(approved)["D"]["status"] == "ok"


def test_trends_mark_a_held_back_systems_counts(approved):
    approved.write_system("D", [])
    run(approved)
    table = approved.invoke("trends", "--wide").stdout
    last = table.splitlines()[-2] if "held back" in table.splitlines()[-1] else table.splitlines()[-1]
    assert "* held back as suspect" in table
    d_cell = [cell for cell in last.split("  ") if cell.strip()][-2]  # columns: run_id, finished_at, B, C, D, E
    assert d_cell.strip().endswith("*") and not last.rstrip().endswith("*")


def test_the_closing_table_says_suspect_and_what_the_run_decided(approved):
    approved.write_system("D", ["DKEY-01"])
    result = approved.invoke("run")
    assert "suspect" in result.stdout and "Master keys" in result.stdout
    assert "its export has 1 valid rows, against 14" in result.stderr


def test_accept_shrink_takes_the_export_and_a_later_run_brings_the_keys_back(approved):
    approved.write_system("D", [])
    outcome, stderr = run(approved, "--accept-shrink", "D")
    assert "held back" not in stderr and summary(approved)["D"]["status"] == "ok"
    assert outcome["deprecated"] == len(ONLY_D)
    [deprecated] = outcome["kpis"]["deprecated"]
    assert deprecated == {"reason": REASON_VANISHED, "count": 10, "first": ONLY_D[:5]}
    assert {k for k, s in statuses(approved).items() if s == "Deprecated"} == set(ONLY_D)
    table = approved.invoke("run", "--dry-run", "--accept-shrink", "d,e").stdout
    assert "Master keys" in table

    # The keys are seen again: each returns to the status it had (Active), saying why.
    approved.write_system("D", D)
    outcome, _ = run(approved)
    assert outcome["kpis"]["returned"] == [{"status": "Active", "count": 10, "first": ONLY_D[:5]}]
    rows = {r["master_key"]: r for r in approved.report(REGISTRY)}
    assert {rows[k]["status"] for k in ONLY_D} == {"Active"}
    assert rows["DKEY-01"]["status_reason"] == REASON_SEEN_AGAIN
    timeline = json.loads(approved.invoke("key", "DKEY-01", "--json").stdout)
    events = [e["event_type"] for e in timeline["registry"]]
    assert events[-3:] == ["MasterKeysDeprecated", "MasterKeysSeen", "MasterKeysReactivated"]
    assert json.loads(approved.invoke("doctor", "--json").stdout)["healthy"]


def test_a_proposed_key_deprecated_as_vanished_returns_to_proposed(any_project, write_systems):
    write_systems(A=A, B=A, C=A, D=D, E=A)
    any_project.invoke("run")
    any_project.invoke("registry", "approve", "DKEY-01")
    any_project.write_system("D", A[:4])
    any_project.invoke("run", "--accept-shrink", "D")
    assert {statuses(any_project)[k] for k in ONLY_D} == {"Deprecated"}
    any_project.write_system("D", D)
    any_project.invoke("run")
    assert statuses(any_project)["DKEY-01"] == "Active"
    assert {statuses(any_project)[k] for k in ONLY_D[1:]} == {"Proposed"}


def test_an_export_of_keys_that_normalize_to_nothing_is_held_back(approved):
    # Rows the reader takes, but whose keys the rules strip to nothing: no more valid than an empty export.
    approved.write_system("D", [*D[:3], *["!!!", "***", "Жук", "--"] * 4])
    outcome, stderr = run(approved)
    assert "System D's export was held back as suspect: its export has 3 valid rows, against 14" in stderr
    assert outcome["deprecated"] == 0 and set(statuses(approved).values()) == {"Active"}


@pytest.mark.parametrize("mode", ["full", "incremental"])
def test_two_suspect_runs_in_a_row_stay_suspect(approved, mode):
    approved.write_system("D", ONLY_D[:2])  # 14 valid rows fell to 2
    for _ in range(2):
        outcome, _stderr = run(approved, "-m", mode)
        assert outcome["suspect"].keys() == {"D"} and outcome["deprecated"] == 0
        assert summary(approved)["D"]["status"] == "suspect"
    assert set(statuses(approved).values()) == {"Active"}
    approved.write_system("D", D)
    outcome, _ = run(approved, "-m", mode)
    assert outcome["suspect"] == {} and summary(approved)["D"]["status"] == "ok"
    assert set(statuses(approved).values()) == {"Active"}


def test_max_shrink_1_takes_every_export_as_it_is(approved):
    approved.write_config("processing: {max_shrink: 1}\n")
    approved.write_system("D", [])
    outcome, _ = run(approved)
    assert outcome["suspect"] == {} and outcome["deprecated"] == len(ONLY_D)


def test_a_smaller_export_within_max_shrink_is_taken(approved):
    approved.write_system("D", D[:8])  # 14 -> 8 rows: lost less than half
    outcome, _ = run(approved)
    assert outcome["suspect"] == {} and outcome["deprecated"] == len(D) - 8


def test_an_unavailable_system_says_why_in_the_summary(any_project, write_systems):
    write_systems(A=A, B=A, C=A, E=A)
    any_project.invoke("run")
    d = summary(any_project)["D"]
    assert d["status"] == "unavailable" and "D.csv" in d["status_reason"]


def test_registry_reactivate_brings_a_deprecated_key_back_to_active(approved):
    approved.invoke("registry", "deprecate", "DKEY-01", "--reason", "merged")
    approved.invoke("registry", "reactivate", "DKEY-01", "--reason", "the merge was undone")
    row = {r["master_key"]: r for r in approved.report(REGISTRY)}["DKEY-01"]
    assert (row["status"], row["status_reason"]) == ("Active", "the merge was undone")
    assert approved.report(AUDIT)[-1]["event_type"] == "MasterKeysReactivated"
    refused = approved.invoke("registry", "reactivate", "DKEY-02", "--reason", "why", expect=1)
    assert "cannot make DKEY-02 Active again: it is Active" in refused.stderr and "Traceback" not in refused.output
    assert approved.invoke("registry", "reactivate", "NOPE", "--reason", "why", expect=1).stderr.count("NOPE")
    assert json.loads(approved.invoke("doctor", "--json").stdout)["healthy"]
    timeline = json.loads(approved.invoke("key", "DKEY-01", "--json").stdout)["timeline"]
    assert any("back to Active" in str(entry) and "the merge was undone" in str(entry) for entry in timeline)


def test_accept_shrink_names_known_systems_only(approved):
    result = approved.invoke("run", "--accept-shrink", "B,Q", expect=2)
    assert "Q: name systems (A, B, C, D, E)" in result.stderr


@pytest.mark.parametrize("kept", [[], A[:1]], ids=["header-only", "one-key"])
def test_a_shrunken_authority_is_held_back_and_proposes_nothing(approved, kept):
    approved.write_system("A", kept)
    outcome, stderr = run(approved)
    assert "System A's export was held back as suspect" in stderr
    assert (outcome["proposed"], outcome["deprecated"]) == (0, 0)
    assert set(statuses(approved).values()) == {"Active"} and len(statuses(approved)) == len(ONLY_D)
    assert summary(approved)["A"]["status"] == "suspect"
    assert sorted(r["normalized_key"] for r in approved.report(MISSING_IN_A)) == ONLY_D  # A's accepted rows

    # Taken as it is, a small A puts B's keys out of authority: the run proposes them, as asked; an empty A leaves
    # nothing to reconcile against, and the run fails saying so.
    if not kept:
        failed = approved.invoke("run", "--accept-shrink", "A", expect=1)
        assert "has no valid keys: nothing to reconcile against" in failed.stderr
        return
    outcome, _ = run(approved, "--accept-shrink", "A")
    assert summary(approved)["A"]["status"] == "ok" and outcome["proposed"] == len(A) - len(kept)


def test_a_run_over_the_sandboxs_exports_says_so(project):
    project.invoke("sandbox", "init", "--keys", "5")
    assert "Reconciling sandbox data" in project.invoke("run").stderr


def test_a_run_over_sandbox_exports_held_back_says_how_to_take_them(project, write_systems):
    write_systems(A=A, B=A, C=A, D=D, E=A)
    project.invoke("run")
    project.invoke("sandbox", "init", "--keys", "3", "--yes")
    stderr = project.invoke("run").stderr
    assert "The sandbox's exports of A, B, C, D, E were held back" in stderr
    assert "`keysync run --accept-shrink A,B,C,D,E` reconciles them as they are" in stderr
    project.invoke("run", "--accept-shrink", "A,B,C,D,E")
    assert {row["status"] for row in project.report(SUMMARY)} == {"ok"}


def test_a_run_over_other_exports_does_not_mention_the_sandbox(project, write_systems):
    write_systems(A=A, B=A, C=A, D=D, E=A)
    assert "sandbox" not in project.invoke("run").stderr


def test_a_run_killed_after_holding_an_export_back_resumes_with_it_held_back(project, write_systems, tmp_path_factory):
    write_systems(A=A, B=A, C=A, D=D, E=A)
    project.invoke("run")
    project.invoke("registry", "approve", "--all")
    project.write_system("D", [])
    pristine = tmp_path_factory.mktemp("pristine") / "project"
    shutil.copytree(project.root, pristine)
    for crash_after in range(1, 40):
        shutil.rmtree(project.root)
        shutil.copytree(pristine, project.root)
        crashed = keysync(project, "run", env={"KEYSYNC_CRASH_AFTER_EVENTS": str(crash_after)})
        assert crashed.returncode == -9, crashed.stderr
        stored = [topic for _, topic in events(project)]
        this_run = stored[len(stored) - stored[::-1].index("Started") - 1 :]
        assert "Completed" not in this_run, "no crash point between holding D back and completing"
        if "SourceHeldBack" in this_run:
            break  # killed after the checkpoint that recorded D held back, before the end
    resumed = keysync(project, "run")
    assert resumed.returncode == 0, resumed.stderr
    assert "Resumed run" in resumed.stderr and "System D's export was held back" in resumed.stderr
    assert summary(project)["D"]["status"] == "suspect"
    assert set(statuses(project).values()) == {"Active"}
    history = json.loads(project.invoke("history", "--json").stdout)
    assert "D suspect: its export has no valid rows" in history[0]["errors"]
    outcome, _ = run(project)  # the resumed run kept D's accepted export as the baseline
    assert outcome["suspect"].keys() == {"D"} and outcome["deprecated"] == 0

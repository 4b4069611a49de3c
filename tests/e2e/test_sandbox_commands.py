"""keysync sandbox's commands through the command line, on a real SQLite store and real files."""

from __future__ import annotations

import csv

import click
import pytest
from click.testing import CliRunner

from keysync.cli import sandbox_common
from keysync.cli.sandbox import sandbox_group
from tests.e2e.test_sandbox_support import SYSTEMS, as_json, files, keys, sandbox, stored_events, write


def test_every_command_has_help_with_an_example():
    def walk(group: click.Group, path: list[str]):
        for name, command in group.commands.items():
            yield [*path, name], command
            if isinstance(command, click.Group):
                yield from walk(command, [*path, name])

    for path, command in walk(sandbox_group, []):
        assert "Example:" in (command.help or ""), path
        result = CliRunner().invoke(sandbox_group, [*path, "--help"])
        assert result.exit_code == 0 and "Example:" in result.stdout, path


def test_init_writes_the_same_keys_to_every_system_and_keysync_run_agrees(any_project):
    result = sandbox(any_project, "init", "--keys", "30", "--seed", "3")
    assert "Initialized 30 synchronised keys" in result.stderr
    assert result.stdout == ""  # messages and the summary go to stderr
    assert all(keys(any_project, s) == keys(any_project, "A") for s in SYSTEMS)
    assert len(set(keys(any_project, "A"))) == 30
    kpis = as_json(any_project.invoke("run", "--json"))["kpis"]
    assert (kpis["missing_in_A_count"], kpis["missing_from_system_count"], kpis["rows_rejected_count"]) == (0, 0, 0)
    assert {s: k["unique_keys"] for s, k in kpis["systems"].items()} == dict.fromkeys(SYSTEMS, 30)


def test_existing_exports_are_not_replaced_before_init(any_project, write_systems):
    write_systems(A=["REAL-1"], B=["REAL-1"], C=["REAL-1"], D=["REAL-1"], E=["REAL-1"])
    before = files(any_project)
    result = sandbox(any_project, "add-key", "X", "--systems", "B", expect=1)
    assert "the sandbox holds no data yet: start with keysync sandbox init" in result.stderr
    assert files(any_project) == before


def test_init_replaces_exports_it_did_not_write_only_once_confirmed(any_project, write_systems):
    write_systems(A=["REAL-1"], B=["REAL-1"], C=["REAL-1"], D=["REAL-1"], E=["REAL-1"])
    before = files(any_project)

    refused = sandbox(any_project, "init", "--keys", "5", expect=1)  # no terminal to confirm on

    assert "data the sandbox did not write" in refused.stderr and "without --yes" in refused.stderr
    assert files(any_project) == before
    assert as_json(sandbox(any_project, "history", "--json")) == []
    sandbox(any_project, "init", "--keys", "5", "--yes")
    assert len(keys(any_project, "B")) == 5
    sandbox(any_project, "init", "--keys", "7")  # its own files now: no question
    assert len(keys(any_project, "B")) == 7


def test_saving_a_state_first_does_not_open_the_way_over_foreign_exports(any_project, write_systems):
    write_systems(A=["REAL-1"], B=["REAL-1"], C=["REAL-1"], D=["REAL-1"], E=["REAL-1"])
    before = files(any_project)
    sandbox(any_project, "save-state", "empty")  # writes a state file, not A-E

    refused = sandbox(any_project, "load-state", "empty", expect=1)

    assert "hold data the sandbox did not write" in refused.stderr and "init --yes" in refused.stderr
    assert files(any_project) == before


def test_a_scenario_asks_once_before_replacing_foreign_exports(any_project, write_systems):
    write_systems(A=["REAL-1"], B=["REAL-1"], C=["REAL-1"], D=["REAL-1"], E=["REAL-1"])
    before = files(any_project)

    refused = sandbox(any_project, "scenario", "run", "data-corruption", expect=1)

    assert "data the sandbox did not write" in refused.stderr and "without --yes" in refused.stderr
    assert files(any_project) == before
    sandbox(any_project, "scenario", "run", "data-corruption", "--yes")


def test_init_replaces_the_data_and_keeps_saved_states(any_project):
    sandbox(any_project, "init", "--keys", "10")
    sandbox(any_project, "save-state", "ten")
    sandbox(any_project, "init", "--keys", "4", "--seed", "9")
    assert len(keys(any_project, "C")) == 4
    assert [s["name"] for s in as_json(sandbox(any_project, "states", "--json"))] == ["ten"]


def test_add_key_from_arguments_a_file_a_csv_and_stdin(any_project):
    sandbox(any_project, "init", "--keys", "5")
    sandbox(any_project, "add-key", "X-1", "X-2", "--systems", "b,C")
    plain = write(any_project.root / "keys.txt", "F-1\n\nF-2\n")
    sandbox(any_project, "add-key", "--from-file", str(plain), "--systems", "B")
    table = write(any_project.root / "keys.csv", "entity_type,source_key\ncustomer,C-1\nproduct,C-2\n")
    sandbox(any_project, "add-key", "--from-file", str(table), "--systems", "D")
    sandbox(any_project, "add-key", "--from-file", "-", "--systems", "E", input="S-1\nS-2\n")
    assert keys(any_project, "B")[5:] == ["X-1", "X-2", "F-1", "F-2"]
    assert keys(any_project, "C")[5:] == ["X-1", "X-2"]
    assert keys(any_project, "D")[5:] == ["C-1", "C-2"]
    assert keys(any_project, "E")[5:] == ["S-1", "S-2"]
    assert keys(any_project, "A")[5:] == []


def test_remove_key_by_key_and_by_pattern(any_project):
    sandbox(any_project, "init", "--keys", "40")
    customers = [k for k in keys(any_project, "A") if k.startswith("CUST-")]
    sandbox(any_project, "remove-key", customers[0], "--systems", "D,E", "--yes")
    assert customers[0] not in keys(any_project, "D") + keys(any_project, "E")
    assert customers[0] in keys(any_project, "C")
    sandbox(any_project, "remove-key", "--pattern", "CUST-*", "--systems", "D", "--yes")
    assert not [k for k in keys(any_project, "D") if k.startswith("CUST-")]
    assert len(keys(any_project, "E")) == 39


def test_remove_key_dry_run_changes_nothing(any_project):
    sandbox(any_project, "init", "--keys", "20")
    before = files(any_project)
    result = sandbox(any_project, "remove-key", "--pattern", "*", "--systems", "B", "--dry-run")
    assert "Would remove 20 key(s), 20 row(s): 20 from B" in result.stdout
    assert as_json(sandbox(any_project, "remove-key", "--pattern", "*", "--systems", "B", "--dry-run", "--json")) == {
        "dry_run": True,
        "rows": {"B": 20},
        "keys": 20,
        "sample": keys(any_project, "B")[:10],
    }
    assert files(any_project) == before


def test_without_a_terminal_a_removal_without_yes_is_refused(any_project):
    sandbox(any_project, "init", "--keys", "5")
    before, events = files(any_project), stored_events(any_project)
    result = sandbox(any_project, "remove-key", "--pattern", "*", "--systems", "B", expect=1)
    assert "refusing to remove 5 key(s) without --yes: there is no terminal to confirm on" in result.stderr
    assert files(any_project) == before and stored_events(any_project) == events


@pytest.mark.parametrize(("answer", "removed"), [("y\n", True), ("n\n", False)])
def test_at_a_terminal_a_removal_asks_first(any_project, monkeypatch, answer: str, removed: bool):
    monkeypatch.setattr(sandbox_common, "interactive", lambda: True)
    sandbox(any_project, "init", "--keys", "5")
    result = sandbox(any_project, "remove-key", "--pattern", "*", "--systems", "B", input=answer, expect=None)
    assert "Remove 5 key(s) (5 from B)?" in result.stderr
    assert (keys(any_project, "B") == []) is removed
    assert result.exit_code == (0 if removed else 1)


def test_modify_key_variants_and_corruption(any_project):
    sandbox(any_project, "init", "--keys", "10")
    first, second = keys(any_project, "A")[:2]
    sandbox(any_project, "modify-key", first, "--systems", "B", "--variant", "lower")
    sandbox(any_project, "modify-key", first, "--systems", "C", "--variant", "spaces")
    sandbox(any_project, "modify-key", first, "--systems", "D", "--to", "brand new")
    sandbox(any_project, "modify-key", first, "--systems", "E", "--variant", "corrupt", "--corruption", "bytes")
    sandbox(any_project, "modify-key", second, "--systems", "E", "--variant", "corrupt")
    assert keys(any_project, "B")[0] == first.lower()
    assert keys(any_project, "C")[0] == f"  {first} "
    assert keys(any_project, "D")[0] == "brand new"
    raw_e = (any_project.input / "E.csv").read_bytes().splitlines()
    assert raw_e[1].startswith(f"E,{first}\xff".encode("latin-1"))  # the real byte, not an escape
    assert raw_e[2].startswith(f"E,{second}\x1b,".encode())
    status = as_json(sandbox(any_project, "status", "--json"))
    assert status["systems"]["E"]["rejected"] == 2
    assert status["systems"]["D"]["out_of_authority"] == 1


@pytest.mark.parametrize(
    ("args", "code", "said"),
    [
        (["modify-key", "NOPE", "--systems", "B", "--variant", "lower"], 1, "not in System B: 'NOPE'"),
        (["modify-key", "K", "--systems", "B"], 2, "give exactly one of --to NEW or --variant KIND"),
        (["modify-key", "K", "--systems", "B", "--to", "x", "--variant", "lower"], 2, "exactly one"),
        (["add-key", "X", "--systems", "F"], 2, "give systems from A, B, C, D, E"),
        (["add-key", "--systems", "B"], 1, "no keys given"),
        (["remove-key", "NOPE", "--systems", "B", "--yes"], 1, "not in System B: 'NOPE'"),
        (["remove-key", "--pattern", "ZZ*", "--systems", "B", "--yes"], 1, "no key in System B matches 'ZZ*'"),
        (["undo", "5"], 1, "nothing to undo: asked for 5"),
        (["redo"], 1, "nothing to redo"),
        (["load-state", "nope"], 1, "no saved state 'nope'"),
        (["init", "--keys", "0"], 2, "0 is not in the range"),
    ],
)
def test_errors_are_one_clear_line_and_change_nothing(any_project, args, code, said):
    sandbox(any_project, "init", "--keys", "3")
    before, events = files(any_project), stored_events(any_project)
    result = sandbox(any_project, *args, expect=code)
    assert said in result.stderr
    assert "Traceback" not in result.stderr
    assert files(any_project) == before and stored_events(any_project) == events


def test_the_bulk_limit(any_project):
    any_project.write_config("sandbox: {max_bulk_keys: 5}\n")
    result = sandbox(any_project, "init", "--keys", "6", expect=1)
    assert "6 keys in one operation is over the limit of 5 per system (sandbox.max_bulk_keys)" in result.stderr
    sandbox(any_project, "init", "--keys", "5")
    sandbox(any_project, "add-key", *[f"K-{i}" for i in range(6)], "--systems", "B", expect=1)
    sandbox(any_project, "remove-key", "--pattern", "*", "--systems", "B", "--yes")  # 5 keys: allowed


def test_status_json_and_csv(any_project):
    sandbox(any_project, "init", "--keys", "10")
    sandbox(any_project, "add-key", "ONLY-B", "--systems", "B")
    sandbox(any_project, "add-key", keys(any_project, "A")[0].lower(), "--systems", "C")  # a duplicate in C
    sandbox(any_project, "remove-key", keys(any_project, "A")[1], "--systems", "D", "--yes")
    status = as_json(sandbox(any_project, "status", "--json"))
    assert status["hints"] == {"out_of_authority": 1, "propagation_gaps": 1, "duplicates": 1, "rejected_rows": 0}
    assert status["systems"]["B"] == {
        "rows": 11, "only_here": 1, "unique_keys": 11, "matched_in_A": 10, "out_of_authority": 1, "missing_vs_A": 0,
        "duplicates": 0, "rejected": 0,
    }  # fmt: skip
    assert status["common_to_all"] == 9
    target = any_project.root / "status.csv"
    result = sandbox(any_project, "status", "--csv", str(target))
    assert result.stdout == ""
    with target.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["system"] for r in rows] == [*SYSTEMS, "total"]
    assert rows[-1]["missing_vs_A"] == "1" and rows[-1]["duplicates"] == "1"
    table = sandbox(any_project, "status")
    # The sentence is wrapped to the terminal's width: read it across its lines.
    said = " ".join(table.stdout.split())
    assert "A run would report 1 out-of-authority key(s), 1 propagation gap(s), 1 duplicate(s)" in said


def test_reset_to_the_baseline_or_to_empty_keeps_states(any_project):
    sandbox(any_project, "init", "--keys", "8", "--seed", "5")
    baseline = files(any_project)
    sandbox(any_project, "save-state", "s")
    sandbox(any_project, "add-key", "X", "--systems", "A")
    sandbox(any_project, "reset", expect=1)  # no terminal, no --yes
    sandbox(any_project, "reset", "--yes")
    assert files(any_project) == baseline
    sandbox(any_project, "reset", "--empty", "--yes")
    assert all(keys(any_project, s) == [] for s in SYSTEMS)
    sandbox(any_project, "reset", "--keys", "3", "--yes")
    assert len(keys(any_project, "E")) == 3
    assert [s["name"] for s in as_json(sandbox(any_project, "states", "--json"))] == ["s"]


def test_undo_and_redo_restore_the_exact_files(any_project):
    sandbox(any_project, "init", "--keys", "12")
    snapshots = [files(any_project)]
    first = keys(any_project, "A")[0]
    for args in (
        ["add-key", "X-1", "X-2", "--systems", "B,E"],
        ["remove-key", "--pattern", "*1*", "--systems", "A,C", "--yes"],
        ["modify-key", first, "--systems", "D", "--variant", "corrupt", "--corruption", "bytes"],
        ["reset", "--empty", "--yes"],
    ):
        sandbox(any_project, *args)
        snapshots.append(files(any_project))
    for back in range(1, 5):
        sandbox(any_project, "undo")
        assert files(any_project) == snapshots[-1 - back]
    sandbox(any_project, "redo", "2")
    assert files(any_project) == snapshots[2]
    sandbox(any_project, "undo", "2")
    assert files(any_project) == snapshots[0]
    # Undo never deletes history: every step above is an event, oldest first.
    names = [topic.rsplit(".", 1)[-1] for topic in stored_events(any_project)]
    changes = ["Initialized", "KeysAdded", "KeysRemoved", "KeysModified", "Reset"]
    undone = ["OperationReverted"] * 4 + ["OperationRestored"] * 2 + ["OperationReverted"] * 2
    assert names == ["Opened", *changes, *undone]


def test_history_says_who_did_what_when(any_project, monkeypatch):
    monkeypatch.setattr("getpass.getuser", lambda: "os-user")
    sandbox(any_project, "init", "--keys", "3", "--user", "alice")
    sandbox(any_project, "add-key", "\x1b[31mRED", "--systems", "B")
    sandbox(any_project, "undo")
    history = as_json(sandbox(any_project, "history", "--json"))
    assert [(h["operation"], h["actor"], h["undone"]) for h in history] == [
        ("undo", "os-user", False),
        ("add-key", "os-user", True),
        ("init", "alice", False),
    ]
    assert history[1]["systems"] == ["B"] and history[1]["keys"] == 1
    assert all(h["at"].endswith("+00:00") for h in history)
    shown = sandbox(any_project, "history", "--last", "2")
    assert "\x1b" not in shown.stdout and "\\x1b[31m" in shown.stdout
    assert "init" not in shown.stdout


def test_keys_are_never_sent_raw_to_the_terminal(any_project):
    sandbox(any_project, "init", "--keys", "2")
    result = sandbox(any_project, "add-key", "\x1b]0;pwned\x07", "\x9bX", "--systems", "B")
    out = result.stdout + result.stderr
    assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out
    assert "\\x1b]0;pwned\\x07" in result.stderr


def test_saved_states_round_trip_and_travel_as_one_file(any_project, tmp_path):
    sandbox(any_project, "init", "--keys", "6")
    first = keys(any_project, "A")[0]
    sandbox(any_project, "modify-key", first, "--systems", "B", "--variant", "corrupt", "--corruption", "bytes")
    saved = files(any_project)
    sandbox(any_project, "save-state", "demo", "--description", "six keys, one corrupt")
    sandbox(any_project, "save-state", "demo", expect=1)
    sandbox(any_project, "save-state", "demo", "--force", "--description", "six keys, one corrupt")
    [listed] = as_json(sandbox(any_project, "states", "--json"))
    assert (listed["name"], listed["rows"], listed["description"]) == ("demo", 30, "six keys, one corrupt")
    assert listed["bytes"] > 0 and listed["created_at"]
    assert "six keys, one corrupt" in sandbox(any_project, "states").stdout

    sandbox(any_project, "reset", "--empty", "--yes")
    sandbox(any_project, "load-state", "demo")
    assert files(any_project) == saved

    exported = tmp_path / "shared.json"
    sandbox(any_project, "export-state", "demo", str(exported))
    sandbox(any_project, "delete-state", "demo", "--yes")
    assert as_json(sandbox(any_project, "states", "--json")) == []
    sandbox(any_project, "import-state", str(exported), "--name", "from-alice")
    sandbox(any_project, "reset", "--empty", "--yes")
    sandbox(any_project, "load-state", "from-alice")
    assert files(any_project) == saved
    assert (any_project.root / "sandbox_states" / "from-alice.json").is_file()


@pytest.mark.parametrize("name", ["../x", "/tmp/evil", "a/b", "x.json", ".."])
def test_state_names_with_paths_are_refused(any_project, tmp_path, name):
    sandbox(any_project, "init", "--keys", "2")
    for args in (["save-state", name], ["load-state", name], ["delete-state", name, "--yes"]):
        result = sandbox(any_project, *args, expect=1)
        assert "invalid state name" in result.stderr
    sandbox(any_project, "export-state", name, str(tmp_path / "out.json"), expect=1)
    assert not (any_project.root / "x.json").exists() and not (tmp_path.parent / "x.json").exists()


def test_a_damaged_or_foreign_state_file_is_refused(any_project, tmp_path):
    sandbox(any_project, "init", "--keys", "2")
    for content, said in [
        ('{"format": "other"}', "expected format 'keysync-sandbox-state'"),
        ('{"format": "keysync-sandbox-state", "version": 1, "name": "../up", "systems": {}}', "invalid state name"),
        (
            '{"format": "keysync-sandbox-state", "version": 1, "name": "ok", "systems": '
            '{"A": [], "B": [], "C": [], "D": [], "E": [["K", "x,y", "", ""]]}}',
            "systems.E",
        ),
        ("not json", "not UTF-8 JSON"),
    ]:
        path = write(tmp_path / "state.json", content)
        assert said in sandbox(any_project, "import-state", str(path), expect=1).stderr
    assert as_json(sandbox(any_project, "states", "--json")) == []


def test_json_sources_are_refused_with_a_way_out(any_project):
    any_project.write_config(
        "sources:\n" + "".join(f"  {s}: {{type: json, path: ./input/{s}.json}}\n" for s in SYSTEMS)
    )
    result = sandbox(any_project, "init", expect=1)
    assert "sources.A: the sandbox writes CSV" in result.stderr and "sandbox.input_dir" in result.stderr
    any_project.write_config("sandbox: {input_dir: ./sandbox_input}\n")
    sandbox(any_project, "init", "--keys", "2")
    assert (any_project.root / "sandbox_input" / "E.csv").is_file()


def test_sandbox_events_are_in_the_audit_trail(any_project):
    sandbox(any_project, "init", "--keys", "3", "--user", "bob")
    sandbox(any_project, "add-key", "X", "--systems", "B", "--user", "bob")
    events = as_json(any_project.invoke("audit", "--type", "KeysAdded", "--json"))
    [added] = events
    assert '"actor": "bob"' in added["payload"] and '"systems": ["B"]' in added["payload"]
    any_project.invoke("rebuild")  # the read models fold sandbox events into the audit trail only
    assert [r["event_type"] for r in any_project.report("audit_log.csv")] == ["Opened", "Initialized", "KeysAdded"]
    assert as_json(any_project.invoke("history", "--json")) == []  # no run was made


def test_a_summary_or_a_state_copy_is_never_written_over_an_export(any_project):
    sandbox(any_project, "init", "--keys", "5")
    sandbox(any_project, "save-state", "s1")
    before = files(any_project)

    summary = sandbox(any_project, "status", "--csv", str(any_project.input / "A.csv"), expect=1)
    copy = sandbox(any_project, "export-state", "s1", str(any_project.input / "B.csv"), expect=1)

    assert "A.csv is one of the systems' exports" in summary.stderr
    assert "B.csv is one of the systems' exports" in copy.stderr
    assert files(any_project) == before
    states = any_project.root / "sandbox_states"
    for own in (any_project.config, any_project.output / "audit_log.csv", states / "s1.json", states / "new.csv", *(
        [any_project.root / "data" / "keysync.sqlite"] if "sqlite" in any_project.store else []
    )):  # fmt: skip
        refused = sandbox(any_project, "status", "--csv", str(own), expect=1)
        assert "is one of KeySync's own files" in refused.stderr
    sandbox(any_project, "history")  # the store is still there


def test_the_status_summary_goes_to_standard_output_with_a_dash(any_project):
    sandbox(any_project, "init", "--keys", "4")
    written = any_project.root / "status.csv"
    sandbox(any_project, "status", "--csv", str(written))

    printed = sandbox(any_project, "status", "--csv", "-").stdout

    assert printed == written.read_text(encoding="utf-8")
    assert not (any_project.root / "-").exists()


def test_reset_after_undoing_an_init_goes_back_to_the_init_before(any_project):
    sandbox(any_project, "init", "--keys", "30", "--seed", "1")
    sandbox(any_project, "init", "--keys", "10", "--seed", "9")
    sandbox(any_project, "undo")

    sandbox(any_project, "reset", "--yes")

    assert len(keys(any_project, "A")) == 30
    any_project.invoke("doctor")  # the state a replay gives is the one the snapshots hold

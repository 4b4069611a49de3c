"""Registry commands, rebuild from the log, config show, and help on every command."""

from __future__ import annotations

import json

import click

from keysync.cli.main import cli
from keysync.projections.reports import MISSING_IN_A, REGISTRY, REPORTS, SUMMARY

A = ["CUST-1", "CUST-2", "CUST-3"]


def test_approve_and_deprecate_through_the_cli(any_project, write_systems):
    write_systems(A=A, B=["X-1", "X-2", "X-3"], C=A, D=A, E=A)
    any_project.invoke("run")
    any_project.invoke("registry", "approve", "X-1")
    statuses = {r["master_key"]: r["status"] for r in any_project.report(REGISTRY)}
    assert statuses == {"X-1": "Active", "X-2": "Proposed", "X-3": "Proposed"}
    assert {r["normalized_key"]: r["registry_status"] for r in any_project.report(MISSING_IN_A)}["X-1"] == "Active"

    any_project.invoke("registry", "deprecate", "X-1", "X-2", "--reason", "merged")
    error = any_project.invoke("registry", "approve", "X-1", expect=1)
    assert "cannot make X-1 Active: it is Deprecated" in error.stderr
    error = any_project.invoke("registry", "approve", "NOPE", expect=1)
    assert "unknown master key: NOPE" in error.stderr

    any_project.invoke("registry", "approve", "--all")
    listed = json.loads(any_project.invoke("registry", "list", "--json").stdout)
    assert {r["master_key"]: r["status"] for r in listed} == {"X-1": "Deprecated", "X-2": "Deprecated",
                                                              "X-3": "Active"}  # fmt: skip
    deprecated = json.loads(any_project.invoke("registry", "list", "--status", "deprecated", "--json").stdout)
    assert {r["status_reason"] for r in deprecated} == {"merged"}


def test_a_key_that_later_appears_in_a_is_deprecated_automatically(any_project, write_systems):
    write_systems(A=A, B=["X-1"], C=A, D=A, E=A)
    any_project.invoke("run")
    write_systems(A=[*A, "x_1"])
    any_project.invoke("run")
    [entry] = any_project.report(REGISTRY)
    assert (entry["status"], entry["status_reason"]) == ("Deprecated", "key now exists in System A")


def test_keys_named_otherwise_under_a_new_strategy_are_not_said_to_have_vanished(any_project, write_systems):
    write_systems(A=A, B=["X-1"], C=A, D=A, E=[*A, "X-9"])
    any_project.invoke("run")
    write_systems(E=A)  # X-9 really goes
    any_project.invoke("run")
    any_project.write_config("provisioning: {strategy: namespaced}\n")
    any_project.invoke("run")

    reasons = {r["master_key"]: (r["status"], r["status_reason"]) for r in any_project.report(REGISTRY)}
    assert reasons == {
        "X-9": ("Deprecated", "source keys vanished from every system"),
        "X-1": ("Deprecated", "not found in any system under the run's new normalization rules or strategy"),
        "A-B-X-1": ("Proposed", ""),
    }


def test_rebuild_reproduces_the_reports_from_the_log_alone(any_project, write_systems):
    write_systems(A=A, B=["X-1", "cust 2"], C=A, D=["CUST-1"], E=A)
    any_project.invoke("run")
    any_project.invoke("registry", "approve", "X-1")
    before = {name: (any_project.output / name).read_text(encoding="utf-8") for name in REPORTS}
    for path in any_project.input.iterdir():
        path.unlink()  # the rebuild must not re-read the sources
    for path in any_project.output.iterdir():
        path.unlink()
    any_project.invoke("rebuild")
    after = {name: (any_project.output / name).read_text(encoding="utf-8") for name in REPORTS}
    assert after == before


def test_a_rule_change_is_a_rebuild_not_a_reimport(any_project, write_systems):
    write_systems(A=["CUST-00001"], B=["cust-1"], C=["CUST-00001"], D=["CUST-00001"], E=["CUST-00001"])
    any_project.invoke("run")
    assert [r["normalized_key"] for r in any_project.report(MISSING_IN_A)] == ["CUST-1"]
    for path in any_project.input.iterdir():
        path.unlink()
    any_project.write_config("normalize: {pad_numbers: 5}\n")
    any_project.invoke("rebuild")
    assert any_project.report(MISSING_IN_A) == []
    assert {r["system"]: r["match_rate"] for r in any_project.report(SUMMARY)}["B"] == "1.0000"


def test_config_show_prints_the_effective_config(any_project):
    any_project.write_config("provisioning: {strategy: namespaced}\n")
    shown = json.loads(any_project.invoke("config", "show", "--json").stdout)
    assert shown["provisioning"]["strategy"] == "namespaced"
    assert shown["output_dir"] == str(any_project.output)
    assert "strategy: namespaced" in any_project.invoke("config", "show").stdout


def test_a_bad_config_is_one_clear_line_and_exit_1(any_project):
    any_project.write_config("provisioning: {strategy: mirr}\n")
    result = any_project.invoke("run", expect=1)
    assert "provisioning.strategy: 'mirr' is not one of mirror, namespaced" in result.stderr
    assert "Traceback" not in result.output


def test_every_command_has_help_with_an_example():
    def walk(command: click.Command, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], click.Command]]:
        found = [(path, command)]
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                found += walk(sub, (*path, name))
        return found

    for path, command in walk(cli, ()):
        assert command.help, f"{' '.join(path)} has no help"
        if path:  # every command and group but keysync itself
            assert "Example:" in command.help, f"{' '.join(path)} has no example"
        if not isinstance(command, click.Group):
            assert any("--config" in p.opts for p in command.params), f"{' '.join(path)} lacks -c/--config"

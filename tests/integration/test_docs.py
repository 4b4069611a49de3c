"""The documentation keeps up with the code: the command reference is the commands' own --help, and every
relative link in README.md and docs/ leads somewhere."""

from __future__ import annotations

import difflib
import json
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from keysync.cli.main import cli
from keysync.cli.reference import MARKER, REGENERATE, StaleReference, regenerated, render

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "commands.md"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_the_command_reference_is_the_commands_own_help():
    current = REFERENCE.read_text(encoding="utf-8")
    fresh = regenerated(current)
    if fresh != current:
        diff = "".join(
            list(difflib.unified_diff(current.splitlines(True), fresh.splitlines(True), "docs/commands.md", "--help"))[
                :40
            ]
        )
        pytest.fail(f"docs/commands.md is stale: run `.venv/bin/{REGENERATE}` in the repository's root\n{diff}")


def test_a_new_option_makes_the_reference_stale():
    current = REFERENCE.read_text(encoding="utf-8")
    group = click.Group("keysync", commands=dict(cli.commands), help=cli.help)
    extra = click.Command("tally", help="Count the keys.", params=[click.Option(["--per-system"], is_flag=True)])
    group.add_command(extra)
    fresh = regenerated(current, group)
    assert fresh != current
    assert "## keysync tally\n" in fresh and "--per-system" in fresh
    assert fresh.split(MARKER)[0] == current.split(MARKER)[0]  # the hand-written introduction is kept


def test_the_reference_does_not_depend_on_the_terminal(monkeypatch: pytest.MonkeyPatch):
    wide = render()
    monkeypatch.setenv("COLUMNS", "40")
    assert render() == wide


def test_the_reference_covers_every_command():
    text = REFERENCE.read_text(encoding="utf-8")
    for name, command in cli.commands.items():
        assert f"\n## keysync {name}\n" in text
        for sub in getattr(command, "commands", {}):
            assert f"\n### keysync {name} {sub}\n" in text


def test_a_file_without_the_marker_is_refused():
    with pytest.raises(StaleReference, match="missing"):
        regenerated("# Commands\n\nno marker here\n")


def test_the_check_runs_as_the_failure_message_says(tmp_path: Path):
    stale = tmp_path / "commands.md"
    stale.write_text(REFERENCE.read_text(encoding="utf-8") + "edited by hand\n", encoding="utf-8")
    check = [sys.executable, "-m", "keysync.cli.reference", "--check", str(stale)]
    result = subprocess.run(check, capture_output=True, text=True)
    assert result.returncode == 1 and "--write" in result.stderr
    write = subprocess.run([*check[:3], "--write", str(stale)], capture_output=True, text=True)
    assert write.returncode == 0, write.stderr
    assert stale.read_text(encoding="utf-8") == REFERENCE.read_text(encoding="utf-8")


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    headings = re.findall(r"^#+ (.+)$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_leads_to_a_file_and_heading(page: Path):
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # http:, mailto: ...
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target} leads nowhere"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked), f"{page.name}: {target}: no such heading in {linked.name}"


def _documented_columns() -> dict[str, list[str]]:
    """docs/reports.md's table: report -> its columns, the notes in parentheses left out."""
    documented = {}
    for name, cells in re.findall(r"^\| `([\w.]+\.csv)` \| (.+) \|$", (ROOT / "docs" / "reports.md").read_text(), re.M):
        plain = cells
        while re.search(r"\([^()]*\)", plain):  # innermost first: a note may quote "(x2)"
            plain = re.sub(r"\([^()]*\)", "", plain)
        documented[name] = [column.strip() for column in plain.partition(": ")[2].split(",")]
    return documented


def test_the_reports_page_lists_every_column_of_every_report(project):
    project.invoke("reports")  # on an empty store: every report with its header alone
    written = {p.name: p.read_text(encoding="utf-8").splitlines()[0].split(",") for p in project.output.glob("*.csv")}
    assert written, "keysync reports wrote no report"
    assert _documented_columns() == written, (
        "docs/reports.md differs from the reports' headers: update its table, and list the change of columns "
        "under 'Report columns' in CHANGELOG.md"
    )


def _settings(tree: dict, prefix: str = "") -> list[str]:
    return [
        name
        for key, value in tree.items()
        for name in (_settings(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"])
    ]


def test_the_configuration_page_names_every_setting(project):
    config = json.loads(project.invoke("config", "show", "--json").stdout)
    config.pop("sources")  # A..E, each {type, path}: one row of the table
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [setting for setting in _settings(config) if f"`{setting.partition('.')[2] or setting}" not in text]
    assert not missing, (
        f"docs/configuration.md does not name {missing}: add them, and list the change under 'Configuration' in "
        "CHANGELOG.md"
    )

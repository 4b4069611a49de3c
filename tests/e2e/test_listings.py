"""Listings that scale on a terminal: one line per row within the terminal's width, the first --limit rows, a
pager only on a terminal; --json and --csv stay complete. And `key` / `audit --key` speak of the key asked about."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_sandbox_support import sandbox
from tests.e2e.test_terminal_safety import RAW_RULES

A = [f"CUST-{i}" for i in range(1, 4)]
LONG = "LONG-" + "X" * 120  # wider than any terminal: cut with an ellipsis, whole with --wide
EXTRA = [f"EXTRA-{i:03}" for i in range(60)]  # 60 keys only in B: 60 master keys, more than one page of 50
RULE = "─"


@pytest.fixture
def listed(any_project, write_systems, monkeypatch):
    """A store with two runs: 61 Proposed master keys seen in B (one of them very long), one seen in B and D."""
    monkeypatch.setenv("COLUMNS", "80")
    write_systems(A=A, B=[*A, *EXTRA, LONG, "BOTH-1"], C=A, D=[*A, "BOTH-1"], E=A)
    first = json.loads(any_project.invoke("run", "--json").stdout)["run_id"]
    any_project.write_system("E", A[:2])
    second = json.loads(any_project.invoke("run", "--json").stdout)["run_id"]
    any_project.runs = [first, second]
    return any_project


def rows_of(stdout: str) -> list[str]:
    """The table's rows: the lines after the header's rule."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(RULE)) + 1
    return lines[start:]


def assert_fits(stdout: str, width: int = 80) -> None:
    for line in stdout.splitlines():
        assert len(line) <= width, line


def test_registry_list_prints_one_line_per_master_key_the_first_50_and_says_how_many_it_left_out(listed):
    result = listed.invoke("registry", "list")

    assert_fits(result.stdout)
    rows = rows_of(result.stdout)
    assert len(rows) == 50 and all(row.startswith(("BOTH-", "EXTRA-", "LONG-")) for row in rows)
    assert "Master keys (62)" in result.stdout
    assert "12 more not shown (use --limit 0 for all, or --json)" in result.stderr


def test_a_long_value_is_cut_with_an_ellipsis_and_wide_shows_it_whole(listed):
    cut = listed.invoke("registry", "list", "--search", "long")
    whole = listed.invoke("registry", "list", "--search", "long", "--wide")

    [row] = rows_of(cut.stdout)
    assert len(row) <= 80 and "…" in row and LONG not in cut.stdout
    [row] = rows_of(whole.stdout)
    assert LONG in row and "…" not in row and "created_run_id" in whole.stdout  # every column, every value


def test_a_master_key_is_never_cut_it_is_copied_into_the_next_command(listed, monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    rows = rows_of(listed.invoke("registry", "list", "--search", "extra").stdout)
    assert [row.split()[0] for row in rows] == EXTRA[:50]


def test_limit_zero_shows_every_row_and_json_and_csv_are_always_complete(listed):
    everything = listed.invoke("registry", "list", "--limit", "0")
    three = listed.invoke("registry", "list", "--limit", "3")
    as_json = json.loads(listed.invoke("registry", "list", "--json").stdout)
    as_csv = list(csv.DictReader(io.StringIO(listed.invoke("registry", "list", "--csv").stdout)))

    assert len(rows_of(everything.stdout)) == 62 and "not shown" not in everything.stderr
    assert len(rows_of(three.stdout)) == 3 and "59 more not shown" in three.stderr
    assert len(as_json) == len(as_csv) == 62
    assert {r["master_key"] for r in as_csv} == {r["master_key"] for r in as_json} >= {LONG, "BOTH-1"}


def test_registry_list_filters_by_system_and_by_search_text(listed):
    in_d = json.loads(listed.invoke("registry", "list", "--system", "d", "--json").stdout)
    found = json.loads(listed.invoke("registry", "list", "--search", "extra-05", "--json").stdout)
    both = rows_of(listed.invoke("registry", "list", "--system", "D", "--search", "oth").stdout)
    none = json.loads(listed.invoke("registry", "list", "--system", "C", "--json").stdout)

    assert [r["master_key"] for r in in_d] == ["BOTH-1"]
    assert [r["master_key"] for r in found] == [f"EXTRA-05{i}" for i in range(10)]
    assert len(both) == 1 and both[0].startswith("BOTH-1 ")
    assert none == []
    assert listed.invoke("registry", "list", "--system", "Z", expect=2).exit_code == 2


def test_the_csv_of_the_registry_quotes_a_formula_as_the_reports_do(any_project, write_systems):
    any_project.write_config(RAW_RULES)  # normalization off: the key stays a formula
    write_systems(A=A, B=[*A, "=1+2"], C=A, D=A, E=A)
    any_project.invoke("run")
    rows = list(csv.DictReader(io.StringIO(any_project.invoke("registry", "list", "--csv").stdout)))
    assert [r["master_key"] for r in rows] == ["'=1+2"]


@pytest.mark.parametrize(
    "args",
    [
        ["history"],
        ["audit"],
        ["audit", "--key", "BOTH-1"],
        ["trends"],
        ["key", "BOTH-1"],
    ],
)
def test_every_listing_fits_80_columns_one_line_per_row(listed, args):
    result = listed.invoke(*args)
    assert_fits(result.stdout)
    wide = listed.invoke(*args, "--wide", "--limit", "0")
    assert len(rows_of(wide.stdout)) >= len(rows_of(result.stdout))


def test_audit_and_trends_show_the_first_limit_rows_and_say_how_many_are_left_out(listed):
    events = json.loads(listed.invoke("audit", "--json").stdout)
    shown = listed.invoke("audit", "--limit", "10")
    assert len(events) > 10
    assert len(rows_of(shown.stdout)) == 10
    assert f"{len(events) - 10} more not shown" in shown.stderr
    # Each event is one line, starting with its id; a payload is cut, never folded onto a second line.
    assert [row.split()[0] for row in rows_of(shown.stdout)] == [str(e["event_id"]) for e in events[:10]]
    trends = listed.invoke("trends", "--limit", "1")
    assert [row.split()[0] for row in rows_of(trends.stdout)] == [listed.runs[0], "cell:"]  # then the caption
    assert "1 more not shown" in trends.stderr


def test_compare_and_sandbox_status_fit_80_columns(listed):
    first, second = listed.runs
    compared = listed.invoke("compare", first, second)
    assert_fits(compared.stdout)
    assert [row.split()[:2] for row in rows_of(compared.stdout)] == [["E", "missing_from_system"]]
    status = sandbox(listed, "status")
    assert_fits(status.stdout)
    assert [row.split()[0] for row in rows_of(status.stdout)][:5] == list("ABCDE")


def test_key_shows_its_status_and_reason_first_then_what_each_run_did_to_it(listed):
    listed.invoke("registry", "deprecate", "BOTH-1", "--reason", "merged into CUST-1")
    first, second = listed.runs

    lines = listed.invoke("key", "both_1").stdout.splitlines()

    assert lines[0] == "BOTH-1: Deprecated: merged into CUST-1"
    assert lines[1] == "now in B, D"
    timeline = [" ".join(row.split()[2:]) for row in rows_of("\n".join(lines))]
    assert timeline[0] == f"{first} seen in B, D"  # the run's batches, as what they say of this key
    assert f"{first} proposed as master key BOTH-1 (from B|D)" in timeline
    assert any("deprecated by " in line and line.endswith(": merged into CUST-1") for line in timeline)
    assert f"{second} seen in B, D" in timeline
    assert not any("count" in line for line in timeline)


def test_audit_key_finds_the_sandbox_edits_of_the_key_with_who_and_when(project, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    sandbox(project, "init", "--keys", "3")
    monkeypatch.setenv("LOGNAME", "alice")
    sandbox(project, "add-key", "new 7", "--systems", "B,C")
    monkeypatch.setenv("LOGNAME", "bob")
    sandbox(project, "remove-key", "new 7", "--systems", "C", "--yes")

    found = json.loads(project.invoke("audit", "--key", "new-7", "--json").stdout)
    shown = project.invoke("audit", "--key", "new-7", "--wide")

    assert [(e["event_type"], json.loads(e["payload"])["actor"]) for e in found] == [
        ("KeysAdded", "alice"),
        ("KeysRemoved", "bob"),
    ]
    assert [e["for_key"] for e in found] == [
        "sandbox add-key by alice: added to B, C",
        "sandbox remove-key by bob: removed from C",
    ]
    assert all(e["created_at"] for e in found)
    rows = rows_of(shown.stdout)
    assert len(rows) == 2 and "alice" in rows[0] and "KeysAdded" in rows[0] and "bob" in rows[1]


# ---- the pager: only when stdout is a terminal, never with --no-pager --------------------------------------


def _keysync(project, args: list[str], *, terminal: bool, pager: Path) -> str:
    """Run the real keysync with stdout (and stdin) a terminal or a pipe; return what reached stdout."""
    env = {**os.environ, "PAGER": str(pager), "COLUMNS": "80", "LINES": "10"}
    command = [str(Path(sys.executable).with_name("keysync")), *args, "-c", str(project.config)]
    if not terminal:
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL)
        return done.stdout
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(command, env=env, stdin=follower, stdout=follower, stderr=subprocess.DEVNULL)
        os.close(follower)
        chunks = []
        while True:  # read as it comes: a full terminal buffer would block the command
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the command has ended and closed its side of the terminal: all read
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(timeout=60) == 0
        return b"".join(chunks).decode()
    finally:
        os.close(leader)


@pytest.fixture
def pager(tmp_path: Path) -> Path:
    """A pager that keeps what it was given in pager.out."""
    script = tmp_path / "pager.sh"
    script.write_text(f'#!/bin/sh\ncat > "{tmp_path / "pager.out"}"\n', encoding="utf-8")
    script.chmod(0o755)
    return script


def test_a_long_listing_on_a_terminal_goes_through_the_pager(listed, pager):
    _keysync(listed, ["registry", "list"], terminal=True, pager=pager)
    paged = (pager.parent / "pager.out").read_text(encoding="utf-8")
    assert "Master keys (62)" in paged and len(rows_of(paged)) == 50


@pytest.mark.parametrize(("terminal", "flags"), [(True, ["--no-pager"]), (False, [])])
def test_no_pager_and_a_pipe_never_page(listed, pager, terminal, flags):
    printed = _keysync(listed, ["registry", "list", *flags], terminal=terminal, pager=pager)
    assert not (pager.parent / "pager.out").exists()
    assert "Master keys (62)" in printed

"""keysync starts at once: importing the command line, and showing any command's help, loads none of the heavy
libraries; a command imports them when it runs, and only the ones it needs (issue 14: a run where nothing changed
is held to a small multiple of `keysync --version`)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from tests.conftest import Project

HEAVY = ("pandas", "pyarrow", "matplotlib", "psycopg", "numpy", "duckdb", "polars")
KEYSYNC = Path(sys.executable).with_name("keysync")  # the installed command, as a user runs it


def _heavy_loaded(code: str) -> list[str]:
    """The heavy libraries a fresh interpreter has loaded once ``code`` ran (a command's exit included)."""
    return _loaded_and_said(code)[0]


def _loaded_and_said(code: str) -> tuple[list[str], str]:
    """The heavy libraries loaded once ``code`` ran, and what it wrote on stderr."""
    probe = (
        f"import atexit, sys\n"
        f"atexit.register(lambda: print(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
        f"{code}\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.stdout.strip(), result.stderr
    return ast.literal_eval(result.stdout.strip().splitlines()[-1]), result.stderr


def _command(*args: str) -> str:
    return f"sys.argv = ['keysync', *{list(args)!r}]\nfrom keysync.cli.main import main\nmain()"


def test_importing_the_command_line_loads_no_heavy_library():
    assert _heavy_loaded("import keysync.cli.main") == []


def test_every_commands_help_loads_no_heavy_library():
    # The command reference renders every command's --help, as `keysync COMMAND --help` does, in one process.
    assert _heavy_loaded("from keysync.cli.reference import render\nrender()") == []


def test_version_prints_the_installed_version():
    result = subprocess.run([str(KEYSYNC), "--version"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"keysync, version {version('keysync')}\n"


def test_a_command_loads_only_what_it_uses(project: Project):
    project.write_system("A", ["CUST-1", "CUST-2"])
    for system in "BCDE":
        project.write_system(system, ["CUST-1"])
    project.invoke("run")
    config = str(project.config)
    # The registry is read from the store's read models: no data frame, no chart, no PostgreSQL driver.
    assert not {"pandas", "matplotlib", "psycopg"} & set(_heavy_loaded(_command("registry", "list", "-c", config)))
    # matplotlib is for the chart alone.
    assert "matplotlib" not in _heavy_loaded(_command("trends", "-c", config))
    chart = project.root / "trends.png"
    assert "matplotlib" in _heavy_loaded(_command("trends", "--plot", str(chart), "-c", config))
    assert chart.exists()


def test_reading_the_config_loads_no_heavy_library(project: Project):
    # The rules a config names are plain values: checking them needs no array library.
    assert _heavy_loaded(_command("config", "show", "-c", str(project.config))) == []


def test_a_run_that_finds_nothing_changed_loads_no_heavy_library(project: Project):
    project.write_system("A", ["CUST-1", "CUST-2", "=CUST-3"])
    for system in "BCDE":
        project.write_system(system, ["CUST-1", "X-1", "X-1"])
    project.invoke("run")  # a full run first, which reads every export
    config = str(project.config)
    # Twice: the first builds on the full run, the second on a run that itself carried the reconciliation over.
    for _ in range(2):
        loaded, said = _loaded_and_said(_command("run", "-m", "incremental", "-c", config))
        assert "carries over" in said
        assert loaded == []
    # And after a run that read a changed export and reconciled afresh.
    project.write_system("C", ["CUST-2", "Y-1"])
    assert "C read whole" in project.invoke("run", "-m", "incremental").stderr
    loaded, said = _loaded_and_said(_command("run", "-m", "incremental", "-c", config))
    assert "carries over" in said
    assert loaded == []
    # It wrote the run-level reports all the same: the summary names the new run.
    latest = json.loads(project.invoke("history", "--last", "1", "--json").stdout)[0]
    assert {row["run_id"] for row in project.report("reconciliation_summary.csv")} == {latest["run_id"]}

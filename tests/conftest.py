"""Shared fixtures: a throwaway KeySync project (config, input, output, store) in a temporary folder."""

from __future__ import annotations

import csv
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result
from hypothesis import settings

from keysync.cli.main import cli

# No time limit per example: on a busy shared machine one slow example is noise, not a failure.
settings.register_profile("keysync", deadline=None)
settings.load_profile("keysync")

HEADER = ["source_system", "source_key", "entity_type", "location_ref", "last_seen_at"]


class Project:
    """A folder with keysync-config.yaml, input/, output/ and data/, and a way to run keysync in it."""

    def __init__(self, root: Path, store: str = "{backend: sqlite, path: ./data/keysync.sqlite}"):
        self.root = root
        self.config = root / "keysync-config.yaml"
        self.input = root / "input"
        self.output = root / "output"
        self.store = store
        self.input.mkdir()
        self.write_config()

    def write_config(self, extra: str = "") -> None:
        self.config.write_text(
            f"output_dir: ./output\nstore: {self.store}\nlogs_dir: ./logs\ninput_dir: ./input\n" + extra,
            encoding="utf-8",
        )

    def write_system(self, system: str, keys: Sequence[str], *, entity: str = "customer") -> Path:
        path = self.input / f"{system}.csv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(HEADER)
            for key in keys:
                writer.writerow([system, key, entity, "", "2026-01-02T03:04:05+00:00"])
        return path

    def invoke(self, *args: str, expect: int | None = 0, input: str | None = None) -> Result:
        result = CliRunner().invoke(cli, [*args, "-c", str(self.config)], input=input, catch_exceptions=False)
        if expect is not None:
            assert result.exit_code == expect, (result.exit_code, result.stdout, result.stderr)
        return result

    def report(self, name: str) -> list[dict[str, str]]:
        with (self.output / name).open(encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle))


# PostgreSQL runs when a server is given (./test.sh sets this when one answers on 127.0.0.1:5432).
POSTGRES_DSN = os.environ.get("KEYSYNC_TEST_POSTGRES_DSN", "")
BACKENDS = ["sqlite", *(["postgres"] if POSTGRES_DSN else [])]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` (the long stress and crash-loop runs) are skipped unless asked for: ``-m slow`` runs
    only them, ``KEYSYNC_SLOW_TESTS=1`` runs them with the rest."""
    if os.environ.get("KEYSYNC_SLOW_TESTS") or "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow, or KEYSYNC_SLOW_TESTS=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A project on SQLite (for tests that look inside the SQLite file or its lock)."""
    return Project(tmp_path)


@pytest.fixture(params=BACKENDS)
def any_project(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Project]:
    """A project on each backend: SQLite, and PostgreSQL in a schema of its own, dropped afterwards."""
    if request.param == "sqlite":
        yield Project(tmp_path)
        return
    schema = f"keysync_test_{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in POSTGRES_DSN else "?"
    project = Project(tmp_path, store=f'{{backend: postgres, dsn: "{POSTGRES_DSN}{separator}schema={schema}"}}')
    project.invoke("store", "init")
    try:
        yield project
    finally:
        with psycopg.connect(POSTGRES_DSN.split("?")[0], autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def write_systems(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Write A-E exports into whichever project the test uses."""
    target = request.getfixturevalue("any_project" if "any_project" in request.fixturenames else "project")

    def write(**systems: Sequence[str]) -> None:
        for system, keys in systems.items():
            target.write_system(system, keys)

    return write

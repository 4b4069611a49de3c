"""Shared fixtures: a throwaway KeySync project (config, input, output, store) in a temporary folder."""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from keysync.cli.main import cli

HEADER = ["source_system", "source_key", "entity_type", "location_ref", "last_seen_at"]


class Project:
    """A folder with keysync-config.yaml, input/, output/ and data/, and a way to run keysync in it."""

    def __init__(self, root: Path):
        self.root = root
        self.config = root / "keysync-config.yaml"
        self.input = root / "input"
        self.output = root / "output"
        self.input.mkdir()
        self.write_config()

    def write_config(self, extra: str = "") -> None:
        self.config.write_text(
            "output_dir: ./output\n"
            "store: {backend: sqlite, path: ./data/keysync.sqlite}\n"
            "logs_dir: ./logs\n"
            "input_dir: ./input\n" + extra,
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


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


@pytest.fixture
def write_systems(project: Project) -> Callable[..., None]:
    def write(**systems: Sequence[str]) -> None:
        for system, keys in systems.items():
            project.write_system(system, keys)

    return write

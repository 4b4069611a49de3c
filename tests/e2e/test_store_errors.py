"""An event store that cannot be reached or opened is one clear line naming it and saying why, never a traceback."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Project
from tests.e2e.test_config_errors import assert_one_clear_line, invoke

# Nothing listens on port 1: the connection is refused at once.
NOWHERE = "postgresql://nobody@127.0.0.1:1/keysync"


def test_store_init_on_an_unreachable_server_names_it(tmp_path: Path) -> None:
    project = Project(tmp_path, store=f'{{backend: postgres, dsn: "{NOWHERE}"}}')

    result = invoke(project.config, "store", "init")

    assert_one_clear_line(result, "cannot connect to PostgreSQL nobody@127.0.0.1:1/keysync", "refused")


def test_migrating_to_an_unreachable_server_names_it(project: Project) -> None:
    project.write_system("A", ["K-1"])

    result = invoke(project.config, "store", "migrate", "--to", NOWHERE)

    assert_one_clear_line(result, "cannot connect to PostgreSQL nobody@127.0.0.1:1/keysync")


def test_a_store_path_that_is_a_folder_names_the_store(tmp_path: Path) -> None:
    project = Project(tmp_path, store="{backend: sqlite, path: ./input}")

    result = invoke(project.config, "history")

    assert_one_clear_line(result, f"the event store ({tmp_path / 'input'}) cannot be used", "unable to open")

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


def test_a_store_folder_that_is_a_file_names_the_store_and_the_file(tmp_path: Path) -> None:
    project = Project(tmp_path, store="{backend: sqlite, path: ./afile/keysync.sqlite}")
    (tmp_path / "afile").write_text("", encoding="utf-8")

    result = invoke(project.config, "history")

    assert_one_clear_line(result, f"the event store ({tmp_path / 'afile' / 'keysync.sqlite'}) cannot be used",
                          f"cannot create its folder {tmp_path / 'afile'}")  # fmt: skip


def test_an_output_folder_that_is_a_file_says_the_run_is_stored(project: Project) -> None:
    project.write_system("A", ["K-1"])
    (project.root / "afile").write_text("", encoding="utf-8")
    project.write_config("")
    project.config.write_text(project.config.read_text(encoding="utf-8").replace("./output", "./afile"))

    result = invoke(project.config, "run")

    assert_one_clear_line(result, "afile", "what was stored stays stored", "`keysync reports`")
    assert invoke(project.config, "history", "--json").stdout.count('"completed"') == 1


def test_a_logs_folder_that_cannot_be_written_is_said_once(project: Project) -> None:
    project.write_system("A", ["K-1"])
    (project.root / "afile").write_text("", encoding="utf-8")
    project.config.write_text(project.config.read_text(encoding="utf-8").replace("./logs", "./afile/logs"))

    result = invoke(project.config, "run")

    assert result.exit_code == 0, result.stderr
    assert result.stderr.count(f"cannot write logs to {project.root / 'afile' / 'logs'}") == 1


def test_a_schema_name_that_is_not_a_plain_identifier_is_refused(tmp_path: Path) -> None:
    project = Project(tmp_path, store='{backend: postgres, dsn: "postgresql://nobody@127.0.0.1:1/k?schema=a-b"}')

    result = invoke(project.config, "store", "init")

    assert_one_clear_line(result, "schema 'a-b' is not a plain identifier")

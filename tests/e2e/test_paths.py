"""Paths cannot escape their folders: sandbox state names, ``--from-file``, the reports' folder and names.

What each must hold:
- a state name names a file in ``sandbox.states_dir`` and nothing else: the domain's ``check_state_name`` allows
  letters, digits, ``-`` and ``_`` only (tests/unit/test_sandbox_domain.py and
  tests/e2e/test_sandbox_commands.py::test_state_names_with_paths_are_refused test the names; here, the links);
- ``--from-file FILE`` (like ``import-state FILE`` and ``export-state NAME FILE``) is a path the user chose, so any
  path is fair, ``../`` and symlinks included; what must hold is that it is only read, never written nor created;
- ``output_dir`` is a folder of its own, apart from the input files (config validation), and every report is a
  plain file name inside it; a symlink in its place is replaced, never written through.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from keysync.projections.reports import REGISTRY, REPORTS
from tests.e2e.test_sandbox_support import as_json, keys, sandbox

A = ["CUST-1", "CUST-2"]


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder`` (links not followed): its bytes and its modification time."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            found[str(path.relative_to(folder))] = (path.read_bytes(), path.stat().st_mtime_ns)
    return found


# ---- state names and the states folder


@pytest.fixture
def states(project):
    sandbox(project, "init", "--keys", "3")
    folder = project.root / "sandbox_states"
    folder.mkdir()
    outside = project.root.parent / f"{project.root.name}-outside"
    outside.mkdir()
    (outside / "secret.json").write_text('{"keep": true}\n', encoding="utf-8")
    return project, folder, outside


def test_saving_over_a_symlinked_state_replaces_the_link_not_its_target(states):
    project, folder, outside = states
    (folder / "demo.json").symlink_to(outside / "secret.json")
    before = snapshot(outside)
    sandbox(project, "save-state", "demo", "--force")
    assert snapshot(outside) == before
    assert not (folder / "demo.json").is_symlink() and (folder / "demo.json").is_file()


def test_deleting_a_symlinked_state_removes_the_link_only(states):
    project, folder, outside = states
    sandbox(project, "save-state", "demo")
    os.replace(folder / "demo.json", outside / "demo.json")
    (folder / "demo.json").symlink_to(outside / "demo.json")
    before = snapshot(outside)
    sandbox(project, "delete-state", "demo", "--yes")
    assert snapshot(outside) == before
    assert not (folder / "demo.json").exists() and not (folder / "demo.json").is_symlink()


@pytest.mark.parametrize("name", ["../escaped", "/tmp/escaped", "a/b", ".hidden", "x.json"])
def test_an_imported_state_cannot_be_named_as_a_path(states, tmp_path, name):
    project, folder, _outside = states
    sandbox(project, "save-state", "demo")
    exported = tmp_path / "shared.json"
    sandbox(project, "export-state", "demo", str(exported))
    result = sandbox(project, "import-state", str(exported), "--name", name, expect=1)
    assert "invalid state name" in result.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["demo.json"]
    assert not (project.root / "escaped.json").exists() and not Path("/tmp/escaped.json").exists()


# ---- --from-file: read, never written


@pytest.fixture
def keys_file(project):
    sandbox(project, "init", "--keys", "3")
    outside = project.root.parent / f"{project.root.name}-keys"
    outside.mkdir()
    path = outside / "keys.txt"
    path.write_text("FROM-1\nFROM-2\n", encoding="utf-8")
    return project, path


def test_from_file_with_a_relative_path_out_of_the_project_is_read_and_left_alone(keys_file, monkeypatch):
    project, path = keys_file
    before = snapshot(path.parent)
    monkeypatch.chdir(project.input)
    relative = os.path.relpath(path, project.input)
    assert relative.startswith("..")
    sandbox(project, "add-key", "--systems", "B", "--from-file", relative)
    assert {"FROM-1", "FROM-2"} <= set(keys(project, "B"))
    assert snapshot(path.parent) == before  # not written, and nothing created beside it


def test_from_file_through_a_symlink_is_read_and_left_alone(keys_file):
    project, path = keys_file
    link = project.root / "link.txt"
    link.symlink_to(path)
    before = snapshot(path.parent)
    sandbox(project, "add-key", "--systems", "C", "--from-file", str(link))
    assert {"FROM-1", "FROM-2"} <= set(keys(project, "C"))
    assert snapshot(path.parent) == before and link.is_symlink()


def test_from_file_that_is_not_a_readable_file_is_a_clear_error_and_creates_nothing(keys_file):
    project, path = keys_file
    missing = path.parent / "missing.txt"
    for target in (missing, path.parent):
        result = sandbox(project, "add-key", "--systems", "B", "--from-file", str(target), expect=1)
        assert result.stderr.startswith(f"Error: cannot read {target}: ")
        assert "Traceback" not in result.output
    assert not missing.exists()


# ---- output_dir and the reports


def test_an_output_dir_among_the_inputs_is_refused(project, write_systems):
    write_systems(A=A, B=A, C=A, D=A, E=A)
    before = snapshot(project.input)
    for output_dir, where in (("./input", "the folder"), ("./input/reports", "inside the folder")):
        project.write_config()
        text = project.config.read_text(encoding="utf-8")
        project.config.write_text(text.replace("output_dir: ./output", f"output_dir: {output_dir}"), encoding="utf-8")
        result = project.invoke("run", expect=1)
        assert f"output_dir: '{os.path.normpath(project.root / output_dir)}' is {where} of sources.A" in result.stderr
        assert "reports need a folder of their own" in result.stderr and "Traceback" not in result.output
    assert snapshot(project.input) == before


def test_an_output_dir_option_among_the_inputs_is_refused(project, write_systems):
    write_systems(A=A, B=A, C=A, D=A, E=A)
    before = snapshot(project.input)
    for command in (["run", "-o", str(project.input)], ["doctor", "-o", str(project.input / "x")]):
        result = project.invoke(*command, expect=1)
        assert "command line: output_dir: " in result.stderr and "of sources.A" in result.stderr
    assert snapshot(project.input) == before


def test_report_names_are_plain_file_names():
    for name in REPORTS:
        assert Path(name).name == name and Path(name).suffix == ".csv"
        assert not name.startswith(".") and os.sep not in name and "/" not in name and "\\" not in name


def test_a_run_writes_only_inside_output_dir(project, write_systems):
    write_systems(A=A, B=[*A, "X-1"], C=A, D=A, E=A)
    project.invoke("run")  # creates data/ and logs/ once

    def written() -> set:
        # SQLite's -wal and -shm files come and go with the store's connections (closed when collected): not ours.
        # The exports kept for the next run are in a folder per system named by the run that recorded it (B-<run>).
        exports, found = project.root / "data" / "exports", set()
        for path in project.root.rglob("*"):
            if project.output in path.parents or path.name.endswith(("-wal", "-shm")):
                continue
            found.add(exports / path.relative_to(exports).parts[0][:1] if exports in path.parents else path)
        return found

    before = written()
    project.write_system("C", [*A, "X-2"])
    project.invoke("run")
    assert written() == before
    assert sorted(p.name for p in project.output.iterdir() if not p.name.startswith(".")) == sorted(REPORTS)


def test_a_symlink_in_place_of_a_report_is_replaced_not_written_through(project, write_systems):
    write_systems(A=A, B=[*A, "X-1"], C=A, D=A, E=A)
    project.output.mkdir()
    (project.output / REGISTRY).symlink_to(project.input / "A.csv")  # as if to overwrite System A's export
    before = snapshot(project.input)
    project.invoke("run")
    assert snapshot(project.input) == before
    assert not (project.output / REGISTRY).is_symlink()
    assert [r["master_key"] for r in project.report(REGISTRY)] == ["X-1"]


def test_sandbox_state_listing_ignores_what_is_not_a_state(states):
    project, folder, outside = states
    (folder / "linked-dir.json").symlink_to(outside, target_is_directory=True)
    (folder / "notes.txt").write_text("not a state", encoding="utf-8")
    assert as_json(sandbox(project, "states", "--json")) == []

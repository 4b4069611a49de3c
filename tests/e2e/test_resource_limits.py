"""Resource limits: processing.max_file_mb (an export too large to read makes its system unavailable),
processing.max_key_length (a longer key is a rejected row) and sandbox.max_bulk_keys (a bigger sandbox operation
is refused and changes nothing)."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from keysync.infrastructure.sources import SourceUnavailable, read_source
from tests.conftest import Project
from tests.e2e.test_sandbox_support import files, keys, sandbox, stored_events, write

MB = 1 << 20
HEADER = b"source_system,source_key,entity_type,location_ref,last_seen_at\n"


def export_of_size(path: Path, size: int, bom: bool = False) -> Path:
    """A valid export of exactly ``size`` bytes (the last key is padded to fit)."""
    head = (b"\xef\xbb\xbf" if bom else b"") + HEADER
    row = len(b"B,K-0000000,,,\n")
    rows = b"".join(b"B,K-%07d,,,\n" % i for i in range((size - len(head) - 20) // row))
    pad = size - len(head) - len(rows) - len(b"B,,,,\n")
    path.write_bytes(head + rows + b"B," + b"P" * pad + b",,,\n")
    assert path.stat().st_size == size
    return path


# ------------------------------------------------------------------------------------------------------------
# processing.max_file_mb, in the reader


def test_a_file_at_the_limit_is_read_and_one_byte_more_is_not(tmp_path: Path) -> None:
    at_limit = export_of_size(tmp_path / "B.csv", MB)
    assert read_source("B", at_limit, max_file_mb=1, max_key_length=MB).rows_read > 60_000

    over = export_of_size(tmp_path / "C.csv", MB + 1)
    with pytest.raises(SourceUnavailable) as raised:
        read_source("B", over, max_file_mb=1)
    assert str(raised.value) == f"{over}: file too large (1.0 MB, over processing.max_file_mb = 1 MB)"


def test_a_byte_order_mark_is_skipped_without_changing_the_fingerprint(tmp_path: Path) -> None:
    path = export_of_size(tmp_path / "B.csv", 5000, bom=True)

    snapshot = read_source("B", path)

    data = path.read_bytes()
    assert snapshot.fingerprint is not None
    assert snapshot.fingerprint.sha256 == hashlib.sha256(data).hexdigest()
    assert snapshot.fingerprint.size == len(data)
    assert snapshot.keys.to_pylist()[0] == "K-0000000" and snapshot.rejected == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
@pytest.mark.parametrize("bom", [False, True])
def test_an_export_from_a_pipe_is_read_and_held_to_the_limit(tmp_path: Path, bom: bool) -> None:
    """A pipe has no size to check first and cannot seek back over a BOM; the limit still holds while reading."""
    content = (b"\xef\xbb\xbf" if bom else b"") + HEADER + b"B,K-1,,,\n"
    for data, limit_ok in ((content, True), (content + b"B," + b"K" * MB + b",,,\n", False)):
        pipe = tmp_path / f"B-{limit_ok}.csv"
        os.mkfifo(pipe)
        writer = threading.Thread(target=_write_and_close, args=(pipe, data))
        writer.start()
        try:
            if limit_ok:
                assert read_source("B", pipe, max_file_mb=1).keys.to_pylist() == ["K-1"]
            else:
                with pytest.raises(SourceUnavailable, match="file too large"):
                    read_source("B", pipe, max_file_mb=1)
        finally:
            _drain(pipe)  # a writer blocked on a pipe nobody reads any more
            writer.join()


def _write_and_close(pipe: Path, data: bytes) -> None:
    try:
        with pipe.open("wb") as f:
            f.write(data)
    except BrokenPipeError:  # the reader stopped at the limit and closed its end
        pass


def _drain(pipe: Path) -> None:
    fd = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)
    try:
        while True:
            try:
                if not os.read(fd, MB):
                    break
            except BlockingIOError:
                break
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------------------------
# processing.max_file_mb and max_key_length, through keysync run


def test_a_system_whose_export_is_too_large_is_unavailable_for_the_run(project: Project) -> None:
    project.write_config("processing: {max_file_mb: 1, retries: 0}\n")
    for system in "ACDE":
        project.write_system(system, ["K-1", "K-2"])
    export_of_size(project.input / "B.csv", MB + 100)

    result = project.invoke("run")

    said = f"System B was unavailable: {project.input / 'B.csv'}: file too large (1.0 MB, over processing.max_file_mb"
    assert said in result.stderr
    summary = {row["system"]: row for row in project.report("reconciliation_summary.csv")}
    assert summary["B"]["status"] == "unavailable" and summary["C"]["status"] == "ok"


def test_a_run_whose_authority_is_too_large_fails_with_one_clear_line(project: Project) -> None:
    project.write_config("processing: {max_file_mb: 1, retries: 0}\n")
    for system in "BCDE":
        project.write_system(system, ["K-1"])
    export_of_size(project.input / "A.csv", 2 * MB)

    result = project.invoke("run", expect=1)

    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "System A is the authority and could not be read" in line and "file too large (2.0 MB" in line


def test_a_key_longer_than_max_key_length_is_a_rejected_row(project: Project) -> None:
    project.write_config("processing: {max_key_length: 8}\n")
    for system in "ACDE":
        project.write_system(system, ["K-1"])
    project.write_system("B", ["K-1", "K-1234567"])

    project.invoke("run")

    [rejected] = project.report("rejected_rows.csv")
    assert (rejected["system"], rejected["line"], rejected["reason"]) == ("B", "3", "key longer than 8 characters (9)")


# ------------------------------------------------------------------------------------------------------------
# sandbox.max_bulk_keys, beyond the cases tests/e2e/test_sandbox_commands.py checks


def assert_refused(project: Project, *args: str, count: int) -> None:
    before, events = files(project), stored_events(project)
    result = sandbox(project, *args, expect=1)
    assert f"{count} keys in one operation is over the limit of 3 per system (sandbox.max_bulk_keys)" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert files(project) == before and stored_events(project) == events


def test_bulk_operations_beyond_the_limit_are_refused_and_change_nothing(project: Project) -> None:
    project.write_config("sandbox: {max_bulk_keys: 5}\n")
    sandbox(project, "init", "--keys", "5")
    sandbox(project, "save-state", "five")
    project.write_config("sandbox: {max_bulk_keys: 3}\n")

    assert_refused(project, "add-key", "--from-file", str(write(project.root / "k.txt", "X1\nX2\nX3\nX4\n")),
                   "--systems", "B", count=4)  # fmt: skip
    assert_refused(project, "reset", "--keys", "4", "--yes", count=4)
    assert_refused(project, "load-state", "five", count=5)
    assert_refused(project, "remove-key", "--pattern", "*", "--systems", "C", "--yes", count=5)
    assert len(keys(project, "C")) == 5


def test_the_limit_is_per_system(project: Project) -> None:
    project.write_config("sandbox: {max_bulk_keys: 3}\n")
    sandbox(project, "init", "--keys", "3")

    sandbox(project, "add-key", "--from-file", "-", "--systems", "B,C,D", input="X1\nX2\nX3\n")

    assert all(len(keys(project, s)) == 6 for s in "BCD")

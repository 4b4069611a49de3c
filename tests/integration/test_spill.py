"""Rows kept out of memory (keysync.infrastructure.spill): the same rows, read within a budget, cleaned up."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from keysync.domain.observations import SourceSnapshot
from keysync.infrastructure.sources import read_source
from keysync.infrastructure.spill import SpillingReader
from tests.conftest import Project

REPORTS = ("diff_missing_in_A.csv", "diff_missing_from_system.csv", "duplicate_keys.csv", "rejected_rows.csv",
           "master_key_registry.csv", "reconciliation_summary.csv")  # fmt: skip


def _export(path: Path, keys: list[str]) -> Path:
    path.write_text(
        "source_system,source_key,entity_type,location_ref,last_seen_at\n"
        + "".join(f"B,{k},customer,L{i},2026-01-0{i % 9 + 1}T00:00:00+00:00\n" for i, k in enumerate(keys)),
        encoding="utf-8",
    )
    return path


def test_kept_rows_are_the_rows_read_and_go_with_the_run(tmp_path: Path) -> None:
    path = _export(tmp_path / "B.csv", ["k-1", "K 2", "k-1", "", "ｋ３"])
    reader = SpillingReader(read_source, tmp_path / "spill", spill_rows=0)
    kept = reader("B", path, "csv", max_key_length=256)
    plain = read_source("B", path)
    assert kept.rows.equals(plain.rows)
    assert (kept.rejected, kept.rows_read, kept.fingerprint) == (plain.rejected, plain.rows_read, plain.fingerprint)
    assert [p.suffix for p in reader.folder.iterdir()] == [".arrow"]
    reader.release()  # the pages go back to the file cache; the rows stay readable
    assert kept.keys.to_pylist() == plain.keys.to_pylist()
    reader.clear()
    assert not reader.folder.exists()
    assert kept.rows.equals(plain.rows)  # still mapped after the file is gone


def test_small_exports_stay_in_memory(tmp_path: Path) -> None:
    path = _export(tmp_path / "B.csv", ["k-1", "k-2"])
    reader = SpillingReader(read_source, tmp_path / "spill", spill_rows=3)
    assert reader("B", path, "csv", max_key_length=256).keys.to_pylist() == ["k-1", "k-2"]
    assert not reader.folder.exists()


def test_clear_removes_what_ended_processes_left_and_keeps_the_living_ones(tmp_path: Path) -> None:
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = tmp_path / "spill" / f"{ended.stdout.strip()}-0a0a0a0a"
    living = tmp_path / "spill" / f"{os.getpid()}-0b0b0b0b"  # another run of this process
    for folder in (left, living):
        folder.mkdir(parents=True)
        (folder / "B-x.arrow").write_bytes(b"rows")
    SpillingReader(read_source, tmp_path / "spill").clear()
    assert not left.exists()
    assert (living / "B-x.arrow").exists()


def test_exports_are_read_together_only_while_they_fit_the_budget(tmp_path: Path) -> None:
    sizes = {"B": 100, "C": 100, "D": 100, "E": 100}
    for system, size in sizes.items():
        (tmp_path / f"{system}.csv").write_bytes(b"x" * size)
    together = threading.Barrier(2, timeout=30)  # two reads that fit must be under way at once
    reading, most = [0], [0]
    lock = threading.Lock()

    def read(system: str, path: Path, kind: str, *, max_key_length: int) -> SourceSnapshot:
        with lock:
            reading[0] += 1
            most[0] = max(most[0], reading[0])
        together.wait()
        with lock:
            reading[0] -= 1
        return SourceSnapshot.of(system, str(path), 0, [], [], [], [], [], [])

    reader = SpillingReader(read, tmp_path / "spill", read_budget=250)
    threads = [
        threading.Thread(target=reader, args=(s, tmp_path / f"{s}.csv", "csv"), kwargs={"max_key_length": 9})
        for s in sizes
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 2


def test_a_file_larger_than_the_budget_is_read_alone(tmp_path: Path) -> None:
    path = _export(tmp_path / "B.csv", ["k-1"])
    reader = SpillingReader(read_source, tmp_path / "spill", read_budget=1)
    assert reader("B", path, "csv", max_key_length=256).keys.to_pylist() == ["k-1"]


def _rows(project: Project, report: str) -> list[dict[str, str]]:
    """A report's rows without what names the run, its time or the project's folder."""
    with (project.output / report).open(encoding="utf-8", newline="") as handle:
        return [
            {k: v.replace(str(project.root), "") for k, v in row.items() if not k.endswith(("run_id", "_at"))}
            for row in csv.DictReader(handle)
        ]


def test_a_run_with_its_rows_kept_in_files_reports_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "kept").mkdir(), (tmp_path / "plain").mkdir()
    kept, plain = Project(tmp_path / "kept"), Project(tmp_path / "plain")
    kept.invoke("generate", "--keys", "3000", "--seed", "7")
    shutil.rmtree(plain.input)
    shutil.copytree(kept.input, plain.input)
    plain.invoke("run")
    kept.write_config("processing: {spill_rows: 0}\n")
    kept.invoke("run")
    assert (kept.root / "data" / "spill").is_dir()  # the rows went to files there
    assert not any((kept.root / "data" / "spill").iterdir())  # which went with the run
    for report in REPORTS:
        assert _rows(kept, report) == _rows(plain, report), report


def test_rows_that_cannot_be_kept_in_a_file_stay_in_memory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _export(tmp_path / "B.csv", ["k-1", "k-2"])
    (tmp_path / "spill").write_text("a file where the folder would be")  # mkdir fails, as on a read-only disk
    reader = SpillingReader(read_source, tmp_path / "spill", spill_rows=0)
    with caplog.at_level("WARNING", logger="keysync"):
        kept = reader("B", path, "csv", max_key_length=256)
    assert kept.keys.to_pylist() == ["k-1", "k-2"]
    assert "System B: its rows stay in memory" in caplog.text
    reader.release()
    reader.clear()  # nothing to clear, and no error for it

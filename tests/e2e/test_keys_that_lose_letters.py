"""Trust in what a run reports, through the real command: keys that lose letters under strip_non_alnum, the
duplicates report's raw forms, permanent read failures given up after one attempt, numeric JSON keys, and a device
given as an export."""

from __future__ import annotations

import json
import os

import pytest

from keysync.application.bootstrap import build
from keysync.infrastructure import sources
from keysync.infrastructure.config import load_config
from tests.conftest import Project

A = ["CUST-1", "CUST-2", "CAFÉ-1", "CAFE-1"]


def write_all(project: Project, b: list[str]) -> None:
    project.write_system("A", A)
    project.write_system("B", b)
    for system in "CDE":
        project.write_system(system, A)


def lines_about_letters(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "lost non-ASCII letters" in line]


# ---- keys that lose letters ------------------------------------------------------------------------


def test_a_run_that_drops_non_ascii_letters_says_how_many_keys_lost_them(project: Project) -> None:
    write_all(project, ["CUST-1", "CAFÉ-1", "Жук-7", "Мак-7"])

    result = project.invoke("run")

    # CAFÉ-1 is in every system, and counted once; the three distinct keys are also the three examples.
    assert lines_about_letters(result.stderr) == [
        "3 keys lost non-ASCII letters under strip_non_alnum (e.g. 'CAFÉ-1' -> 'CAF-1', 'Жук-7' -> '7', "
        "'Мак-7' -> '7'); set normalize.ascii_fold or normalize.letters: unicode to keep them"
    ]
    dry = project.invoke("run", "--dry-run", "--json")
    kpis = json.loads(dry.stdout)["kpis"]
    assert kpis["letters_lost_count"] == 3
    assert kpis["letters_lost_examples"][0] == ["CAFÉ-1", "CAF-1"]
    assert lines_about_letters(dry.stderr) != []  # said with --json too, on stderr


def test_ascii_fold_keeps_accented_letters_and_says_only_what_is_still_lost(project: Project) -> None:
    project.write_config("normalize: {ascii_fold: true}\n")
    write_all(project, ["CUST-1", "Жук-7"])

    result = project.invoke("run")

    assert lines_about_letters(result.stderr) == [
        "1 key lost non-ASCII letters under strip_non_alnum (e.g. 'Жук-7' -> '7'); "
        "set normalize.letters: unicode to keep them"
    ]
    # CAFÉ-1 and CAFE-1 are one key now: System A holds it twice.
    duplicates = {
        (row["system"], row["normalized_key"]): row["source_keys"] for row in project.report("duplicate_keys.csv")
    }
    assert duplicates[("A", "CAFE-1")] == "CAFÉ-1 | CAFE-1"


def test_unicode_letters_keep_distinct_keys_apart_and_say_nothing(project: Project) -> None:
    project.write_config("normalize: {letters: unicode}\n")
    write_all(project, ["CUST-1", "Жук-7", "Мак-7"])

    result = project.invoke("run")

    assert lines_about_letters(result.stderr) == []
    missing = {row["normalized_key"] for row in project.report("diff_missing_in_A.csv")}
    assert missing == {"ЖУК-7", "МАК-7"}
    assert project.report("duplicate_keys.csv") == []


def test_a_key_that_loses_letters_is_escaped_on_the_terminal(project: Project) -> None:
    write_all(project, ["É\u202e-1"])  # a bidirectional control: a key may hold one

    result = project.invoke("run")

    [line] = lines_about_letters(result.stderr)
    assert "\u202e" not in line and "'É\\u202e-1' -> '1'" in line


def test_the_rules_of_earlier_runs_are_the_same_rules_after_the_upgrade(project: Project) -> None:
    project.write_config("processing: {mode: incremental}\n")
    write_all(project, ["CUST-1", "Жук-7", "Мак-7"])
    project.invoke("run")
    [started] = _started_options(project)
    # Recorded as before ascii_fold and letters existed, so an older store's runs compare equal.
    assert sorted(started["rules"]) == ["collapse_delims", "pad_numbers", "strip_non_alnum", "trim", "uppercase"]

    assert "carries over" in project.invoke("run").stderr  # the same rules: nothing to redo

    project.write_config("processing: {mode: incremental}\nnormalize: {letters: unicode}\n")
    result = project.invoke("run")
    assert "carries over" not in result.stderr  # other rules: reconciled again
    assert {row["normalized_key"] for row in project.report("diff_missing_in_A.csv")} == {"ЖУК-7", "МАК-7"}


def _started_options(project: Project) -> list[dict]:
    """The options of every run's Started event, straight from the event store."""
    keysync = build(load_config(project.config))  # held, so its connections stay open while it is read
    last = keysync.store.recorder.max_notification_id() or 0
    notifications = keysync.store.recorder.select_notifications(start=None, limit=last + 1)
    events = [keysync.store.mapper.to_domain_event(n) for n in notifications if n.topic.endswith(".Started")]
    return [dict(event.options) for event in events]


# ---- the duplicates report ---------------------------------------------------------------------------


def test_the_duplicates_report_lists_every_raw_form_and_how_many_rows_hold_it(project: Project) -> None:
    project.write_system("A", ["CUST-1", "cust-1", "CUST-2", "CUST-2", "a|b", "A-B", "A-B", "cust 1"])
    for system in "BCDE":
        project.write_system(system, ["CUST-1"])

    project.invoke("run")

    shown = {
        row["normalized_key"]: (row["occurrences"], row["source_keys"]) for row in project.report("duplicate_keys.csv")
    }
    assert shown == {
        "CUST-1": ("3", "CUST-1 | cust-1 | cust 1"),
        "CUST-2": ("2", "CUST-2 (x2)"),
        "A-B": ("3", "a|b | A-B (x2)"),
    }


# ---- failures that no retry can mend -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "file not found"),
        (b"", "empty file, expected a header line"),
        (b"system,key\nB,K-1\n", "no usable header: line 1 has no source_key column (found: system,key)"),
    ],
)
def test_a_permanent_failure_is_read_once(project: Project, content: bytes | None, reason: str) -> None:
    project.write_config("processing: {retries: 2}\n")
    write_all(project, ["CUST-1"])
    b = project.input / "B.csv"
    if content is None:
        b.unlink()
    else:
        b.write_bytes(content)

    result = project.invoke("run")

    assert f"System B was unavailable: {b}: {reason}, 1 attempt" in result.stderr


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_a_device_given_as_an_export_is_refused_with_one_clear_reason(project: Project) -> None:
    sources = "".join(f"  {s}: {{type: csv, path: ./input/{s}.csv}}\n" for s in "ACDE")
    project.write_config(f"sources:\n{sources}  B: {{type: csv, path: /dev/zero}}\n")
    write_all(project, ["CUST-1"])

    result = project.invoke("run")

    assert "System B was unavailable: /dev/zero: not a regular file (a character device), 1 attempt" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_export_far_larger_than_memory_meets_max_file_mb_before_it_is_read(project: Project) -> None:
    write_all(project, ["CUST-1"])
    with (project.input / "B.csv").open("r+b") as f:
        f.truncate(64 << 30)  # 64 GiB, sparse: nothing is written, and nothing may be read

    result = project.invoke("run")

    said = "B.csv: file too large (65,536.0 MB, over processing.max_file_mb = 2,048 MB), 1 attempt"
    assert said in result.stderr


@pytest.mark.parametrize("where", ["_read_rest", "_snapshot"])
def test_running_out_of_memory_on_an_export_is_one_clear_reason(
    project: Project, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    # A limit set above the memory there is: reading or parsing the export fails for want of memory.
    write_all(project, ["CUST-1"])
    real = getattr(sources, where)

    def out_of_memory(*args: object, **kwargs: object) -> object:
        if "B.csv" in str(args[1] if where == "_snapshot" else getattr(args[0], "name", "")):
            raise MemoryError
        return real(*args, **kwargs)

    monkeypatch.setattr(sources, where, out_of_memory)

    result = project.invoke("run")

    said = "B.csv: not enough memory to read it (lower processing.max_file_mb), 1 attempt"
    assert said in result.stderr and "Traceback" not in result.stderr


# ---- numeric JSON keys -------------------------------------------------------------------------------


def test_a_numeric_json_key_is_read_as_its_text(project: Project) -> None:
    sources = "".join(f"  {s}: {{type: csv, path: ./input/{s}.csv}}\n" for s in "ACDE")
    project.write_config(f"sources:\n{sources}  B: {{type: json, path: ./input/B.json}}\n")
    for system in "ACDE":
        project.write_system(system, ["12345", "00042", "1E3"])
    (project.input / "B.json").write_text(
        '[{"source_system": "B", "source_key": 12345}, {"source_key": 42}, {"source_key": 1e3}]', encoding="utf-8"
    )

    project.invoke("run")

    summary = {row["system"]: row for row in project.report("reconciliation_summary.csv")}
    assert (summary["B"]["rows_read"], summary["B"]["rows_rejected"], summary["B"]["matched_in_A"]) == ("3", "0", "2")
    assert [row["normalized_key"] for row in project.report("diff_missing_in_A.csv")] == ["42"]

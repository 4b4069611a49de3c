"""Helpers for the reliability tests (stress, crash loop, output failures); no tests here.

They look at a store the way an auditor would: the CLI as a real process (exit code, stderr), every stored event
decoded straight from the log, and every report file parsed as CSV against the header it must have.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from keysync.application.bootstrap import build
from keysync.domain.sandbox_rows import file_key
from keysync.infrastructure.config import load_config
from keysync.infrastructure.sources import FIELDS
from keysync.projections.changes import CHANGE_COLUMNS
from keysync.projections.reports import (
    AUDIT,
    CHANGES,
    DUPLICATE_COLUMNS,
    DUPLICATES,
    MISSING_FROM_SYSTEM,
    MISSING_FROM_SYSTEM_COLUMNS,
    MISSING_IN_A,
    MISSING_IN_A_COLUMNS,
    REGISTRY,
    REGISTRY_REPORT_COLUMNS,
    REJECTED,
    REJECTED_COLUMNS,
    SUMMARY,
    SUMMARY_COLUMNS,
    TREND,
)
from keysync.projections.trends import TREND_COLUMNS
from keysync.projections.views import AUDIT_COLUMNS

HEADERS = {
    SUMMARY: SUMMARY_COLUMNS,
    MISSING_IN_A: MISSING_IN_A_COLUMNS,
    MISSING_FROM_SYSTEM: MISSING_FROM_SYSTEM_COLUMNS,
    REGISTRY: REGISTRY_REPORT_COLUMNS,
    AUDIT: AUDIT_COLUMNS,
    DUPLICATES: DUPLICATE_COLUMNS,
    REJECTED: REJECTED_COLUMNS,
    TREND: TREND_COLUMNS,
    CHANGES: CHANGE_COLUMNS,
}
SYSTEMS = "ABCDE"


def keysync(config: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> Any:
    """``keysync ARGS -c CONFIG`` as a process of its own."""
    return subprocess.run(
        [sys.executable, "-c", "from keysync.cli.main import main; main()", *args, "-c", str(config)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def start(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``keysync ARGS -c CONFIG`` started, not waited for."""
    return subprocess.Popen(
        [sys.executable, "-c", "from keysync.cli.main import main; main()", *args, "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def clear_failure(done: Any) -> str:
    """The one line a failed command printed, after checking that it failed the documented way: exit 1, no
    traceback, one ``Error: ...`` line on stderr."""
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    return lines[0]


def logged_events(config: Path) -> list[Any]:
    """Every event of the log, decoded, in log order (either backend)."""
    keysync = build(load_config(config))  # held, so its connections stay open while the log is read
    recorder, mapper = keysync.store.recorder, keysync.store.mapper
    events: list[Any] = []
    position, last = 0, recorder.max_notification_id() or 0
    while position < last:
        page = recorder.select_notifications(start=position, limit=50, stop=last, inclusive_of_start=False)
        if not page:
            break
        events += [mapper.to_domain_event(n) for n in page]
        position = page[-1].id
    return events


def kind(event: Any) -> str:
    return type(event).__name__


def sandbox_rows(config: Path) -> dict[str, list[str]]:
    """The key column of each system as the sandbox's log says it should be in the files."""
    from keysync.application.sandbox_bootstrap import build_sandbox

    sandbox = build_sandbox(load_config(config)).sandbox()
    return {s: [file_key(row) for row in sandbox.rows[s]] for s in SYSTEMS}


def file_keys(folder: Path) -> dict[str, list[str]]:
    """The key column of each system's file (undecodable bytes as surrogate escapes)."""
    found = {}
    for s in SYSTEMS:
        text = (folder / f"{s}.csv").read_bytes().decode("utf-8", "surrogateescape")
        found[s] = [row["source_key"] for row in csv.DictReader(io.StringIO(text, newline=""))]
    return found


def read_report(path: Path) -> list[dict[str, str]]:
    """A report's rows, after checking that it parses as CSV, whole, under the header it must have."""
    with path.open(encoding="utf-8", newline="") as handle:
        text = handle.read()
    assert text.endswith("\n"), f"{path.name} does not end with a line break: half-written?"
    rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    assert rows and tuple(rows[0]) == HEADERS[path.name], (path.name, rows[:1])
    width = len(rows[0])
    assert all(len(row) == width for row in rows), f"{path.name}: a row with another number of fields"
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def check_reports(output: Path) -> int:
    """Check every report present in ``output`` as ``read_report`` does; return how many there were."""
    present = [output / name for name in HEADERS if (output / name).exists()]
    for path in present:
        read_report(path)
    return len(present)


def check_sources(folder: Path) -> None:
    """Every system's file is whole: it starts with the contract's header and ends with a line break."""
    for s in SYSTEMS:
        data = (folder / f"{s}.csv").read_bytes()
        assert data.startswith(",".join(FIELDS).encode() + b"\n") and data.endswith(b"\n"), s


def temporaries(*folders: Path) -> Iterator[Path]:
    for folder in folders:
        yield from folder.glob(".*.tmp")

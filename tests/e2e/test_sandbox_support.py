"""Helpers for the sandbox tests (no tests here): run the sandbox's own click group on a project, read its files.

The sandbox group is invoked directly, so the tests pass whether or not keysync's main group registers it yet.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from keysync.application.bootstrap import build
from keysync.cli.sandbox import sandbox_group
from keysync.infrastructure.config import load_config

SYSTEMS = "ABCDE"


def sandbox(project: Any, *args: str, expect: int | None = 0, input: str | None = None) -> Result:
    """``keysync sandbox ARGS -c CONFIG`` in this process."""
    result = CliRunner().invoke(sandbox_group, [*args, "-c", str(project.config)], input=input, catch_exceptions=False)
    if expect is not None:
        assert result.exit_code == expect, (result.exit_code, result.stdout, result.stderr)
    return result


def files(project: Any) -> dict[str, bytes]:
    """Every system's file, byte for byte."""
    return {s: (project.input / f"{s}.csv").read_bytes() for s in SYSTEMS}


def keys(project: Any, system: str) -> list[str]:
    """The source_key column of a system's file, undecodable bytes as surrogate escapes."""
    text = (project.input / f"{system}.csv").read_bytes().decode("utf-8", "surrogateescape")
    return [row["source_key"] for row in csv.DictReader(io.StringIO(text, newline=""))]


def stored_events(project: Any) -> list[str]:
    """The type of every stored event, in order, straight from the event store (either backend)."""
    keysync = build(load_config(project.config))  # held, so its connections stay open while it is read
    last = keysync.store.recorder.max_notification_id() or 0
    notifications = keysync.store.recorder.select_notifications(start=None, limit=last + 1)
    return [n.topic.rsplit(".", 1)[-1] for n in notifications]


def as_json(result: Result) -> Any:
    return json.loads(result.stdout)


def run_kpis(project: Any) -> dict[str, Any]:
    """``keysync run --json``'s KPIs on the sandbox's files (the real run command)."""
    return as_json(project.invoke("run", "--json"))["kpis"]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path

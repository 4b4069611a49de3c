"""notify.command: a real shell command gets the run summary as JSON; a failing one is reported, never raised."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from keysync.application.notify import failed_run_summary, notify_after_run


def test_the_command_gets_the_summary_as_json_on_its_standard_input(tmp_path: Path) -> None:
    received = tmp_path / "summary.json"
    summary = {"run_id": "abc123def456", "status": "completed", "kpis": {"missing_in_A_count": 3}}
    assert notify_after_run(f"cat > '{received}'", summary) is None
    assert json.loads(received.read_text(encoding="utf-8")) == summary


def test_a_failing_command_is_logged_and_reported_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="keysync"):
        problem = notify_after_run("echo no route to host >&2; exit 3", {"run_id": "r1"})
    assert (
        problem
        == "Notifier failed (ignored): 'echo no route to host >&2; exit 3' exited with status 3: no route to host"
    )
    assert "notifier failed for run r1" in caplog.text


def test_a_child_left_running_in_the_background_does_not_hold_the_run_up(tmp_path: Path) -> None:
    received = tmp_path / "summary.json"
    begun = time.monotonic()

    problem = notify_after_run(f"cat > '{received}'; (sleep 20 &); echo sent", {"run_id": "r1"})

    assert problem is None and json.loads(received.read_text(encoding="utf-8")) == {"run_id": "r1"}
    assert time.monotonic() - begun < 10  # the notifier's own exit counts, not its child's hold on the output


def test_a_notifier_that_prints_without_end_costs_only_the_end_of_its_output() -> None:
    problem = notify_after_run("head -c 50000000 /dev/zero | tr '\\0' x; echo; echo the end; exit 4", {"run_id": "r1"})

    assert problem is not None and problem.endswith("x the end") and "exited with status 4" in problem
    assert len(problem) < 700  # the tail, not 50 MB


def test_a_notifier_that_breaks_unexpectedly_is_reported_too() -> None:
    def broken(_command: str):  # type: ignore[no-untyped-def]
        def call(_summary: dict) -> None:
            raise RuntimeError("boom")

        return call

    assert notify_after_run("anything", {"run_id": "r1"}, notifier=broken) == (
        "Notifier failed (ignored): 'anything': RuntimeError: boom"
    )


def test_no_command_runs_nothing() -> None:
    def never(_command: str):  # type: ignore[no-untyped-def]
        raise AssertionError("no notifier should be made")

    assert notify_after_run("", {"run_id": "r1"}, notifier=never) is None
    assert notify_after_run("   ", {"run_id": "r1"}, notifier=never) is None


def test_a_failed_run_has_the_schedulers_summary_shape() -> None:
    assert failed_run_summary("r1", "System A is the authority and could not be read") == {
        "run_id": "r1",
        "status": "failed",
        "error": "System A is the authority and could not be read",
    }


def test_keysync_run_tells_the_configured_notifier(project, write_systems):
    out = project.root / "summary.json"
    project.write_config(f"notify: {{command: 'cat > {out}'}}\n")
    write_systems(A=["K-1"], B=["K-1", "X-1"], C=["K-1"], D=["K-1"], E=["K-1"])
    run_id = json.loads(project.invoke("run", "--json").stdout)["run_id"]
    summary = json.loads(out.read_text(encoding="utf-8"))
    assert summary["run_id"] == run_id and summary["status"] == "completed" and summary["proposed"] == 1

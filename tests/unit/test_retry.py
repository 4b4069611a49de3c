"""Slow or flaky sources: a time limit per attempt, retries with backoff, then "unavailable" naming the attempts.

Nothing here sleeps: the pauses go to a recording fake, and a hanging read waits on an Event the test sets at
the end (so its abandoned threads finish)."""

from __future__ import annotations

import csv
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from keysync.application.reconcile import Observation, RunSettings, SourceSpec, new_run, observe
from keysync.application.retry import GaveUp, RetryPolicy, call_with_retries
from keysync.domain.normalization import NormalizationRules
from keysync.domain.observations import SYSTEMS, SourceRefused, SourceUnavailable
from keysync.infrastructure.sources import read_source


class Flaky:
    """Fails ``failures`` times (with ``error``), then returns ``value``."""

    def __init__(self, failures: int, error: Exception, value: object = "read") -> None:
        self.failures, self.error, self.value = failures, error, value
        self.calls = 0

    def __call__(self) -> object:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return self.value


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at the end of the test, so that every hanging read finishes."""
    event = threading.Event()
    yield event
    event.set()


def test_a_read_that_fails_twice_then_succeeds_is_retried_with_doubling_pauses() -> None:
    pauses: list[float] = []
    flaky = Flaky(2, SourceUnavailable("B.csv: cannot read file (Input/output error)"))
    assert call_with_retries(flaky, RetryPolicy(retries=2, sleep=pauses.append)) == "read"
    assert flaky.calls == 3
    assert pauses == [0.5, 1.0]


def test_a_read_that_keeps_failing_gives_up_naming_the_last_error_and_the_attempts() -> None:
    pauses: list[float] = []
    flaky = Flaky(10, TimeoutError(110, "Connection timed out", "/data/B.csv"))
    with pytest.raises(GaveUp) as raised:
        call_with_retries(flaky, RetryPolicy(retries=3, backoff_s=2.0, sleep=pauses.append))
    assert str(raised.value) == "Connection timed out: /data/B.csv, 4 attempts"
    assert raised.value.attempts == 4 and flaky.calls == 4
    assert pauses == [2.0, 4.0, 8.0]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (FileNotFoundError(2, "No such file or directory", "/data/B.csv"), "No such file or directory: /data/B.csv"),
        (IsADirectoryError(21, "Is a directory", "/data/B.csv"), "Is a directory: /data/B.csv"),
        (SourceRefused("/data/B.csv: no usable header: line 1 has no source_key column"), None),
        (SourceRefused("/data/B.csv: not valid JSON: Expecting value at line 1 column 1"), None),
    ],
)
def test_a_permanent_failure_is_given_up_after_one_attempt(error: Exception, reason: str | None) -> None:
    pauses: list[float] = []
    flaky = Flaky(10, error)
    with pytest.raises(GaveUp) as raised:
        call_with_retries(flaky, RetryPolicy(retries=3, sleep=pauses.append))
    assert str(raised.value) == f"{reason or error}, 1 attempt"
    assert flaky.calls == 1 and pauses == []


def test_a_file_over_the_size_limit_is_not_tried_again() -> None:
    pauses: list[float] = []
    refused = Flaky(10, SourceRefused("B.csv: file too large (3.0 MB, over processing.max_file_mb = 2 MB)"))
    with pytest.raises(GaveUp) as raised:
        call_with_retries(refused, RetryPolicy(retries=3, sleep=pauses.append))
    assert str(raised.value).startswith("B.csv: file too large") and refused.calls == 1 and pauses == []


def test_no_retries_means_one_attempt_and_no_pause() -> None:
    pauses: list[float] = []
    with pytest.raises(GaveUp, match=r"^gone, 1 attempt$"):
        call_with_retries(Flaky(1, SourceUnavailable("gone")), RetryPolicy(retries=0, sleep=pauses.append))
    assert pauses == []


def test_a_read_that_hangs_times_out_on_every_attempt(release: threading.Event) -> None:
    pauses: list[float] = []
    started: list[int] = []

    def hang() -> str:
        started.append(1)
        release.wait()
        return "too late"

    with pytest.raises(GaveUp) as raised:
        call_with_retries(hang, RetryPolicy(timeout_s=0.05, retries=2, sleep=pauses.append))
    assert str(raised.value) == "timed out after 0.05 s, 3 attempts"
    assert len(started) == 3 and pauses == [0.5, 1.0]


def test_a_read_that_hangs_once_succeeds_on_the_next_attempt(release: threading.Event) -> None:
    calls: list[int] = []

    def first_hangs() -> str:
        calls.append(1)
        if len(calls) == 1:
            release.wait()
            return "abandoned"
        return "second"

    assert call_with_retries(first_hangs, RetryPolicy(timeout_s=0.05, sleep=lambda _s: None)) == "second"


def test_any_other_error_is_a_bug_and_is_raised_at_once() -> None:
    pauses: list[float] = []
    flaky = Flaky(1, KeyError("column"))
    with pytest.raises(KeyError):
        call_with_retries(flaky, RetryPolicy(sleep=pauses.append))
    assert flaky.calls == 1 and pauses == []


# Through the run's observation stage, with a reader per system ------------------------------------------------


def write(path: Path, system: str, keys: list[str]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["source_system", "source_key"])
        writer.writerows([system, key] for key in keys)
    return path


@pytest.mark.parametrize("parallel", [True, False])
def test_a_run_retries_each_system_and_marks_the_one_that_never_answers_unavailable(
    tmp_path: Path, release: threading.Event, parallel: bool
) -> None:
    sources = {s: SourceSpec(s, write(tmp_path / f"{s}.csv", s, ["K-1", "K-2"])) for s in SYSTEMS}
    calls = dict.fromkeys(SYSTEMS, 0)

    def reader(system: str, path: Path, kind: str, *, max_key_length: int, **_options: object):  # type: ignore[no-untyped-def]
        calls[system] += 1  # each system's attempts run one after the other
        if system == "B" and calls[system] <= 2:
            raise OSError(5, "Input/output error", str(path))
        if system == "C":
            release.wait()
        if system == "D":
            path.unlink(missing_ok=True)  # the reader's own error: permanent, so read once
        return read_source(system, path, kind, max_key_length=max_key_length)

    pauses: list[float] = []
    read_source("A", sources["A"].path)  # the readers' modules load on first use: not within the time limit below
    settings = RunSettings(
        sources=sources,
        rules=NormalizationRules(),
        parallel=parallel,
        retry=RetryPolicy(timeout_s=0.05, retries=2, sleep=pauses.append),
    )
    observation = observe(settings, Observation(new_run(settings)), reader, lambda _run: None)
    assert sorted(observation.snapshots) == ["A", "B", "E"]
    assert observation.snapshots["B"].keys.to_pylist() == ["K-1", "K-2"]
    assert observation.reasons == {
        "C": f"{sources['C'].path}: timed out after 0.05 s, 3 attempts",  # the file named, as readers do
        "D": f"{sources['D'].path}: file not found, 1 attempt",
    }
    assert calls == {"A": 1, "B": 3, "C": 3, "D": 1, "E": 1}
    assert sorted(pauses) == [0.5, 0.5, 1.0, 1.0]  # B and C each paused twice; D not at all
    assert observation.run.unavailable == observation.reasons  # recorded on the run, as SourceUnavailable events

"""Time travel: the registry and the reports as they stood at a time, or at the end of a run.

``TIME|RUN_ID`` on the command line becomes a ``Moment`` here: a run id known to the log means "up to and
including that run's end"; otherwise an ISO 8601 date or time (without an offset: UTC; a date alone: its midnight)
means "every event stamped at or before it". A time before the first event gives empty read models and reports
that hold only their headers.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from keysync.projections.as_of import AsOfReports, Moment, UnfinishedRun, render_as_of, replay, run_end

if TYPE_CHECKING:
    from keysync.projections.runner import Projections

RUN_ID = re.compile(r"[0-9a-f]{12}")  # what keysync's run ids look like (uuid4 hex, 12 digits)


class AsOfError(ValueError):
    """A moment that cannot be travelled to (unknown run id, unreadable time) or a folder that cannot hold it."""


def moment_of(projections: Projections, text: str) -> Moment:
    """The moment ``text`` names: a run id of this store, or an ISO 8601 date or time."""
    text = text.strip()
    time = _time(text)
    if time is None or RUN_ID.fullmatch(text):
        try:
            end = run_end(projections, text)
        except UnfinishedRun:
            raise AsOfError(
                f"run {text} has not finished (it is running, or was interrupted): give a time to see it under way"
            ) from None
        if end is not None:
            return Moment(label=text, last_event=end)
    if time is not None:
        return Moment(label=_label(time), time=time)
    if RUN_ID.fullmatch(text):
        raise AsOfError(f"unknown run id {text!r} (see keysync history)")
    raise AsOfError(f"{text!r} is neither a run id nor an ISO 8601 time (e.g. 2026-01-02 or 2026-01-02T03:04:05+00:00)")


def reports_as_of(projections: Projections, text: str, output_dir: Path | None = None) -> AsOfReports:
    """Write every report as it stood at the moment ``text`` names into ``output_dir`` (default:
    ``<output_dir>/as-of-<run id or UTC time>/``), leaving the live read models and reports alone."""
    moment = moment_of(projections, text)
    folder = output_dir if output_dir is not None else projections.output_dir / f"as-of-{moment.label}"
    if _same_folder(folder, projections.output_dir):
        raise AsOfError(f"{folder} holds the live reports; write the reports as of {text} into another folder")
    return render_as_of(projections, moment, folder)


def registry_as_of(projections: Projections, text: str, status: str | None = None) -> list[dict[str, str]]:
    """The master-key registry as it stood at the moment ``text`` names (only the registry's events are read)."""
    return replay(projections, moment_of(projections, text), registry_only=True).registry_rows(status)


def _time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _label(time: datetime) -> str:
    """A folder-friendly UTC stamp: 20260102T030405Z (with microseconds only when there are some)."""
    utc = time.astimezone(UTC)
    return utc.strftime("%Y%m%dT%H%M%S") + (f".{utc.microsecond:06d}" if utc.microsecond else "") + "Z"


def _same_folder(a: Path, b: Path) -> bool:
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))

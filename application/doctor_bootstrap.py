"""The doctor's composition root: the live application, and a scratch twin of its projections to rebuild into.

Nothing is opened at import time.
"""

from __future__ import annotations

from pathlib import Path

from eventsourcing.sqlite import SQLiteDatastore

from keysync.application.bootstrap import build
from keysync.application.integrity import Doctor
from keysync.infrastructure.config import Config
from keysync.projections.runner import Projections
from keysync.projections.views import ViewRecorder


def scratch_projections(live: Projections, folder: Path) -> Projections:
    """The live projections' twin: the same event log, rules and report writer, but empty read models in a SQLite
    file of its own in ``folder`` (whichever backend the live ones use) and its reports in ``folder``/reports."""
    recorder = ViewRecorder(SQLiteDatastore(str(folder / "views.sqlite")))
    recorder.create_table()
    return Projections(
        live.store, recorder, folder / "reports", live.rules, live.strategy, live.write, writing=live.writing
    )


def build_doctor(config: Config, *, output_dir: Path | None = None) -> Doctor:
    return Doctor(build(config, output_dir=output_dir), scratch_projections)

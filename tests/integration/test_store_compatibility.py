"""Every version must still read a store written by the first one, and rebuild the same reports from it."""

from __future__ import annotations

import shutil
from pathlib import Path

from keysync.projections.reports import REPORTS

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "store_v1"


def test_the_first_versions_store_rebuilds_to_the_same_reports(project):
    shutil.copy(FIXTURE / "keysync.sqlite", project.root / "keysync.sqlite")
    project.config.write_text(
        project.config.read_text(encoding="utf-8").replace("./data/keysync.sqlite", "./keysync.sqlite"),
        encoding="utf-8",
    )
    project.invoke("rebuild")
    for name in REPORTS:
        expected = (FIXTURE / "expected" / name).read_text(encoding="utf-8")
        assert (project.output / name).read_text(encoding="utf-8") == expected, name


def test_the_first_versions_store_takes_new_runs(project, write_systems):
    shutil.copy(FIXTURE / "keysync.sqlite", project.root / "keysync.sqlite")
    project.config.write_text(
        project.config.read_text(encoding="utf-8").replace("./data/keysync.sqlite", "./keysync.sqlite"),
        encoding="utf-8",
    )
    write_systems(A=["CUST-1"], B=["CUST-1"], C=["CUST-1"], D=["CUST-1"], E=["CUST-1"])
    project.invoke("run")
    assert len(project.report("trend_report.csv")) == 4 * 5  # three old completed runs and this one

"""Every version must still read the stores written by earlier ones, and rebuild the same reports from them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from keysync.projections.reports import REPORTS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# store_v1: the first version's; store_v2: the last before the columnar engine, holding every kind of event then.
STORES = ("store_v1", "store_v2")


def use_store(project, name: str) -> Path:
    fixture = FIXTURES / name
    shutil.copy(fixture / "keysync.sqlite", project.root / "keysync.sqlite")
    project.config.write_text(
        project.config.read_text(encoding="utf-8").replace("./data/keysync.sqlite", "./keysync.sqlite"),
        encoding="utf-8",
    )
    return fixture


@pytest.mark.parametrize("name", STORES)
def test_an_earlier_versions_store_rebuilds_to_the_same_reports(project, name):
    fixture = use_store(project, name)
    project.invoke("rebuild")
    for report in REPORTS:
        expected = (fixture / "expected" / report).read_text(encoding="utf-8")
        assert (project.output / report).read_text(encoding="utf-8") == expected, report


@pytest.mark.parametrize(("name", "completed"), [("store_v1", 3), ("store_v2", 7)])
def test_an_earlier_versions_store_takes_new_runs(project, write_systems, name, completed):
    use_store(project, name)
    write_systems(A=["CUST-1"], B=["CUST-1"], C=["CUST-1"], D=["CUST-1"], E=["CUST-1"])
    project.invoke("run", "--accept-shrink", "A,B,C,D,E")
    assert len(project.report("trend_report.csv")) == (completed + 1) * 5


@pytest.mark.parametrize("name", STORES)
def test_an_earlier_versions_store_is_healthy(project, name):
    use_store(project, name)
    project.invoke("rebuild")
    assert project.invoke("doctor").exit_code == 0

"""Day-by-day mock histories, replayed in order, each run stamped with its snapshot's date."""

from __future__ import annotations

import csv
import json

import pytest

from keysync.application.bootstrap import build
from keysync.infrastructure.config import load_config
from keysync.infrastructure.mock_history import share_on_day


def test_a_failure_history_drops_mid_way_and_replays_in_date_order(any_project):
    out = any_project.invoke("generate", "--days", "6", "--scenario", "failure", "--keys", "400").stdout.split()
    dates = ["2025-12-27", "2025-12-28", "2025-12-29", "2025-12-30", "2025-12-31", "2026-01-01"]
    assert [p.rsplit("/", 1)[-1] for p in out] == dates
    any_project.invoke("replay-history", str(any_project.input / "history"))
    rows = build(load_config(any_project.config)).runs()
    assert [r["as_of"][:10] for r in reversed(rows)] == dates
    rates = [json.loads(r["kpis"])["systems"]["B"]["match_rate"] for r in reversed(rows)]
    assert all(abs(rate - 0.80) < 0.05 for rate in rates[:3]), rates
    assert all(abs(rate - 0.50) < 0.05 for rate in rates[3:]), rates


def test_replaying_a_folder_without_snapshots_is_a_clear_error(any_project):
    result = any_project.invoke("replay-history", str(any_project.input), expect=1)
    assert "no snapshot folders named YYYY-MM-DD" in result.stderr


@pytest.mark.parametrize(
    ("scenario", "first", "last"), [("drift", 0.80, 0.60), ("failure", 0.80, 0.50), ("recovery", 0.50, 0.80)]
)
def test_scenario_curves(scenario, first, last):
    assert share_on_day(scenario, 0, 10) == pytest.approx(first)
    assert share_on_day(scenario, 9, 10) == pytest.approx(last)


def test_a_folder_named_like_an_impossible_date_is_refused_before_anything_runs(project):
    project.invoke("generate", "--days", "2", "--keys", "50")
    history = project.input / "history"
    (history / sorted(p.name for p in history.iterdir())[0]).rename(history / "2026-02-30")

    result = project.invoke("replay-history", str(history), expect=1)

    assert "2026-02-30 is not a date" in result.stderr and "nothing was replayed" in result.stderr
    assert build(load_config(project.config)).runs() == []


def test_a_snapshot_that_fails_is_reported_and_the_later_ones_still_run(project):
    project.write_config("processing: {retries: 0}\n")
    project.invoke("generate", "--days", "3", "--keys", "50")
    history = project.input / "history"
    days = sorted(p.name for p in history.iterdir())
    (history / days[1] / "A.csv").unlink()

    result = project.invoke("replay-history", str(history), expect=1)

    assert [line.split()[0] for line in result.stdout.splitlines()] == [days[0], days[2]]
    assert f"{days[1]} run " in result.stderr and "A.csv" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith(f"Error: replayed 2 snapshot(s); 1 failed ({days[1]})")
    runs = build(load_config(project.config)).runs()
    assert [(r["as_of"][:10], r["status"]) for r in reversed(runs)] == [
        (days[0], "completed"), (days[1], "failed"), (days[2], "completed"),
    ]  # fmt: skip


def test_each_system_of_a_snapshot_is_read_in_its_own_format(project):
    project.invoke("generate", "--days", "1", "--keys", "50")
    [day] = (project.input / "history").iterdir()
    rows = list(csv.DictReader((day / "B.csv").open(encoding="utf-8", newline="")))
    (day / "B.json").write_text(json.dumps(rows), encoding="utf-8")
    (day / "B.csv").unlink()

    project.invoke("replay-history", str(project.input / "history"))

    [run] = build(load_config(project.config)).runs()
    assert json.loads(run["kpis"])["systems"]["B"]["unique_keys"] > 0


def test_trends_put_a_snapshot_replayed_late_at_its_own_date(project):
    project.invoke("generate", "--days", "2", "--keys", "50")
    history = project.input / "history"
    early, late = sorted(p.name for p in history.iterdir())
    (history / early).rename(project.root / early)  # replayed after the later day
    project.invoke("replay-history", str(history))
    (history / late).rename(project.root / late)
    (project.root / early).rename(history / early)

    project.invoke("replay-history", str(history))

    assert [row["finished_at"][:10] for row in project.report("trend_report.csv")][::5] == [early, late]


def test_end_date_places_the_history_and_the_same_seed_gives_the_same_bytes(project):
    def generate(folder: str) -> dict[str, bytes]:
        arguments = ("--days", "3", "--end-date", "2026-01-10", "--keys", "60", "--seed", "5")
        out = project.invoke("generate", *arguments, "--output", str(project.root / folder)).stdout.split()
        assert [p.rsplit("/", 1)[-1] for p in out] == ["2026-01-08", "2026-01-09", "2026-01-10"]
        root = project.root / folder
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    first, second = generate("one"), generate("two")
    assert len(first) == 15 and first == second
    # The last day's keys were last seen within the history window that ends on the end date.
    with (project.root / "one" / "2026-01-10" / "A.csv").open(encoding="utf-8", newline="") as handle:
        seen = {row["last_seen_at"][:10] for row in csv.DictReader(handle) if row.get("last_seen_at")}
    assert max(seen) <= "2026-01-10" and min(seen) >= "2025-12-01"
    refused = project.invoke("generate", "--days", "2", "--end-date", "10/01/2026", expect=2)
    assert "--end-date" in refused.stderr

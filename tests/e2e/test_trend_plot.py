"""keysync trends --plot stays readable when the runs span months with gaps: every run gets the same room on
the axis, labelled with its date, and a long pause is cut out and marked."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from keysync.application.bootstrap import build
from keysync.cli.options import load
from keysync.projections.trends import trend_figure, trend_points


def run_rows(moments: list[datetime]) -> list[dict]:
    """Run-history rows, newest first as ViewRecorder.runs() gives them, with B's discrepancies growing."""
    rows = []
    for i, moment in enumerate(moments):
        ok = {"status": "ok", "unique_keys": 10, "matched_in_A": 8, "missing_in_A": i, "missing_from_system": 2,
              "duplicate_keys": 0, "match_rate": 0.8}  # fmt: skip
        kpis = json.dumps({"systems": dict.fromkeys("ABCDE", ok)})
        rows.append({"run_id": f"r{i}", "finished_at": moment.isoformat(), "status": "completed", "kpis": kpis})
    return rows[::-1]


def plotted(points) -> dict:
    """What the figure shows: B's runs' x positions in the discrepancies panel, its x range, cuts and dates."""
    fig = trend_figure(points)
    import matplotlib.pyplot as plt  # after trend_figure has chosen the headless backend

    try:
        _rates, gaps = fig.axes[:2]
        line = next(line for line in gaps.get_lines() if line.get_label() == "B")
        xs = [x for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True) if not math.isnan(y)]
        fig.canvas.draw()
        return {
            "xs": xs,
            "xlim": gaps.get_xlim(),
            "cuts": [p for p in gaps.patches if p.get_gid() == "cut"],
            "dates": [t.get_text() for t in gaps.get_xticklabels()],
            "texts": [t.get_text() for t in fig.axes[0].texts],
        }
    finally:
        plt.close(fig)


def share_of_axis(xs: list[float], xlim: tuple[float, float]) -> float:
    return (max(xs) - min(xs)) / (xlim[1] - xlim[0])


def test_thirty_days_a_year_back_and_a_run_today_fill_the_axis():
    end = datetime(2026, 1, 1, tzinfo=UTC)
    days = [end - timedelta(days=29 - d) for d in range(30)]
    shown = plotted(trend_points(run_rows([*days, datetime(2026, 12, 7, 4, 3, tzinfo=UTC)])))
    xs = shown["xs"]
    assert len(xs) == 31
    assert {b - a for a, b in pairwise(xs[:30])} == {1.0}  # evenly spaced, one slot each
    assert share_of_axis(xs[:30], shown["xlim"]) > 0.85  # on a time axis: under a tenth
    assert len(shown["cuts"]) == 1 and shown["texts"] == ["340 days without runs"]
    assert {"2025-12-03", "2026-01-01", "2026-12-07"} <= set(shown["dates"])

    consecutive = plotted(trend_points(run_rows(days)))
    assert consecutive["cuts"] == [] and share_of_axis(consecutive["xs"], consecutive["xlim"]) > 0.95


def test_a_generated_history_a_year_back_and_a_run_today_through_the_cli(project, write_systems):
    project.invoke("generate", "--days", "6", "--keys", "40")  # the default end date, 2026-01-01
    project.invoke("replay-history", str(project.input / "history"))
    write_systems(A=["CUST-1", "CUST-2"], B=["CUST-1"], C=["CUST-1", "CUST-2"], D=["CUST-2"], E=["CUST-1"])
    project.invoke("run")

    runs = build(load(project.config)).runs()
    today = datetime.fromisoformat(runs[0]["finished_at"]).date().isoformat()
    shown = plotted(trend_points(runs))
    assert len(shown["xs"]) == 7 and share_of_axis(shown["xs"][:6], shown["xlim"]) > 0.6
    assert len(shown["cuts"]) == 1 and shown["dates"][0] == "2025-12-27" and shown["dates"][-1] == today
    for image in (project.root / "trends.png", project.root / "trends.svg"):
        project.invoke("trends", "--plot", str(image), "--json")
        assert image.stat().st_size > 1000

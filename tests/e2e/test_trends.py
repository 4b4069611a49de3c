"""trends and compare: how the reconciliation moves from run to run."""

from __future__ import annotations

import csv
import io
import json

import click
from click.testing import CliRunner

from keysync.application.bootstrap import build
from keysync.cli.options import load
from keysync.cli.trends import compare_command, trends_command
from keysync.projections.trends import TREND_COLUMNS, trend_rows

A = ["CUST-1", "CUST-2", "CUST-3"]

group = click.Group("keysync", commands=[trends_command, compare_command])


def invoke(project, *args: str, expect: int = 0):
    result = CliRunner().invoke(group, [*args, "-c", str(project.config)], catch_exceptions=False)
    assert result.exit_code == expect, (result.exit_code, result.stdout, result.stderr)
    return result


def three_runs(project, write_systems) -> list[str]:
    """Run 1: B lacks CUST-3 and has X-1. Run 2: B fixed, D unavailable, E gains X-2. Run 3: E loses CUST-1."""
    write_systems(A=A, B=["CUST-1", "CUST-2", "X-1"], C=A, D=A, E=A)
    first = json.loads(project.invoke("run", "--json").stdout)["run_id"]
    write_systems(B=A, E=[*A, "X-2"])
    (project.input / "D.csv").unlink()
    second = json.loads(project.invoke("run", "--json").stdout)["run_id"]
    write_systems(D=A, E=["CUST-2", "CUST-3", "X-2"])
    third = json.loads(project.invoke("run", "--json").stdout)["run_id"]
    return [first, second, third]


def test_trend_rows_follow_the_runs_oldest_first(any_project, write_systems):
    runs = three_runs(any_project, write_systems)
    points = json.loads(invoke(any_project, "trends", "--json").stdout)
    assert [p["run_id"] for p in points] == [r for r in runs for _ in "ABCDE"]
    assert [p["system"] for p in points] == list("ABCDE") * 3
    b, e = ([p for p in points if p["system"] == s] for s in "BE")
    assert [(p["missing_in_A"], p["missing_from_system"], p["matched_in_A"]) for p in b] == [
        (1, 1, 2),
        (0, 0, 3),
        (0, 0, 3),
    ]
    assert [(p["missing_in_A"], p["missing_from_system"]) for p in e] == [(0, 0), (1, 0), (1, 1)]
    assert [round(p["match_rate"], 4) for p in b] == [0.5, 1.0, 1.0]
    d = [p for p in points if p["system"] == "D"]
    assert [p["status"] for p in d] == ["ok", "unavailable", "ok"] and d[1]["missing_in_A"] is None

    # The report rows the lead writes after each run: the same order, empty counts where D was unavailable.
    rows = [dict(zip(TREND_COLUMNS, row, strict=True)) for row in trend_rows(build(load(any_project.config)).runs())]
    assert [(r["run_id"], r["system"]) for r in rows] == [(p["run_id"], p["system"]) for p in points]
    d_down = next(r for r in rows if r["run_id"] == runs[1] and r["system"] == "D")
    assert d_down["status"] == "unavailable" and d_down["unique_keys"] == "" and d_down["match_rate"] == ""
    assert next(r for r in rows if r["run_id"] == runs[0] and r["system"] == "B")["match_rate"] == "0.5000"

    last = json.loads(invoke(any_project, "trends", "--last", "2", "--json").stdout)
    assert [p["run_id"] for p in last[::5]] == runs[1:]
    table = invoke(any_project, "trends").stdout
    assert "Trends (3 completed runs" in table and "unavailable" in table and "50.0% 1/1" in table


def test_plot_writes_png_and_svg_and_refuses_other_suffixes(any_project, write_systems):
    three_runs(any_project, write_systems)
    png, svg = any_project.root / "trends.png", any_project.root / "trends.svg"
    invoke(any_project, "trends", "--plot", str(png))
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 1000
    invoke(any_project, "trends", "--plot", str(svg), "--json")
    text = svg.read_text(encoding="utf-8")
    assert text.lstrip().startswith("<?xml") and "<svg" in text and len(text) > 1000
    refused = invoke(any_project, "trends", "--plot", str(any_project.root / "trends.txt"), expect=2)
    assert "must end in .png or .svg" in refused.stderr
    assert not (any_project.root / "trends.txt").exists()


def test_plot_without_completed_runs_is_a_clear_error(any_project):
    result = invoke(any_project, "trends", "--plot", str(any_project.root / "t.png"), expect=1)
    assert "no completed runs to plot" in result.stderr


def test_compare_shows_opened_and_resolved_keys(any_project, write_systems):
    first, second, third = three_runs(any_project, write_systems)
    result = invoke(any_project, "compare", first, third, "--json")
    comparison = json.loads(result.stdout)
    changes = {(c["system"], c["kind"], c["change"], c["key"]) for c in comparison["changes"]}
    assert changes == {
        ("B", "missing_in_A", "resolved", "X-1"),
        ("B", "missing_from_system", "resolved", "CUST-3"),
        ("E", "missing_in_A", "opened", "X-2"),
        ("E", "missing_from_system", "opened", "CUST-1"),
    }
    assert comparison["totals"] == {"opened": 2, "resolved": 2}
    assert comparison["systems"]["B"]["missing_in_A_resolved"] == 1
    assert f"{first} -> {third}: 2 opened, 2 resolved" in result.stderr

    # D was unavailable in the second run: it is not compared rather than shown as all resolved.
    between = json.loads(invoke(any_project, "compare", first, second, "--json").stdout)
    assert between["not_compared"] == {"D": f"unavailable in {second}"}
    assert not [c for c in between["changes"] if c["system"] == "D"]

    table = invoke(any_project, "compare", second, third)
    assert "CUST-1" in table.stdout and "opened" in table.stdout and "missing_from_system" in table.stdout
    assert "1 opened, 0 resolved" in table.stderr


def test_compare_an_unknown_run_is_a_clear_error(any_project, write_systems):
    first, *_ = three_runs(any_project, write_systems)
    result = invoke(any_project, "compare", first, "no-such-run", expect=1)
    assert "unknown run id 'no-such-run'" in result.stderr
    assert "Traceback" not in result.output


def test_trend_rows_is_pure_over_run_history_rows():
    def kpis(b: dict) -> str:
        ok = {"status": "ok", "unique_keys": 2, "matched_in_A": 2, "missing_in_A": 0, "missing_from_system": 0,
              "duplicate_keys": 0, "match_rate": 1.0}  # fmt: skip
        return json.dumps({"systems": {"A": ok, "B": b, "C": ok, "D": ok, "E": ok}})

    down = {"status": "unavailable", "rows_read": 0, "unique_keys": 0, "matched_in_A": 0, "missing_in_A": 0,
            "missing_from_system": 0, "duplicate_keys": 0, "match_rate": 1.0}  # fmt: skip
    drift = {"status": "ok", "unique_keys": 3, "matched_in_A": 1, "missing_in_A": 2, "missing_from_system": 1,
             "duplicate_keys": 1, "match_rate": 0.25}  # fmt: skip
    runs = [  # newest first, as ViewRecorder.runs() returns them
        {"run_id": "r3", "finished_at": "2026-01-03T00:00:00+00:00", "status": "completed", "kpis": kpis(down)},
        {"run_id": "r2", "finished_at": "2026-01-02T00:00:00+00:00", "status": "failed", "kpis": ""},
        {"run_id": "r1", "finished_at": "2026-01-01T00:00:00+00:00", "status": "completed", "kpis": kpis(drift)},
    ]
    rows = trend_rows(runs)
    assert [(r[0], r[2]) for r in rows] == [(run, s) for run in ("r1", "r3") for s in "ABCDE"]
    assert rows[1] == ["r1", "2026-01-01T00:00:00+00:00", "B", "ok", 3, 1, 2, 1, 1, "0.2500"]
    assert rows[6] == ["r3", "2026-01-03T00:00:00+00:00", "B", "unavailable", "", "", "", "", "", ""]
    assert trend_rows([]) == []
    out = io.StringIO()
    csv.writer(out).writerows([TREND_COLUMNS, *rows])
    assert out.getvalue().count("\n") == 11

"""Trends across runs: the per-run, per-system KPIs of every completed run, as a report and as a chart.

Everything here reads the run-history read model (``ViewRecorder.runs()`` rows, whose ``kpis`` column holds the
JSON the run completed with), so it needs no replay of the event log.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from keysync.domain.observations import DOWNSTREAM, SYSTEMS
from keysync.projections.run_axis import Cut, run_axis

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TREND_REPORT = "trend_report.csv"
TREND_COLUMNS = (
    "run_id", "finished_at", "system", "status", "unique_keys", "matched_in_A", "missing_in_A",
    "missing_from_system", "duplicate_keys", "match_rate",
)  # fmt: skip
COUNTS = ("unique_keys", "matched_in_A", "missing_in_A", "missing_from_system", "duplicate_keys")
PLOT_FORMATS = ("png", "svg")


@attrs.frozen
class TrendPoint:
    """One system in one completed run. An unavailable system has status "unavailable" and no numbers."""

    run_id: str
    finished_at: str
    system: str
    status: str  # ok | suspect (the counts of the rows that stood in for a held-back export) | unavailable
    unique_keys: int | None = None
    matched_in_A: int | None = None
    missing_in_A: int | None = None
    missing_from_system: int | None = None
    duplicate_keys: int | None = None
    match_rate: float | None = None

    @property
    def discrepancies(self) -> int | None:
        """Out-of-authority keys plus propagation gaps."""
        if self.missing_in_A is None or self.missing_from_system is None:
            return None
        return self.missing_in_A + self.missing_from_system

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def trend_points(runs: Sequence[Mapping[str, Any]], last: int | None = None) -> list[TrendPoint]:
    """Completed runs only, oldest first by the time their data describes, one point per system A-E. ``runs``
    come newest first, as ``ViewRecorder.runs()`` returns them; ``last`` keeps only the N latest completed runs."""
    completed = [run for run in reversed(runs) if run.get("status") == "completed"]
    # A replayed snapshot is placed at the date its data describes, not at the moment it was replayed; runs are
    # then in time order (a snapshot replayed after later ones goes back to its place), ties in run order, and
    # ``last`` keeps the N latest in that order.
    stamped = sorted(((_stamp(run), run) for run in completed), key=lambda pair: pair[0])
    if last is not None:
        stamped = stamped[-last:] if last > 0 else []
    points = []
    for stamp, run in stamped:
        kpis = run["kpis"] if isinstance(run.get("kpis"), Mapping) else json.loads(run.get("kpis") or "{}")
        per_system = kpis.get("systems") or {}
        for system in SYSTEMS:
            points.append(_point(run["run_id"], stamp, system, per_system.get(system)))
    return points


def _stamp(run: Mapping[str, Any]) -> str:
    replayed = run.get("as_of") and run.get("as_of") != run.get("started_at")
    return run["as_of"] if replayed else run.get("finished_at") or ""


def _point(run_id: str, finished_at: str, system: str, kpis: Mapping[str, Any] | None) -> TrendPoint:
    status = kpis.get("status", "ok") if kpis else "unavailable"
    if not kpis or status not in ("ok", "suspect"):
        return TrendPoint(run_id, finished_at, system, "unavailable")
    counts = {name: int(kpis.get(name) or 0) for name in COUNTS}
    return TrendPoint(run_id, finished_at, system, status, **counts, match_rate=float(kpis.get("match_rate", 0.0)))


def trend_rows(runs: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """The rows of trend_report.csv, under TREND_COLUMNS: an unavailable system's counts are empty."""
    return [_row(point) for point in trend_points(runs)]


def _row(point: TrendPoint) -> list[Any]:
    values = point.as_dict()
    rate = values["match_rate"]
    values["match_rate"] = "" if rate is None else f"{rate:.4f}"
    return ["" if values[column] is None else values[column] for column in TREND_COLUMNS]


# The chart ---------------------------------------------------------------------------------------------------


def plot_format(path: Path) -> str:
    """The image format a plot file's suffix asks for; ValueError if it is neither .png nor .svg."""
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in PLOT_FORMATS:
        raise ValueError(f"{path.name!r} must end in .png or .svg (the suffix chooses the image format)")
    return suffix


def write_trend_plot(points: Sequence[TrendPoint], path: Path) -> Path:
    """Draw the trend chart (see ``trend_figure``) and save it as PNG or SVG after ``path``'s suffix."""
    image_format = plot_format(path)
    import matplotlib.pyplot as plt

    fig = trend_figure(points)
    try:
        metadata = {"Date": None} if image_format == "svg" else None
        fig.savefig(path, format=image_format, metadata=metadata)
    finally:
        plt.close(fig)
    return path


def trend_figure(points: Sequence[TrendPoint]) -> Figure:
    """Match rate and discrepancies (missing_in_A + missing_from_system) per downstream system, two panels
    sharing one axis of runs: one evenly spaced slot per run, labelled with its date, long pauses cut out
    (keysync.projections.run_axis). The caller closes the figure (``matplotlib.pyplot.close``).

    System A is left out: it is the authority, compared with itself it always matches. An unavailable system
    leaves a gap in its line and an "x" at the foot of the match-rate panel."""
    import matplotlib

    matplotlib.use("Agg")  # headless: before pyplot is imported
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FixedLocator, MaxNLocator

    times = {p.run_id: _moment(p.finished_at) for p in points}
    runs = list(times)
    axis = run_axis(list(times.values()))
    xs = axis.positions
    by_key = {(p.run_id, p.system): p for p in points}
    fig, (rates, gaps) = plt.subplots(2, 1, sharex=True, figsize=(11, 7.5), layout="constrained")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    down_marks = []
    for index, system in enumerate(DOWNSTREAM):
        # Shrinking markers and distinct line styles keep systems that coincide visible under each other.
        style = {"color": colors[index % len(colors)], "marker": "osD^"[index % 4], "markersize": 8 - 1.5 * index,
                 "linestyle": ("-", "--", "-.", ":")[index % 4], "label": system}  # fmt: skip
        series = [by_key.get((run, system)) for run in runs]
        rates.plot(*_broken(xs, [_value(p, "match_rate") for p in series], axis.cuts), **style)
        gaps.plot(*_broken(xs, [_value(p, "discrepancies") for p in series], axis.cuts), **style)
        down = [x for x, p in zip(xs, series, strict=True) if p is None or p.status == "unavailable"]
        down_marks.append((down, style["color"]))
    for down, color in down_marks:
        if down:
            rates.scatter(down, [0.0] * len(down), marker="x", s=70, color=color, zorder=3, clip_on=False)
    for cut in axis.cuts:
        for axes in (rates, gaps):
            axes.axvspan(cut.at - 0.4, cut.at + 0.4, facecolor="0.93", edgecolor="0.6", hatch="//", lw=0, gid="cut")
        rates.text(cut.at, 0.5, cut.label, rotation=90, ha="center", va="center", fontsize="small", color="0.3",
                   bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.5})  # fmt: skip
    rates.set_title("Match rate per system")
    rates.set_ylabel("match rate")
    rates.set_ylim(-0.02, 1.05)
    gaps.set_title("Discrepancies per system (missing_in_A + missing_from_system)")
    gaps.set_ylabel("keys")
    gaps.set_ylim(bottom=0)
    gaps.yaxis.set_major_locator(MaxNLocator(integer=True))
    if xs:
        gaps.set_xlim(xs[0] - 0.6, xs[-1] + 0.6)
    gaps.xaxis.set_major_locator(FixedLocator(list(axis.labels)))
    gaps.set_xticklabels(list(axis.labels.values()), rotation=40, ha="right", rotation_mode="anchor")
    gaps.xaxis.set_minor_locator(FixedLocator(xs))  # a tick for every run, labelled or not
    cut_note = f"; a hatched slot cuts out a pause of over {axis.min_cut.days} days" if axis.cuts else ""
    gaps.set_xlabel(f"runs, oldest first, one slot each, labelled with the date their data describes (UTC){cut_note}")
    unavailable = Line2D([], [], color="black", marker="x", linestyle="", label="unavailable")
    for axes in (rates, gaps):
        axes.grid(True, alpha=0.3)
    rates.legend(handles=[*rates.get_lines(), unavailable], title="System", loc="upper left",
                 bbox_to_anchor=(1.01, 1.0), fontsize="small")  # fmt: skip
    gaps.legend(title="System", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    fig.suptitle(f"KeySync trends over {len(runs)} completed run(s)")
    return fig


def _broken(xs: list[float], ys: list[float], cuts: Sequence[Cut]) -> tuple[list[float], list[float]]:
    """The series with a break (NaN) in the slot of every cut: no line pretends to know the pause."""
    points = sorted([*zip(xs, ys, strict=True), *((cut.at, math.nan) for cut in cuts)])
    return [x for x, _ in points], [y for _, y in points]


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _value(point: TrendPoint | None, name: str) -> float:
    value = None if point is None else getattr(point, name)
    return math.nan if value is None else float(value)

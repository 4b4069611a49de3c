"""The trend chart's horizontal axis: one evenly spaced slot per run, oldest first, labelled with its date.

On a time axis, thirty daily runs a year back and one run today put the thirty days in a thirtieth of the chart.
Here every run gets the same room, whatever the time between runs, and a long pause between two runs is cut out
of the axis: it takes one empty slot, marked with how long it was, so that the chart does not pretend the runs
were evenly spread in time. A pause is long when it is more than a week and more than three times the usual
time between runs (the median), so that weekly runs are not all cut apart.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import attrs

MIN_CUT = timedelta(days=7)
CUT_FACTOR = 3  # x the median time between runs
MAX_LABELS = 24  # dates shown under the axis, at most; every run still gets a tick


@attrs.frozen
class Cut:
    """A pause between two neighbouring runs, cut out of the axis: its empty slot is centred at ``at``."""

    at: float
    before: datetime  # the last run before the pause
    after: datetime  # the first run after it

    @property
    def label(self) -> str:
        days = (self.after - self.before) / timedelta(days=1)
        return f"{days:.0f} days without runs"


@attrs.frozen
class RunAxis:
    positions: list[float]  # per run, oldest first
    cuts: list[Cut]
    labels: dict[float, str]  # position -> date, thinned so that neighbours do not overlap
    min_cut: timedelta  # the shortest pause that is cut


def run_axis(moments: Sequence[datetime], max_labels: int = MAX_LABELS) -> RunAxis:
    """Lay out runs at ``moments`` (oldest first; a naive moment is taken as UTC)."""
    moments = [m if m.tzinfo else m.replace(tzinfo=UTC) for m in moments]
    pauses = [b - a for a, b in pairwise(moments)]
    min_cut = max(MIN_CUT, CUT_FACTOR * statistics.median(pauses)) if pauses else MIN_CUT
    positions: list[float] = [0.0] if moments else []
    cuts = []
    for (before, after), pause in zip(pairwise(moments), pauses, strict=True):
        step = 2.0 if pause > min_cut else 1.0
        if step > 1:
            cuts.append(Cut(positions[-1] + 1, before, after))
        positions.append(positions[-1] + step)
    return RunAxis(positions, cuts, _labels(moments, positions, cuts, max_labels), min_cut)


def _labels(moments: list[datetime], positions: list[float], cuts: list[Cut], max_labels: int) -> dict[float, str]:
    """The first and last runs, the runs on both sides of each cut, then runs at an even step, each kept only
    if no label already kept is nearer than the step. A date that several runs share gets their times too."""
    if not moments:
        return {}
    texts = [m.date().isoformat() for m in moments]
    shared = Counter(texts)
    texts = [f"{t} {m:%H:%M}" if shared[t] > 1 else t for t, m in zip(texts, moments, strict=True)]
    room = max(1, math.ceil((positions[-1] - positions[0] + 1) / max(max_labels, 1)))
    by_position = dict(zip(positions, texts, strict=True))
    around_cuts = [x for cut in cuts for x in (cut.at + 1, cut.at - 1)]
    wanted = [positions[-1], positions[0], *around_cuts, *positions[::room]]
    kept: dict[float, str] = {}
    for x in wanted:
        if x not in kept and all(abs(x - other) >= room for other in kept):
            kept[x] = by_position[x]
    return dict(sorted(kept.items()))

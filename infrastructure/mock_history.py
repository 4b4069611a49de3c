"""Day-by-day mock histories: one dated snapshot of A-E per day, following a scenario over time.

drift: the match share slides from ~80 % toward ~60 %; failure: ~80 %, then a sudden drop to ~50 % mid-way;
recovery: ~50 % at first, then back to ~75 % and up; normal: ~80 % throughout.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from keysync.infrastructure.mockdata import DEFAULT_AS_OF, generate


def share_on_day(scenario: str, day: int, days: int) -> float:
    """The match share of day ``day`` (0-based) of a ``days``-day history."""
    t = day / max(days - 1, 1)
    if scenario == "drift":
        return 0.80 - 0.20 * t
    if scenario == "failure":
        return 0.80 if t < 0.5 else 0.50
    if scenario == "recovery":
        return 0.50 if t < 0.25 else 0.75 + 0.05 * (t - 0.25) / 0.75
    return 0.80


def generate_history(
    root: Path, *, days: int, scenario: str = "normal", as_of: datetime | None = None, **options: Any
) -> dict[str, dict[str, Path]]:
    """Write ``root/YYYY-MM-DD/{A..E}.csv`` for the ``days`` days ending on ``as_of``'s date; return
    date -> (system -> file). ``options`` go to ``mockdata.generate`` (keys, seed, corruption_rate, kind...).
    The same seed keeps the same keys across days, so snapshots change gradually."""
    if days < 1:
        raise ValueError(f"days must be an integer >= 1; got {days!r}")
    end = as_of or DEFAULT_AS_OF
    written = {}
    for day in range(days):
        moment = end - timedelta(days=days - 1 - day)
        folder = Path(root) / moment.date().isoformat()
        written[folder.name] = generate(
            folder, scenario=scenario, as_of=moment, match_share=share_on_day(scenario, day, days), **options
        )
    return written

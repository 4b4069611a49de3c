"""What mock data can be asked for: on their own, so that the command line can offer them as choices without
loading the generator (numpy, pyarrow)."""

from __future__ import annotations

from datetime import UTC, datetime

SCENARIOS = ("normal", "drift", "failure", "recovery")
DEFAULT_AS_OF = datetime(2026, 1, 1, tzinfo=UTC)  # the date the data describes, unless told another

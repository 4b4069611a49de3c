"""A master key's statuses, Proposed -> Active -> Deprecated: on their own, so that the command line can offer
them as choices without loading the registry (and the engine it needs)."""

from __future__ import annotations

PROPOSED, ACTIVE, DEPRECATED = "Proposed", "Active", "Deprecated"
STATUSES = (PROPOSED, ACTIVE, DEPRECATED)

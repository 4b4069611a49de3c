"""What the application needs from the outside world, stated as small interfaces."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from keysync.domain.observations import Fingerprint, SourceSnapshot


class SourceReader(Protocol):
    """Reads one system's export (keysync.infrastructure.sources.read_source): with ``keep_lines``, hashing its
    lines too; given ``since`` (an earlier export's snapshot, read with its lines), parsing only what changed."""

    def __call__(
        self,
        system: str,
        path: Path,
        kind: str,
        *,
        max_key_length: int,
        keep_lines: bool = False,
        since: SourceSnapshot | None = None,
    ) -> SourceSnapshot: ...


class ExportKeeping(Protocol):
    """Keeps beside the store the snapshot a run recorded for each system, with its lines, for the next incremental
    run (keysync.infrastructure.export_cache): a cache of what the log holds."""

    def kept(self, holder: str, system: str, fingerprint: Fingerprint | None) -> SourceSnapshot | None: ...

    def normalized(self, holder: str, system: str, rules: str) -> Any | None:
        """The keys of what ``kept`` gives, normalized under ``rules`` (their options as JSON), if kept so."""

    def stage(self, system: str, rules: str, normalized: Any) -> Any:
        """``normalized`` kept out of memory until ``keep`` takes it (the same keys, memory-mapped)."""

    def keep(self, holder: str, snapshot: SourceSnapshot, normalized: tuple[str, Any] | None = None) -> None:
        """Keep ``snapshot``, and its keys normalized under rules (options as JSON, an Arrow array) if given."""


# Enter to wait until the export at a path may be read beside the ones being read (a memory budget).
ReadTurn = Callable[[Path], AbstractContextManager[None]]


class RowSpill(Protocol):
    """Where a run keeps the rows it read, out of the process's memory (keysync.infrastructure.spill)."""

    def release(self) -> None:
        """Give back the memory the kept rows occupy now; they stay readable."""

    def turn(self, path: Path) -> AbstractContextManager[None]:
        """Wait until the export at ``path`` may be read beside the ones being read; held while it is read."""

    def clear(self) -> None:
        """Forget every kept row: a run's rows are its scratch, and a new run clears an interrupted run's."""


# Enter to hold the store's run lock (raises RunInProgress when another run holds it); the value entered
# records the holder's run id, for the message a refused run prints.
RunLock = Callable[[], AbstractContextManager[Callable[[str], None]]]


class RunInProgress(Exception):
    """Another run holds the store's run lock; the message says which."""


class StoreUnavailable(Exception):
    """The event store cannot be reached or opened; the message names it and says why."""

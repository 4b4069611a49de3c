"""What the application needs from the outside world, stated as small interfaces."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from keysync.domain.observations import SourceSnapshot


class SourceReader(Protocol):
    def __call__(self, system: str, path: Path, kind: str, *, max_key_length: int) -> SourceSnapshot: ...


class RowHashing(Protocol):
    """Hashes an export's rows, and keeps the hashes of the rows a run recorded (keysync.infrastructure.row_hashes).
    Hashes are (n, 2) uint64 arrays; rows are Arrow tables of keysync.domain.observations.row_schema."""

    def of(self, rows: Any) -> Any: ...

    def kept(self, holder: str, system: str, rows: int) -> Any | None: ...

    def keep(self, holder: str, system: str, hashes: Any) -> None: ...


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

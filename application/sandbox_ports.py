"""What the sandbox's use cases need from the outside world: its five files, a folder of saved states, a lock."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from keysync.domain.observations import SourceSnapshot
from keysync.domain.sandbox_rows import Row


class Staged(Protocol):
    """Files written beside their targets, not yet in place: ``commit`` renames them in, ``discard`` drops them."""

    def commit(self) -> None: ...

    def discard(self) -> None: ...


class SourceFilesWriter(Protocol):
    def __call__(
        self,
        files: Mapping[str, Path],
        rows: Mapping[str, Sequence[Row]],
        expected: Mapping[str, SourceSnapshot],
        *,
        max_key_length: int,
    ) -> Staged:
        """Write each system's rows to a temporary file beside its target and check that the real reader reads
        back exactly ``expected``; raise SandboxFilesError (and leave nothing behind) if not."""
        ...


class StateFiles(Protocol):
    """The folder of saved states: one JSON document per state, named after it."""

    def path(self, name: str) -> Path: ...

    def stage(self, name: str, document: Mapping[str, Any]) -> Staged: ...

    def stage_delete(self, name: str) -> Staged: ...

    def read(self, name: str) -> dict[str, Any]: ...

    def read_file(self, path: Path) -> dict[str, Any]: ...

    def exists(self, name: str) -> bool: ...

    def names(self) -> list[str]: ...

    def size(self, name: str) -> int: ...

    def export(self, name: str, target: Path) -> Path: ...


# Enter to hold the sandbox for one command; raises SandboxBusy when another command holds it too long.
SandboxLock = Callable[[], AbstractContextManager[None]]


class SandboxFilesError(Exception):
    """The sandbox's files could not be written, or did not read back as expected; nothing was changed."""


class SandboxBusy(Exception):
    """Another sandbox command held the sandbox for too long; nothing was changed."""


class StateFileError(Exception):
    """A saved state that is missing, unreadable or not a sandbox state; the message says which and why."""

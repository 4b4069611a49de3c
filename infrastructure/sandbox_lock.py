"""One sandbox command at a time per store: an exclusive lock on a file beside the store, waited for.

Why a lock as well as optimistic concurrency: the event store refuses the second of two saves of the same version,
but the files are renamed in after the save, so without a lock a slower command could rename older files over a
newer command's. Holding the lock from load to rename keeps the files in the log's order; a command that waits
longer than the timeout gives up with a clear message and changes nothing.
The operating system drops the lock when its holder dies, even by SIGKILL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from keysync.application.sandbox_ports import SandboxBusy
from keysync.infrastructure.file_lock import waited_lock


@contextmanager
def sandbox_lock(path: Path, timeout_s: float) -> Iterator[None]:
    with waited_lock(path, timeout_s) as held:
        if not held:
            raise SandboxBusy(
                f"another sandbox command has held the sandbox for {timeout_s:g} s "
                "(processing.lock_timeout_s); nothing was changed, try again"
            )
        yield

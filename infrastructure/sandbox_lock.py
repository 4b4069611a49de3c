"""One sandbox command at a time per store: an exclusive lock on a file beside the store, waited for.

Why a lock as well as optimistic concurrency: the event store refuses the second of two saves of the same version,
but the files are renamed in after the save, so without a lock a slower command could rename older files over a
newer command's. Holding the lock from load to rename keeps the files in the log's order; a command that waits
longer than the timeout gives up with a clear message and changes nothing.
The operating system drops the lock when its holder dies, even by SIGKILL.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from keysync.application.sandbox_ports import SandboxBusy

_POLL_S = 0.01


@contextmanager
def sandbox_lock(path: Path, timeout_s: float) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise SandboxBusy(
                        f"another sandbox command has held the sandbox for {timeout_s:g} s "
                        "(processing.lock_timeout_s); nothing was changed, try again"
                    ) from None
                time.sleep(_POLL_S)  # flock has no timeout of its own: poll until the deadline
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)

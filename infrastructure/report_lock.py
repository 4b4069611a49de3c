"""One writer of a report folder at a time, on this machine.

Two processes that bring the reports up to date at once could otherwise finish in the wrong order, the older
files landing last. The lock is a file in the system's temporary folder named after the report folder (the report
folder holds reports only); the operating system drops it when its holder dies, even by SIGKILL.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_POLL_S = 0.05


@contextmanager
def report_folder_lock(folder: Path, timeout_s: float = 5.0) -> Iterator[bool]:
    """Hold the folder's lock; yields False, holding nothing, if another process held it for ``timeout_s``.
    (That process writes the reports again if the log moved while it wrote them.)"""
    name = hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:24]
    fd = os.open(Path(tempfile.gettempdir()) / f"keysync-reports-{name}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(_POLL_S)  # flock has no timeout of its own
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)

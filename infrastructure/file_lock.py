"""An exclusive lock on a file, waited for up to a time limit. The operating system drops it when its holder
dies, even by SIGKILL, so a crash never leaves it stuck."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_POLL_S = 0.01


@contextmanager
def waited_lock(path: Path, timeout_s: float) -> Iterator[bool]:
    """Hold the lock on ``path`` (created if need be); yields False, holding nothing, if another process held it
    throughout ``timeout_s``."""
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
                    yield False
                    return
                time.sleep(_POLL_S)  # flock has no timeout of its own: poll until the deadline
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)

"""One run at a time per store: an exclusive lock on a file beside the SQLite store.

The lock file also says who holds it, so the run that is refused can say which run is in progress.
The operating system drops the lock when its holder dies, even by SIGKILL, so a crash never leaves it stuck.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from keysync.application.ports import RunInProgress


@contextmanager
def file_lock(path: Path) -> Iterator[Callable[[str], None]]:
    """Hold the lock; the value yielded records the holder's run id for whoever is refused."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunInProgress(_holder(path)) from None
        holder = {"pid": os.getpid(), "started": datetime.now(UTC).isoformat(timespec="seconds")}

        def claim(run_id: str) -> None:
            holder["run_id"] = run_id
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder).encode(), 0)

        claim("")
        try:
            yield claim
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _holder(path: Path) -> str:
    try:
        holder = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        holder = {}
    return (
        f"another run is in progress (run_id {holder.get('run_id') or '?'}, started {holder.get('started', '?')}, "
        f"process {holder.get('pid', '?')}); "
        "try again when it has finished"
    )

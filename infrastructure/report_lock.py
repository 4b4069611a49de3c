"""One writer of a report folder at a time, on this machine.

Two processes that bring the reports up to date at once could otherwise finish in the wrong order, the older
files landing last. The lock is a file in the system's temporary folder named after the report folder (the report
folder holds reports only); the operating system drops it when its holder dies, even by SIGKILL.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from keysync.infrastructure.file_lock import waited_lock


@contextmanager
def report_folder_lock(folder: Path, timeout_s: float = 5.0) -> Iterator[bool]:
    """Hold the folder's lock; yields False, holding nothing, if another process held it for ``timeout_s``.
    (That process writes the reports again if the log moved while it wrote them.)"""
    name = hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:24]
    with waited_lock(Path(tempfile.gettempdir()) / f"keysync-reports-{name}.lock", timeout_s) as held:
        yield held

"""A source file's fingerprint (size, modification time, sha256 of its bytes) without parsing it, so that an
incremental run can tell an unchanged export from a changed one at the cost of one sequential read."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from keysync.domain.observations import Fingerprint

_CHUNK = 1 << 20


def file_fingerprint(path: Path) -> Fingerprint | None:
    """The file's fingerprint, the same as its reader records; None when it cannot be read (the reader then
    says why)."""
    digest = hashlib.sha256()
    try:
        with Path(path).open("rb") as f:
            status = os.fstat(f.fileno())
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except OSError:
        return None
    return Fingerprint(size=status.st_size, mtime_ns=status.st_mtime_ns, sha256=digest.hexdigest())

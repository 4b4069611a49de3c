"""A source file's fingerprint (size, modification time, sha256 of its bytes) without parsing it, so that an
incremental run can tell an unchanged export from a changed one at the cost of a stat, or of one sequential
read when the file was written again."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from keysync.domain.observations import Fingerprint

_CHUNK = 1 << 20


def file_fingerprint(path: Path, known: Fingerprint | None = None) -> Fingerprint | None:
    """The file's fingerprint, the same as its reader records; None when it cannot be read (the reader then
    says why). A file whose size and modification time are ``known``'s is taken to be ``known`` unread."""
    digest = hashlib.sha256()
    try:
        with Path(path).open("rb") as f:
            status = os.fstat(f.fileno())
            if known is not None and (status.st_size, status.st_mtime_ns) == (known.size, known.mtime_ns):
                return known
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except OSError:
        return None
    return Fingerprint(size=status.st_size, mtime_ns=status.st_mtime_ns, sha256=digest.hexdigest())

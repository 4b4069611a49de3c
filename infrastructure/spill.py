"""The rows a run has read, kept in files instead of the process's memory.

A run holds every system's rows until its reports are written, but each phase touches only part of them: the
comparison reads the key column, the recording reads each column once, and the reports take a few rows of the
others. So as soon as an export is read, its rows are written to an uncompressed Arrow IPC file (at the speed
of copying memory) and used from there, memory-mapped: Arrow reads the columns in place. ``release`` then hands
back the pages a phase touched: they stay in the operating system's file cache, not in this process, and a later
touch maps them again. The files are a run's scratch, in a folder of the process's own: deleted when the run
ends, and by the next run when a crash left them.

Reading is what costs the most memory (the file's bytes and the parsed table at once, about four times the
file's size), so exports are read in parallel only while the files being read fit ``read_budget`` bytes
together; a larger export is read alone.
"""

from __future__ import annotations

import logging
import mmap
import os
import shutil
import threading
import uuid
from pathlib import Path

import attrs

from keysync.application.ports import SourceReader
from keysync.domain.observations import SourceSnapshot

log = logging.getLogger("keysync")

SPILL_ROWS = 200_000  # smaller exports stay in memory: writing them out would cost more than it saves
READ_BUDGET = 512 * 2**20  # bytes of export files read at once
_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)  # where the system has no such advice, the pages stay mapped


class SpillingReader:
    """A SourceReader that reads with ``read``, at most ``read_budget`` bytes of files at a time, and keeps the
    rows of each export of ``spill_rows`` rows or more in a file under ``folder``."""

    def __init__(
        self, read: SourceReader, folder: Path, *, spill_rows: int | None = None, read_budget: int | None = None
    ):
        self.read, self.parent = read, folder
        self.folder = folder / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.spill_rows = SPILL_ROWS if spill_rows is None else spill_rows
        self.read_budget = READ_BUDGET if read_budget is None else read_budget
        self._maps: list[mmap.mmap] = []
        self._reading = 0  # bytes of the files being read now
        self._turn = threading.Condition()

    def __call__(self, system: str, path: Path, kind: str, *, max_key_length: int) -> SourceSnapshot:
        size = _size(path)
        with self._turn:  # a file that fits no budget is read alone
            self._turn.wait_for(lambda: not self._reading or self._reading + size <= self.read_budget)
            self._reading += size
        try:
            snapshot = self.read(system, path, kind, max_key_length=max_key_length)
        finally:
            with self._turn:
                self._reading -= size
                self._turn.notify_all()
        if len(snapshot) < self.spill_rows:
            return snapshot
        try:
            return self._kept(snapshot)
        except OSError as error:  # a full disk, a folder that cannot be written: the rows stay in memory
            log.warning("System %s: its rows stay in memory, as they could not be kept in %s: %s",
                        snapshot.system, self.folder, error)  # fmt: skip
            return snapshot

    def _kept(self, snapshot: SourceSnapshot) -> SourceSnapshot:
        import pyarrow as pa
        import pyarrow.ipc as ipc

        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{snapshot.system}-{uuid.uuid4().hex}.arrow"
        try:
            with ipc.new_file(path, snapshot.rows.schema) as writer:
                writer.write_table(snapshot.rows, max_chunksize=len(snapshot))  # one chunk per column, as before
        except BaseException:
            path.unlink(missing_ok=True)  # half a file helps no one, and a full disk needs its space back
            raise
        with path.open("rb") as handle:
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        with self._turn:
            self._maps.append(mapped)
        rows = ipc.open_file(pa.py_buffer(mapped)).read_all()  # zero copy: the columns point into the map
        return attrs.evolve(snapshot, rows=rows)

    def release(self) -> None:
        """Hand the pages of the kept rows back to the operating system's file cache; the rows stay readable."""
        with self._turn:
            for mapped in self._maps:
                if _DONTNEED is not None:
                    mapped.madvise(_DONTNEED)

    def clear(self) -> None:
        """Delete the kept files (rows still mapped stay readable until dropped), and those of processes that
        ended without deleting theirs."""
        with self._turn:
            self.release()
            self._maps.clear()  # each map closes once the last table using it is gone
        shutil.rmtree(self.folder, ignore_errors=True)
        for left in self.parent.glob("*-*"):
            if left.is_dir() and not _alive(left.name.split("-")[0]):
                shutil.rmtree(left, ignore_errors=True)


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (ValueError, OSError):
        return True  # not ours to judge: leave it
    return True


def _size(path: Path) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0  # the reader says what is wrong with it

"""The rows a run has read, kept in files instead of the process's memory.

A run holds every system's rows until its reports are written, but each phase touches only part of them: the
comparison reads the key column, the recording reads each column once, and the reports take a few rows of the
others. So as soon as an export is read, its rows are written to an uncompressed Arrow IPC file (at the speed
of copying memory) and used from there, memory-mapped: Arrow reads the columns in place. ``release`` then hands
back the pages a phase touched: they stay in the operating system's file cache, not in this process, and a later
touch maps them again.

The files are a run's scratch, in a folder of the process's own (named by host and process), beside a lock file
the process holds while it lives: deleted when the run ends, and by a later run once no process holds their
lock (a crash's; process ids alone repeat, in containers above all).

Reading is what costs the most memory (the file's bytes and the parsed table at once, about four times the
file's size), so exports are read in parallel only while the files being read fit ``read_budget`` bytes
together; a larger export is read alone. A read waits for its turn before its time limit starts, and gives the
turn back when the run gives up on it, even if it never returns.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import shutil
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

import attrs

from keysync.application.ports import SourceReader
from keysync.domain.observations import ExportLines, SourceSnapshot

log = logging.getLogger("keysync")

SPILL_ROWS = 200_000  # smaller exports stay in memory: writing them out would cost more than it saves
READ_BUDGET = 512 * 2**20  # bytes of export files read at once
_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)  # where the system has no such advice, the pages stay mapped
_LOCK = ".lock"


class SpillingReader:
    """A SourceReader that reads with ``read`` and keeps the rows of each export of ``spill_rows`` rows or more in
    a file under ``folder``; ``turn(path)`` holds a share of ``read_budget`` while a file is read."""

    def __init__(
        self, read: SourceReader, folder: Path, *, spill_rows: int | None = None, read_budget: int | None = None
    ):
        self.read, self.parent = read, folder
        name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.folder, self.lock = folder / name, folder / (name + _LOCK)
        self.spill_rows = SPILL_ROWS if spill_rows is None else spill_rows
        self.read_budget = READ_BUDGET if read_budget is None else read_budget
        self._maps: list[mmap.mmap] = []
        self._held: IO[bytes] | None = None  # the lock file, locked while this process keeps files
        self._reading = 0  # bytes of the files being read now
        self._run = 0  # which run's reads these are: a read the last run gave up on keeps nothing
        self._turn = threading.Condition()
        self._files: dict[str, KeptFiles] = {}  # system -> its latest rows kept, and their files

    @contextmanager
    def turn(self, path: Path) -> Iterator[None]:
        """Wait until ``path`` fits the read budget beside the files being read (a file that fits no budget is
        read alone), and hold its share until the block ends."""
        size = _size(path)
        with self._turn:
            self._turn.wait_for(lambda: not self._reading or self._reading + size <= self.read_budget)
            self._reading += size
        try:
            yield
        finally:
            with self._turn:
                self._reading -= size
                self._turn.notify_all()

    def __call__(self, system: str, path: Path, kind: str, **options: Any) -> SourceSnapshot:
        run = self._run
        snapshot = self.read(system, path, kind, **options)
        if len(snapshot) < self.spill_rows:
            return snapshot
        try:
            return self._kept(snapshot, run)
        except OSError as error:  # a full disk, a folder that cannot be written: the rows stay in memory
            log.warning("System %s: its rows stay in memory, as they could not be kept in %s: %s",
                        snapshot.system, self.folder, error)  # fmt: skip
            return snapshot

    def _kept(self, snapshot: SourceSnapshot, run: int) -> SourceSnapshot:
        """The snapshot with its rows in a file, unless the run it was read for has ended (then as it is)."""
        import pyarrow as pa
        import pyarrow.ipc as ipc

        with self._turn:
            if run != self._run:
                return snapshot
            self._claim()
        path = self.folder / f"{snapshot.system}-{uuid.uuid4().hex}.arrow"
        lines_path = path.with_suffix(".lines.npy")
        try:
            with ipc.new_file(path, snapshot.rows.schema) as writer:
                writer.write_table(snapshot.rows, max_chunksize=len(snapshot))  # one chunk per column, as before
            lines = _kept_lines(snapshot.export_lines, lines_path)
        except BaseException:
            path.unlink(missing_ok=True)  # half a file helps no one, and a full disk needs its space back
            lines_path.unlink(missing_ok=True)
            raise
        with path.open("rb") as handle:
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        with self._turn:
            if run != self._run:  # the run ended while the file was written
                mapped.close()
                path.unlink(missing_ok=True)
                return snapshot
            self._maps.append(mapped)
            rows = ipc.open_file(pa.py_buffer(mapped)).read_all()  # zero copy: the columns point into the map
            self._files[snapshot.system] = KeptFiles(rows, path, lines, lines_path if lines is not None else None)
        return attrs.evolve(snapshot, rows=rows, export_lines=lines)

    def adopt(self, mapped: mmap.mmap) -> None:
        """Give back the pages of ``mapped`` too whenever the run gives back its own (rows kept elsewhere)."""
        with self._turn:
            self._maps.append(mapped)

    def files_of(self, snapshot: SourceSnapshot) -> tuple[Path | None, Path | None]:
        """The files holding ``snapshot``'s rows (an Arrow IPC file) and its line hashes (an (n, 3) uint64 .npy:
        the two hashes and whether the line is blank), where this reader kept them in files."""
        with self._turn:
            kept = self._files.get(snapshot.system)
        if kept is None:
            return None, None
        same_lines = kept.lines is not None and kept.lines is snapshot.export_lines
        return kept.rows_file if kept.rows is snapshot.rows else None, kept.lines_file if same_lines else None

    def _claim(self) -> None:
        """Lock this process's lock file (before its folder exists: a folder without a held lock is a leftover)."""
        with self._turn:
            if self._held is None:
                self.parent.mkdir(parents=True, exist_ok=True)
                held = self.lock.open("ab")
                fcntl.flock(held, fcntl.LOCK_EX)
                self._held = held
            self.folder.mkdir(exist_ok=True)

    def release(self) -> None:
        """Hand the pages of the kept rows back to the operating system's file cache; the rows stay readable."""
        with self._turn:
            for mapped in self._maps:
                if _DONTNEED is not None:
                    mapped.madvise(_DONTNEED)

    def clear(self) -> None:
        """Delete the kept files (rows still mapped stay readable until dropped), and those of processes that
        ended without deleting theirs. A read still under way keeps nothing once it returns."""
        with self._turn:
            self.release()
            self._maps.clear()  # each map closes once the last table using it is gone
            self._files.clear()
            self._run += 1
            shutil.rmtree(self.folder, ignore_errors=True)
            if self._held is not None:
                self.lock.unlink(missing_ok=True)
                self._held.close()
                self._held = None
        for left in _leftovers(self.parent):
            shutil.rmtree(left, ignore_errors=True)


@attrs.frozen
class KeptFiles:
    rows: object
    rows_file: Path
    lines: ExportLines | None
    lines_file: Path | None


def _kept_lines(lines: ExportLines | None, path: Path) -> ExportLines | None:
    """The line hashes in a file (the export cache's format, so that it can link it), used from there as the rows
    are."""
    from keysync.infrastructure.export_cache import load_lines, save_lines

    if lines is None:
        return None
    save_lines(path, lines)
    return load_lines(path, lines.spanning)


def _leftovers(parent: Path) -> Iterator[Path]:
    """The folders under ``parent`` whose lock no process holds, each while its lock is taken here."""
    if not parent.is_dir():
        return
    for folder in [p for p in parent.iterdir() if p.is_dir()]:
        lock = folder.with_name(folder.name + _LOCK)
        try:
            with lock.open("ab") as held:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
                yield folder
                lock.unlink(missing_ok=True)
        except OSError:  # held by a live process (BlockingIOError), or not ours to open: leave it
            continue


def _size(path: Path, within: float = 5.0) -> int:
    """The file's size, or 0 if it cannot be had within ``within`` seconds (a hung network share: the read's own
    time limit deals with it) or at all (the reader says what is wrong)."""
    found: list[int] = []

    def look() -> None:
        with suppress(OSError):
            found.append(Path(path).stat().st_size)

    looking = threading.Thread(target=look, daemon=True)
    looking.start()
    looking.join(within)
    return found[0] if found else 0

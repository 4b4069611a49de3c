"""Each system's latest recorded export, kept beside the store for the next incremental run.

What a run recorded for a system (the rows, the rejected rows, the keys normalized under the run's rules and, when
the store is run incrementally, the line hashes of keysync.infrastructure.line_changes) is kept in a folder named by
the system and the run. The next incremental run takes an unchanged export's rows, and their keys normalized, from
there instead of decoding them from the log and normalizing them again, and reads a changed export as the lines
that changed since, normalizing only the keys of the lines added, when their hashes are there (a full run hashes
lines only after an incremental run: it costs a tenth of its time and memory). It is a cache: the log holds the
same rows; a folder that is missing, damaged or of another export (its fingerprint) is not used, and the rows come
from the log.

The rows are an uncompressed Arrow IPC file, used memory-mapped: reading them costs what touching them does.
Rows a run kept out of memory while it ran (keysync.infrastructure.spill) are in such a file already: it is
linked, not written again. The run gives the pages it touched of these files back between its steps, as it does
those of its own (``adopt``).
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from keysync.domain.observations import ExportLines, Fingerprint, RejectedRow, SourceSnapshot

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger("keysync")

_ROWS, _REJECTED, _LINES, _ABOUT = "rows.arrow", "rejected.arrow", "lines.npy", "about.json"
_NORMALIZED = "normalized.arrow"  # the keys normalized, under the rules its schema's metadata names


class ExportCache:
    """Keeps in ``folder`` the snapshot a run recorded for each system, with its lines. ``files_of`` says which
    files hold a snapshot's rows and line hashes already, if any do (in the formats kept here)."""

    def __init__(
        self,
        folder: Path,
        files_of: Callable[[SourceSnapshot], tuple[Path | None, Path | None]] = lambda _snapshot: (None, None),
        adopt: Callable[[mmap.mmap], None] = lambda _mapped: None,
    ):
        self.folder = folder
        self.files_of = files_of
        self.adopt = adopt  # hands each file mapped to what gives the pages back between a run's steps
        self._staged: dict[str, tuple[pa.Array, Path]] = {}  # system -> its keys normalized, staged, and where

    def kept(self, holder: str, system: str, fingerprint: Fingerprint | None) -> SourceSnapshot | None:
        """The snapshot run ``holder`` (an originator id) recorded for ``system``, if kept, and of the export with
        ``fingerprint``."""
        import pyarrow as pa
        import pyarrow.ipc as ipc

        place = self._place(holder, system)
        try:
            about = json.loads((place / _ABOUT).read_text(encoding="utf-8"))
            rows = ipc.open_file(self._mapped(place / _ROWS)).read_all()  # zero copy: the columns stay mapped
            rejected = ipc.open_file(pa.memory_map(str(place / _REJECTED))).read_all()
            lines = load_lines(place / _LINES, about["spanning"]) if about["lines"] is not None else None
        except (OSError, ValueError, KeyError, TypeError, pa.ArrowException):
            return None
        kept_print = Fingerprint(*about["fingerprint"]) if about.get("fingerprint") else None
        if fingerprint is None or kept_print is None or not kept_print.same_content(fingerprint):
            return None
        if lines is not None and about["lines"] != len(lines):
            return None
        found = [RejectedRow(system, about["file"], *row.values()) for row in rejected.to_pylist()]
        return SourceSnapshot(system, about["file"], about["rows_read"], rows, found, fingerprint, export_lines=lines)

    def normalized(self, holder: str, system: str, rules: str) -> pa.Array | None:
        """The keys of what ``kept`` gives, normalized under ``rules`` (their options as JSON), if kept so."""
        import pyarrow as pa
        import pyarrow.ipc as ipc

        try:
            table = ipc.open_file(self._mapped(self._place(holder, system) / _NORMALIZED)).read_all()
        except (OSError, ValueError, pa.ArrowException):
            return None
        metadata = table.schema.metadata or {}
        if metadata.get(b"rules") != rules.encode() or table.num_columns != 1:
            return None
        column = table.column(0)
        return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()

    def stage(self, system: str, rules: str, normalized: pa.Array) -> pa.Array:
        """``normalized`` (a system's keys normalized under ``rules``) written where ``keep`` will take them from,
        and used from there, memory-mapped: a run holds every system's keys until it keeps them, which at ten million
        keys per system would cost the memory of a system's rows."""
        import pyarrow as pa
        import pyarrow.ipc as ipc

        path = self.folder / f".{system}-{uuid.uuid4().hex}.normalized"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            _write_normalized(path, rules, normalized)
            table = ipc.open_file(self._mapped(path)).read_all()
        except (OSError, ValueError, pa.ArrowException) as error:
            path.unlink(missing_ok=True)
            log.warning("System %s's keys normalized stay in memory (%s: %s)", system, self.folder, error)
            return normalized
        staged = table.column(0).chunk(0)
        self._staged[system] = (staged, path)
        return staged

    def keep(self, holder: str, snapshot: SourceSnapshot, normalized: tuple[str, pa.Array] | None = None) -> None:
        """Keep ``snapshot`` (with its lines, if it was read with them) as what run ``holder`` recorded for its
        system, in place of the system's earlier one. A cache that cannot be written is only a slower next run."""
        import pyarrow as pa
        import pyarrow.ipc as ipc

        lines, system = snapshot.export_lines, snapshot.system
        if snapshot.fingerprint is None:
            self.forget(system)  # what is kept is no longer the system's latest
            return
        place = self._place(holder, system)
        part = self.folder / f".{system}-{uuid.uuid4().hex}.part"
        fingerprint = snapshot.fingerprint
        about = {
            "file": snapshot.file,
            "rows_read": snapshot.rows_read,
            "fingerprint": [fingerprint.size, fingerprint.mtime_ns, fingerprint.sha256],
            "lines": len(lines) if lines is not None else None,
            "spanning": lines.spanning if lines is not None else None,
        }
        rejected = pa.table(
            {
                "line": pa.array([r.line for r in snapshot.rejected], pa.int64()),
                "severity": pa.array([r.severity for r in snapshot.rejected], pa.string()),
                "reason": pa.array([r.reason for r in snapshot.rejected], pa.string()),
                "raw": pa.array([r.raw for r in snapshot.rejected], pa.string()),
            }
        )
        try:
            part.mkdir(parents=True)
            rows_file, lines_file = self.files_of(snapshot)
            self._keep_rows(snapshot, part / _ROWS, rows_file)
            with ipc.new_file(part / _REJECTED, rejected.schema) as writer:
                writer.write_table(rejected)
            if lines is not None and not _linked(lines_file, part / _LINES):
                save_lines(part / _LINES, lines)
            staged = self._staged.pop(system, (None, None))
            if normalized is not None and len(normalized[1]) == len(snapshot):
                same = staged[0] is normalized[1]  # the keys as staged: their file is linked, not written again
                if not (same and _linked(staged[1], part / _NORMALIZED)):
                    _write_normalized(part / _NORMALIZED, *normalized)
            (part / _ABOUT).write_text(json.dumps(about), encoding="utf-8")
            self.forget(system)
            os.replace(part, place)
            for left in self.folder.glob(f".{system}-*.part"):  # an interrupted run's
                shutil.rmtree(left, ignore_errors=True)
            for left in self.folder.glob(f".{system}-*.normalized"):
                left.unlink(missing_ok=True)
        except OSError as error:
            log.warning("System %s's rows were not kept in %s: %s", system, self.folder, error)
        finally:
            shutil.rmtree(part, ignore_errors=True)

    def _mapped(self, path: Path) -> pa.Buffer:
        import pyarrow as pa

        with path.open("rb") as handle:
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        self.adopt(mapped)
        return pa.py_buffer(mapped)

    def _keep_rows(self, snapshot: SourceSnapshot, path: Path, kept: Path | None) -> None:
        import pyarrow.ipc as ipc

        if not _linked(kept, path):
            with ipc.new_file(path, snapshot.rows.schema) as writer:
                writer.write_table(snapshot.rows, max_chunksize=max(len(snapshot), 1))

    def forget(self, system: str) -> None:
        """Delete what is kept for ``system``."""
        if self.folder.is_dir():
            for kept in self.folder.glob(f"{system}-*"):
                shutil.rmtree(kept, ignore_errors=True)

    def _place(self, holder: str, system: str) -> Path:
        return self.folder / f"{system}-{holder}"


def _linked(kept: Path | None, path: Path) -> bool:
    """Whether the file ``kept`` (if any) is now also at ``path``: no on another file system, or one without links."""
    if kept is None:
        return False
    try:
        os.link(kept, path)
    except OSError:
        return False
    return True


def _write_normalized(path: Path, rules: str, normalized: pa.Array) -> None:
    import pyarrow as pa
    import pyarrow.ipc as ipc

    keys = pa.table({"normalized": normalized}).replace_schema_metadata({"rules": rules})
    with ipc.new_file(path, keys.schema) as writer:
        writer.write_table(keys, max_chunksize=max(len(normalized), 1))


def save_lines(path: Path, lines: ExportLines) -> None:
    """``lines`` as an (n, 3) uint64 .npy file: each line's two hashes and whether it is blank."""
    import numpy as np

    np.save(path, np.column_stack([lines.hashes, lines.blank.astype(np.uint64)]), allow_pickle=False)


def load_lines(path: Path, spanning: bool) -> ExportLines:
    """The lines ``save_lines`` wrote, the hashes used from the file (memory-mapped); ValueError if it is not such a
    file."""
    import numpy as np

    kept = np.load(path, mmap_mode="r", allow_pickle=False)
    if kept.ndim != 2 or kept.shape[1] != 3 or kept.dtype != np.uint64:
        raise ValueError(f"{path}: not an export's line hashes")
    return ExportLines(kept[:, :2], kept[:, 2] != 0, spanning)

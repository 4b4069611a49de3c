"""The rows each system's export had in the latest incremental run, kept in a file per system beside the store,
so that the next `keysync run -m incremental` (a new process) builds on them without reading them back from the
event log, where they may be a whole observation plus a chain of deltas.

A run's rows never change once its events are stored, so a file naming the run that holds them (``holder``) is
good for as long as that run is the one the next run builds on; any other file, or one that cannot be read, is
passed over and the rows come from the log, as without the file. The log stays the only record: these files
may be deleted at any time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

import attrs
import pyarrow as pa
import pyarrow.ipc as ipc

from keysync.domain.observations import Fingerprint, RejectedRow, SourceSnapshot
from keysync.infrastructure.report_files import temporary_beside

log = logging.getLogger("keysync")

_TEXT = ("keys", "entity_types", "location_refs", "last_seen_at")
_HOLDER = b"keysync.holder"  # "<run>/<system>": checked before anything else is read
_META = b"keysync.rows"
_COMPRESSED = ipc.IpcWriteOptions(compression="zstd")  # a third of the size, for a few milliseconds


class RowFiles:
    """``load(holder, system)`` and ``save(holder, snapshot)`` for keysync.application.store.KeySyncStore."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._holders: dict[str, str] = {}  # system -> holder of the file written or read last

    def load(self, holder: str, system: str) -> SourceSnapshot | None:
        """The rows of ``system`` that run ``holder`` holds, if this folder has them."""
        path = self._path(system)
        try:
            with pa.memory_map(str(path)) as source:
                reader = ipc.open_file(source)
                found = reader.schema.metadata or {}
                if found.get(_HOLDER) != f"{holder}/{system}".encode():
                    return None
                table = reader.read_all()
            snapshot = _snapshot(json.loads(found[_META]), table)
        except FileNotFoundError:
            return None
        except (OSError, KeyError, ValueError, TypeError, pa.ArrowException) as error:
            log.debug("passing over %s: %s", path, error)
            return None
        self._holders[system] = holder
        return snapshot

    def save(self, holder: str, snapshot: SourceSnapshot) -> None:
        """Keep ``snapshot`` as the rows run ``holder`` holds for its system (written only when the file holds
        another run's). A file that cannot be written is no error: the next run reads the log instead."""
        system = snapshot.system
        if self._holders.get(system) == holder:
            return
        meta = {
            "holder": holder,
            "system": system,
            "file": snapshot.file,
            "rows_read": snapshot.rows_read,
            "fingerprint": None if snapshot.fingerprint is None else list(attrs.astuple(snapshot.fingerprint)),
            "rejected": [[r.line, r.severity, r.reason, r.raw] for r in snapshot.rejected],
        }
        columns = {name: pa.array(getattr(snapshot, name), pa.string()) for name in _TEXT}
        table = pa.table({**columns, "lines": pa.array(snapshot.lines, pa.int64())})
        table = table.replace_schema_metadata({_HOLDER: f"{holder}/{system}", _META: json.dumps(meta)})
        path = self._path(system)
        temporary: Path | None = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, temporary = temporary_beside(path)  # also clears what a killed process left there
            with os.fdopen(fd, "wb") as sink, ipc.new_file(sink, table.schema, options=_COMPRESSED) as writer:
                writer.write_table(table)
            os.replace(temporary, path)  # a reader sees the old file or the new one, never half of one
        except OSError as error:
            if temporary is not None:
                with contextlib.suppress(OSError):
                    temporary.unlink(missing_ok=True)
            log.debug("could not keep %s's rows in %s: %s", system, path, error)
            return
        self._holders[system] = holder

    def _path(self, system: str) -> Path:
        return self.folder / f"{system}.arrow"


def _snapshot(meta: dict, table: pa.Table) -> SourceSnapshot:
    system, file = meta["system"], meta["file"]
    columns = {name: table.column(name).to_pylist() for name in (*_TEXT, "lines")}
    fingerprint = meta["fingerprint"]
    return SourceSnapshot(
        system=system,
        file=file,
        rows_read=int(meta["rows_read"]),
        **columns,
        rejected=[RejectedRow(system, file, *row) for row in meta["rejected"]],
        fingerprint=None if fingerprint is None else Fingerprint(*fingerprint),
    )

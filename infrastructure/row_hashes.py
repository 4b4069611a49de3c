"""Row hashes for incremental runs: what tells which rows of a changed export are new and which are gone.

A row's hash is two of DuckDB's 64-bit hashes: one combining its four values' hashes, one of the values joined
into one text; two rows pair off only if both agree (an md5 of the row took three times as long). The hashes of
the rows a run recorded for a system are kept beside the store, one file per system, named by that run: the next
incremental run compares the export it reads with them instead of reading the rows back from the log and hashing
them again. It is a cache: a missing or stale file (another run's, another row count) is not used, and the hashes
are worked out from the log instead.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from keysync.domain.observations import ROW_COLUMNS

if TYPE_CHECKING:  # loaded by the runs that read an export, not by one that finds nothing changed
    import numpy as np
    import pyarrow as pa

log = logging.getLogger("keysync")

_VALUES = ROW_COLUMNS[:-1]  # the four values, not the line: a row moved to another line is the same row
_HASHES = f"hash({', '.join(_VALUES)}) AS a, hash(concat_ws(chr(31), {', '.join(_VALUES)})) AS b"


class RowHashes:
    """Hashes rows, and keeps each system's latest recorded hashes in ``folder``."""

    def __init__(self, folder: Path):
        self.folder = folder

    def of(self, rows: pa.Table) -> np.ndarray:
        """Each row's two hashes, as an (n, 2) uint64 array."""
        import duckdb
        import numpy as np

        # One thread: the run hashes while it compares, and the comparison has the other core.
        with duckdb.connect(config={"threads": 1}) as connection:
            connection.register("export_rows", rows.select(list(_VALUES)))
            found = connection.sql(f"SELECT {_HASHES} FROM export_rows").to_arrow_table()
        hashes = np.empty((found.num_rows, 2), dtype=np.uint64)
        for i, name in enumerate(("a", "b")):
            hashes[:, i] = found.column(name).to_numpy()
        return hashes

    def kept(self, holder: str, system: str, rows: int) -> np.ndarray | None:
        """The hashes kept for the rows run ``holder`` recorded for ``system``, if they are there and as many."""
        import numpy as np

        try:
            hashes = np.load(self._path(holder, system), allow_pickle=False)
        except (OSError, ValueError):
            return None
        return hashes if hashes.shape == (rows, 2) and hashes.dtype == np.uint64 else None

    def keep(self, holder: str, system: str, hashes: np.ndarray) -> None:
        """Keep ``hashes`` as those of the rows run ``holder`` recorded for ``system``, in place of the system's
        earlier ones. A cache that cannot be written is only a slower next run."""
        import numpy as np

        path = self._path(holder, system)
        part = path.with_name(path.name + ".part")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with part.open("wb") as handle:
                np.save(handle, hashes, allow_pickle=False)
            os.replace(part, path)
            for other in self.folder.glob(f"{system}-*.npy"):
                if other != path:
                    other.unlink(missing_ok=True)
        except OSError as error:
            part.unlink(missing_ok=True)
            log.warning("the row hashes of System %s were not kept in %s: %s", system, self.folder, error)

    def _path(self, holder: str, system: str) -> Path:
        return self.folder / f"{system}-{holder}.npy"

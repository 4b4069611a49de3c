"""What a report folder shows, kept beside the reports (``.keysync-reports.json``): the log position they were
rendered at, the run whose reconciliation they hold and the rules they were rendered with. A folder can be
written by other stores' runs (``-o``) or by a dry run; the manifest, not the store, says what is in it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from keysync.infrastructure.report_files import ReportWriteError, temporary_beside

NAME = ".keysync-reports.json"


class FolderManifest:
    def read(self, folder: Path) -> dict[str, Any] | None:
        try:
            found = json.loads((folder / NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # none, or unreadable: the reports are rendered whole
        return found if isinstance(found, dict) else None

    def write(self, folder: Path, shown: dict[str, Any]) -> None:
        try:
            fd, temporary = temporary_beside(folder / NAME)
        except OSError as error:
            raise ReportWriteError(folder / NAME, error) from error
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(shown, handle, sort_keys=True)
            os.replace(temporary, folder / NAME)
        except BaseException as error:
            temporary.unlink(missing_ok=True)
            if isinstance(error, OSError):
                raise ReportWriteError(folder / NAME, error) from error
            raise

    def forget(self, folder: Path) -> None:
        try:
            (folder / NAME).unlink(missing_ok=True)
        except OSError as error:  # the folder is a file, say: no report can be written there either
            raise ReportWriteError(folder / NAME, error) from error

"""Saved sandbox states: one JSON file per state in a folder, written atomically; the same file is the portable
export format, so sharing a state is copying a file."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from keysync.application.sandbox_ports import StateFileError
from keysync.infrastructure.report_files import temporary_beside
from keysync.infrastructure.sandbox_files import StagedFiles

SUFFIX = ".json"
MAX_STATE_BYTES = 512 * 1024 * 1024  # a state file this big is not a sandbox state; refuse before parsing it


class StateFolder:
    """The states under ``folder``; names are checked by the caller (the domain's rule: no paths)."""

    def __init__(self, folder: Path):
        self.folder = folder

    def path(self, name: str) -> Path:
        return self.folder / f"{name}{SUFFIX}"

    def exists(self, name: str) -> bool:
        return self.path(name).is_file()

    def names(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(p.name[: -len(SUFFIX)] for p in self.folder.glob(f"*{SUFFIX}") if p.is_file())

    def size(self, name: str) -> int:
        return self.path(name).stat().st_size

    def stage(self, name: str, document: Mapping[str, Any]) -> StagedFiles:
        """Write the state to a temporary file beside its place; ``commit`` renames it in."""
        target = self.path(name)
        if target.exists() and not target.is_file():  # the rename after the save would fail: refuse before it
            raise StateFileError(f"cannot write state {name!r}: {target} exists and is not a file")
        temporary: Path | None = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = temporary_beside(target)  # removes the ones a killed command left
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(document, handle, ensure_ascii=False, separators=(",", ":"))
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as error:
            if temporary is not None:
                temporary.unlink(missing_ok=True)
            raise StateFileError(f"cannot write state {name!r} in {self.folder}: {error.strerror or error}") from error
        return StagedFiles([(temporary, target)])

    def stage_delete(self, name: str) -> StagedFiles:
        """A deletion to make once the log holds it: ``commit`` deletes the state, ``discard`` leaves it. Nothing
        is moved before: a process killed before the deletion is logged leaves the state where it was, and one
        killed just after leaves it there too, for a second delete-state (never hidden)."""
        path = self.path(name)
        if not path.is_file():
            raise StateFileError(f"no saved state {name!r} in {self.folder}")
        return _Deletion(path)

    def read(self, name: str) -> dict[str, Any]:
        path = self.path(name)
        if not path.is_file():
            known = ", ".join(self.names()) or "none saved yet"
            raise StateFileError(f"no saved state {name!r} in {self.folder} (states: {known})")
        return self.read_file(path)

    def read_file(self, path: Path) -> dict[str, Any]:
        """A state document: a JSON object (its content is checked by the application)."""
        try:
            if path.stat().st_size > MAX_STATE_BYTES:
                raise StateFileError(f"{path}: larger than {MAX_STATE_BYTES // 2**20} MiB, not a sandbox state")
            document = json.loads(path.read_bytes().decode("utf-8"))
        except FileNotFoundError as error:
            raise StateFileError(f"{path}: file not found") from error
        except OSError as error:
            raise StateFileError(f"{path}: cannot read it ({error.strerror or error})") from error
        except (UnicodeDecodeError, ValueError) as error:
            raise StateFileError(f"{path}: not a sandbox state (not UTF-8 JSON: {error})") from error
        if not isinstance(document, dict):
            raise StateFileError(f"{path}: not a sandbox state (not a JSON object)")
        return document

    def export(self, name: str, target: Path) -> Path:
        """Copy the state's file to ``target`` (a file, or a folder to put NAME.json in), atomically."""
        source = self.path(name)
        if not source.is_file():
            raise StateFileError(f"no saved state {name!r} in {self.folder}")
        if target.is_dir():
            target = target / source.name
        temporary: Path | None = None
        try:
            fd, temporary = temporary_beside(target)
            os.close(fd)
            shutil.copyfile(source, temporary)
            os.replace(temporary, target)
        except OSError as error:
            if temporary is not None:
                temporary.unlink(missing_ok=True)
            raise StateFileError(f"cannot export to {target}: {error.strerror or error}") from error
        return target


class _Deletion(StagedFiles):
    """A state to delete: committing deletes it, discarding leaves it as it is."""

    def __init__(self, path: Path):
        super().__init__([(path, path)])

    def commit(self) -> None:
        for path, _same in self.moves:
            try:
                path.unlink(missing_ok=True)
            except OSError as error:  # the deletion is logged: say that the file is still there, and why
                raise StateFileError(f"cannot delete {path} ({error.strerror or error}): delete it by hand") from error
        self.moves = []

    def discard(self) -> None:
        self.moves = []

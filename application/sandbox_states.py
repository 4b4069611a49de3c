"""A saved sandbox state: every system's rows under a name, as one portable JSON document.

The document is checked in full when it is read (format, name, systems, every row), so a damaged or hand-made
file is refused with the reason before it can reach the sandbox.
"""

from __future__ import annotations

from typing import Any

import attrs

from keysync.application.sandbox_ports import StateFileError
from keysync.domain.observations import SYSTEMS
from keysync.domain.sandbox import SandboxError, check_state_name
from keysync.domain.sandbox_rows import InvalidRowError, Row, checked_rows

FORMAT = "keysync-sandbox-state"
VERSION = 1
MAX_DESCRIPTION = 1000


class StateExistsError(StateFileError):
    def __init__(self, name: str):
        super().__init__(f"a state named {name!r} exists already: use --force to replace it")


@attrs.frozen
class SavedState:
    name: str
    description: str
    created_at: str
    actor: str
    systems: dict[str, list[Row]]

    @property
    def row_count(self) -> int:
        return sum(len(rows) for rows in self.systems.values())

    def document(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "description": self.description,
            "created_at": self.created_at,
            "actor": self.actor,
            "systems": self.systems,
        }

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "created_at": self.created_at,
            "actor": self.actor,
            "rows": self.row_count,
            "description": self.description,
        }


def parse_state(document: dict[str, Any], origin: str) -> SavedState:
    """A SavedState from a document; StateFileError naming ``origin`` and the problem if it is not one."""

    def fail(problem: str) -> StateFileError:
        return StateFileError(f"{origin}: not a usable sandbox state: {problem}")

    if document.get("format") != FORMAT or document.get("version") != VERSION:
        raise fail(f"expected format {FORMAT!r} version {VERSION}")
    texts = {field: document.get(field, "") for field in ("name", "description", "created_at", "actor")}
    for field, value in texts.items():
        if not isinstance(value, str):
            raise fail(f"{field} is not text")
    if len(texts["description"]) > MAX_DESCRIPTION:
        raise fail(f"description longer than {MAX_DESCRIPTION} characters")
    try:
        check_state_name(texts["name"])
    except SandboxError as error:
        raise fail(str(error)) from error
    systems = document.get("systems")
    if not isinstance(systems, dict) or sorted(systems) != list(SYSTEMS):
        raise fail(f"systems must hold exactly {', '.join(SYSTEMS)}")
    checked: dict[str, list[Row]] = {}
    for system in SYSTEMS:
        try:
            checked[system] = checked_rows(systems[system])
        except InvalidRowError as error:
            raise fail(f"systems.{system}: {error}") from error
    return SavedState(texts["name"], texts["description"], texts["created_at"], texts["actor"], checked)

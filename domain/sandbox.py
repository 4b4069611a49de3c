"""The sandbox: the rows of Systems A-E that people edit by hand to try reconciliation out.

Why one aggregate for all five systems: an operation often touches several systems at once (add a key to B and
C) and the five files must move together. One aggregate makes each operation one event, stored atomically, and
gives optimistic concurrency for free: of two commands that read the same version, the second save is refused.

Every operation is one batch event (never one per key) carrying who did it, when, and its change as a diff of
positioned rows (see ``sandbox_rows``). Undo appends ``OperationReverted`` with the inverse diff, redo appends
``OperationRestored`` with the original one: history is only ever added to.

Checks come first and raise a specific ``SandboxError``; only then is an event triggered.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any, NamedTuple
from uuid import UUID

import attrs
from eventsourcing.domain import Aggregate, event

from keysync.domain.ids import SANDBOX_ID
from keysync.domain.observations import SYSTEMS
from keysync.domain.sandbox_rows import (
    DEFAULT_KEYS,
    DEFAULT_SEED,
    InvalidRowError,
    Row,
    apply_diff,
    baseline,
    entity_type_of,
    file_key,
    key_matcher,
    make_row,
    replacement,
    variant,
)

_STATE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
SAMPLE = 5  # keys kept per operation for the history


class SandboxError(Exception):
    """A sandbox command that cannot be carried out; nothing was changed."""


class UnknownSystemError(SandboxError):
    def __init__(self, systems: Collection[str]):
        super().__init__(f"unknown system {', '.join(sorted(systems))}: expected some of {', '.join(SYSTEMS)}")


class NoSystemsError(SandboxError):
    def __init__(self) -> None:
        super().__init__("no systems given: name some of A, B, C, D, E (e.g. --systems B,C)")


class NoKeysGivenError(SandboxError):
    def __init__(self) -> None:
        super().__init__("no keys given: name keys, --pattern, or --from-file")


class BulkLimitError(SandboxError):
    def __init__(self, count: int, limit: int):
        super().__init__(
            f"{count} keys in one operation is over the limit of {limit} per system (sandbox.max_bulk_keys); "
            "split the operation or raise the limit"
        )


class KeysNotFoundError(SandboxError):
    def __init__(self, keys: Sequence[str], systems: Sequence[str]):
        shown = ", ".join(repr(k) for k in keys[:5]) + (f" (and {len(keys) - 5} more)" if len(keys) > 5 else "")
        super().__init__(f"not in System {', '.join(systems)}: {shown}")


class NothingMatchedError(SandboxError):
    def __init__(self, patterns: Sequence[str], systems: Sequence[str]):
        super().__init__(f"no key in System {', '.join(systems)} matches {', '.join(repr(p) for p in patterns)}")


class VariantUnchangedError(SandboxError):
    def __init__(self, key: str, kind: str):
        super().__init__(f"the {kind} variant of {key!r} is the key itself: nothing to change")


class NothingToUndoError(SandboxError):
    def __init__(self, wanted: int, available: int, what: str = "undo"):
        super().__init__(f"nothing to {what}: asked for {wanted}, {available} operation(s) can be {what}ne")


class InvalidStateNameError(SandboxError):
    def __init__(self, name: str):
        super().__init__(f"invalid state name {name[:80]!r}: use 1-64 letters, digits, '-' or '_' (no paths, no dots)")


class InvalidKeyError(SandboxError):
    pass


class NotStartedError(SandboxError):
    def __init__(self) -> None:
        super().__init__(
            "the sandbox holds no data yet: start with keysync sandbox init (or load-state); "
            "it then owns the files at the configured sources and rewrites them"
        )


def check_state_name(name: str) -> str:
    """The name itself if it may name a saved state (and so a file): letters, digits, - and _ only."""
    if not isinstance(name, str) or not _STATE_NAME.fullmatch(name):
        raise InvalidStateNameError(str(name))
    return name


@attrs.frozen
class Operation:
    """Who does an operation and when (the domain has no clock: the application says)."""

    id: str
    actor: str
    at: str  # ISO 8601 with a UTC offset


class Original(NamedTuple):
    """An operation to undo or redo, as its own event recorded it: its diff, and for an init or a reset that set
    the baseline (what reset goes back to), the baseline before and after it."""

    operation_id: str
    removed: list[Any]
    added: list[Any]
    baseline_before: list[int] | None = None
    baseline_after: list[int] | None = None


class Sandbox(Aggregate):
    @staticmethod
    def create_id() -> UUID:
        return SANDBOX_ID

    @event("Opened")
    def __init__(self) -> None:
        self.rows: dict[str, list[Row]] = {s: [] for s in SYSTEMS}
        self.operations: list[dict[str, Any]] = []  # one summary per operation, oldest first (the history)
        self.undoable: list[list[Any]] = []  # [operation id, version of its event], most recent last
        self.redoable: list[list[Any]] = []
        self.baseline: list[int] = [DEFAULT_KEYS, DEFAULT_SEED]  # the last init's keys and seed, for reset
        # False until an init, reset or load-state: before that, the files at the sources are someone else's
        # (mock data, real exports), and adding keys would silently replace them.
        self.started = False

    # Commands ------------------------------------------------------------------------------------------------

    def initialize(self, op: Operation, keys: int, seed: int, limit: int) -> None:
        """Replace every system's rows by the same ``keys`` synchronised keys."""
        _check_bulk(keys, limit)
        rows = baseline(keys, seed)
        removed, added = replacement(self.rows, dict.fromkeys(SYSTEMS, rows))
        self._initialized(op.id, op.actor, op.at, keys, seed, removed, added)

    def reset(self, op: Operation, limit: int, *, keys: int | None = None, empty: bool = False) -> None:
        """Back to the last init's baseline (or ``keys`` keys, or nothing at all)."""
        count = 0 if empty else self.baseline[0] if keys is None else keys
        _check_bulk(count, limit)
        seed = self.baseline[1]
        rows = baseline(count, seed) if count else []
        removed, added = replacement(self.rows, dict.fromkeys(SYSTEMS, rows))
        self._reset(op.id, op.actor, op.at, count, seed, removed, added)

    def add_keys(self, op: Operation, keys: Sequence[str], systems: Sequence[str], seen_at: str, limit: int) -> None:
        """Append one row per key (a key given twice is added once) to each system."""
        if not self.started:
            raise NotStartedError()
        systems = _systems(systems)
        keys = list(dict.fromkeys(keys))
        if not keys:
            raise NoKeysGivenError()
        _check_bulk(len(keys), limit)
        try:
            rows = [make_row(key, entity_type_of(key), "", seen_at) for key in keys]
        except InvalidRowError as error:
            raise InvalidKeyError(str(error)) from error
        added = [[s, len(self.rows[s]) + j, *row] for s in systems for j, row in enumerate(rows)]
        self._keys_added(op.id, op.actor, op.at, systems, [], added)

    def plan_removal(
        self, systems: Sequence[str], keys: Sequence[str], patterns: Sequence[str], limit: int
    ) -> list[list[Any]]:
        """The rows ``remove_keys`` would remove, positioned (for a dry run or a confirmation)."""
        systems = _systems(systems)
        if not keys and not patterns:
            raise NoKeysGivenError()
        wanted = key_matcher(keys, patterns)
        removed = [[s, i, *row] for s in systems for i, row in enumerate(self.rows[s]) if wanted(row[0])]
        found = {entry[2] for entry in removed}
        missing = [k for k in dict.fromkeys(keys) if k not in found]
        if missing:
            raise KeysNotFoundError(missing, systems)
        if not removed:
            raise NothingMatchedError(patterns, systems)
        for system in systems:
            _check_bulk(sum(1 for entry in removed if entry[0] == system), limit)
        return removed

    def remove_keys(
        self, op: Operation, systems: Sequence[str], keys: Sequence[str], patterns: Sequence[str], limit: int
    ) -> None:
        removed = self.plan_removal(systems, keys, patterns, limit)
        self._keys_removed(op.id, op.actor, op.at, _systems(systems), list(patterns), removed, [])

    def modify_key(
        self,
        op: Operation,
        key: str,
        systems: Sequence[str],
        *,
        to: str | None = None,
        kind: str = "",
        corruption: str = "control",
        max_key_length: int = 256,
    ) -> None:
        """Rewrite every row of ``key`` in each system, in place: to ``to``, or to a variant of it."""
        systems = _systems(systems)
        missing = [s for s in systems if not any(row[0] == key for row in self.rows[s])]
        if missing:
            raise KeysNotFoundError([key], missing)
        removed, added = [], []
        for s in systems:
            for i, row in enumerate(self.rows[s]):
                if row[0] != key:
                    continue
                new = to if to is not None else variant(file_key(row), kind, corruption=corruption,
                                                        max_key_length=max_key_length)  # fmt: skip
                try:
                    new_row = make_row(new, *row[1:4])
                except InvalidRowError as error:
                    raise InvalidKeyError(str(error)) from error
                removed.append([s, i, *row])
                added.append([s, i, *new_row])
        if all(old[2:] == new[2:] for old, new in zip(removed, added, strict=True)):
            raise VariantUnchangedError(key, kind or "--to")
        change = f"to {to!r}" if to is not None else kind + (f" ({corruption})" if kind == "corrupt" else "")
        self._keys_modified(op.id, op.actor, op.at, systems, change, removed, added)

    def load_state(self, op: Operation, name: str, rows: Mapping[str, Sequence[Row]], limit: int) -> None:
        check_state_name(name)
        for system in SYSTEMS:
            _check_bulk(len(rows.get(system, ())), limit)
        removed, added = replacement(self.rows, rows)
        self._state_loaded(op.id, op.actor, op.at, name, removed, added)

    def record_state_saved(self, op: Operation, name: str, description: str, rows: int, *, imported: bool) -> None:
        """Note in the log that a state was saved (or imported): the state itself is a file."""
        check_state_name(name)
        if imported:
            self._state_imported(op.id, op.actor, op.at, name, description, rows)
        else:
            self._state_saved(op.id, op.actor, op.at, name, description, rows)

    def record_state_deleted(self, op: Operation, name: str) -> None:
        self._state_deleted(op.id, op.actor, op.at, check_state_name(name))

    def to_undo(self, count: int) -> list[list[Any]]:
        """[operation id, event version] of the ``count`` operations undo would revert, the latest first."""
        return _top(self.undoable, count, "undo")

    def to_redo(self, count: int) -> list[list[Any]]:
        return _top(self.redoable, count, "redo")

    def undo(self, op: Operation, originals: Sequence[Original]) -> None:
        """Revert operations, latest first: ``originals`` describes each one, as ``to_undo`` listed them. Each gets
        a compensating event carrying the inverse diff (and, for an init or reset, the baseline before it)."""
        _check_order(originals, self.to_undo(len(originals)))
        for o in originals:
            self._reverted(op.id, op.actor, op.at, o.operation_id, o.added, o.removed, o.baseline_before)

    def redo(self, op: Operation, originals: Sequence[Original]) -> None:
        _check_order(originals, self.to_redo(len(originals)))
        for o in originals:
            self._restored(op.id, op.actor, op.at, o.operation_id, o.removed, o.added, o.baseline_after)

    @property
    def key_count(self) -> dict[str, int]:
        return {s: len(rows) for s, rows in self.rows.items()}

    # Events: each body is the state change -------------------------------------------------------------------

    @event("Initialized")
    def _initialized(self, operation_id: str, actor: str, at: str, keys: int, seed: int, removed: list, added: list
                     ) -> None:  # fmt: skip
        self.baseline = [keys, seed]
        self.started = True
        self._change(operation_id, "init", actor, at, list(SYSTEMS), removed, added)

    @event("Reset")
    def _reset(self, operation_id: str, actor: str, at: str, keys: int, seed: int, removed: list, added: list) -> None:
        if keys:
            self.baseline = [keys, seed]
        self.started = True
        self._change(operation_id, "reset", actor, at, list(SYSTEMS), removed, added)

    @event("KeysAdded")
    def _keys_added(self, operation_id: str, actor: str, at: str, systems: list, removed: list, added: list) -> None:
        self._change(operation_id, "add-key", actor, at, systems, removed, added)

    @event("KeysRemoved")
    def _keys_removed(self, operation_id: str, actor: str, at: str, systems: list, patterns: list, removed: list,
                      added: list) -> None:  # fmt: skip
        self._change(operation_id, "remove-key", actor, at, systems, removed, added)

    @event("KeysModified")
    def _keys_modified(self, operation_id: str, actor: str, at: str, systems: list, change: str, removed: list,
                       added: list) -> None:  # fmt: skip
        self._change(operation_id, "modify-key", actor, at, systems, removed, added, change)

    @event("StateLoaded")
    def _state_loaded(self, operation_id: str, actor: str, at: str, name: str, removed: list, added: list) -> None:
        self.started = True
        self._change(operation_id, "load-state", actor, at, list(SYSTEMS), removed, added, name)

    @event("StateSaved")
    def _state_saved(self, operation_id: str, actor: str, at: str, name: str, description: str, rows: int) -> None:
        self._note(operation_id, "save-state", actor, at, name, rows)

    @event("StateImported")
    def _state_imported(self, operation_id: str, actor: str, at: str, name: str, description: str, rows: int) -> None:
        self._note(operation_id, "import-state", actor, at, name, rows)

    @event("StateDeleted")
    def _state_deleted(self, operation_id: str, actor: str, at: str, name: str) -> None:
        self._note(operation_id, "delete-state", actor, at, name, 0)

    # ``baseline``: what reset goes back to once this event is applied, when it reverts or restores an init or a
    # reset that set it (None: unchanged; events stored before it was recorded have none).

    @event("OperationReverted")
    def _reverted(self, operation_id: str, actor: str, at: str, reverted_id: str, removed: list, added: list,
                  baseline: list[int] | None = None) -> None:  # fmt: skip
        self.redoable.append(self.undoable.pop())
        if baseline is not None:
            self.baseline = list(baseline)
        summary = self._summary(reverted_id)
        summary["undone"] = True
        detail = f"{summary['operation']} {reverted_id}"
        self._change(operation_id, "undo", actor, at, _systems_of(removed, added), removed, added, detail,
                     undoable=False)  # fmt: skip

    @event("OperationRestored")
    def _restored(self, operation_id: str, actor: str, at: str, restored_id: str, removed: list, added: list,
                  baseline: list[int] | None = None) -> None:  # fmt: skip
        self.undoable.append(self.redoable.pop())
        if baseline is not None:
            self.baseline = list(baseline)
        summary = self._summary(restored_id)
        summary["undone"] = False
        detail = f"{summary['operation']} {restored_id}"
        self._change(operation_id, "redo", actor, at, _systems_of(removed, added), removed, added, detail,
                     undoable=False)  # fmt: skip

    # Helpers of the event bodies -----------------------------------------------------------------------------

    def _change(
        self,
        operation_id: str,
        name: str,
        actor: str,
        at: str,
        systems: list[str],
        removed: list,
        added: list,
        detail: str = "",
        *,
        undoable: bool = True,
    ) -> None:
        apply_diff(self.rows, removed, added)
        if undoable:
            # The body runs before the version moves on: this event's version is the next one.
            self.undoable.append([operation_id, self.version + 1])
            self.redoable.clear()
        keys = list(dict.fromkeys(entry[2] for entry in (added or removed)))
        self.operations.append(
            {
                "operation_id": operation_id,
                "at": at,
                "actor": actor,
                "operation": name,
                "systems": systems,
                "keys": len(keys),
                "rows_added": len(added),
                "rows_removed": len(removed),
                "sample": keys[:SAMPLE],
                "detail": detail,
                "undone": False,
            }
        )

    def _note(self, operation_id: str, name: str, actor: str, at: str, detail: str, rows: int) -> None:
        self.operations.append(
            {"operation_id": operation_id, "at": at, "actor": actor, "operation": name, "systems": [], "keys": rows,
             "rows_added": 0, "rows_removed": 0, "sample": [], "detail": detail, "undone": False}
        )  # fmt: skip

    def _summary(self, operation_id: str) -> dict[str, Any]:
        return next(o for o in reversed(self.operations) if o["operation_id"] == operation_id)


def _systems(systems: Sequence[str]) -> list[str]:
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        raise UnknownSystemError(unknown)
    if not systems:
        raise NoSystemsError()
    return [s for s in SYSTEMS if s in systems]


def _systems_of(*diffs: list) -> list[str]:
    present = {entry[0] for diff in diffs for entry in diff}
    return [s for s in SYSTEMS if s in present]


def _check_bulk(count: int, limit: int) -> None:
    if count > limit:
        raise BulkLimitError(count, limit)


def _top(stack: list[list[Any]], count: int, what: str) -> list[list[Any]]:
    if count < 1 or count > len(stack):
        raise NothingToUndoError(count, len(stack), what)
    return list(reversed(stack[-count:]))


def _check_order(originals: Sequence[Original], expected: list[list[Any]]) -> None:
    if [o.operation_id for o in originals] != [e[0] for e in expected]:
        raise SandboxError("the operations to revert are not the latest ones (the sandbox changed meanwhile)")

"""The sandbox's use cases: load the aggregate, call one command, write its files, save; one method each.

Every change follows the same order, so a failure anywhere leaves the store and the files as they were:
1. hold the sandbox lock (one command at a time), load the sandbox, run the command (checks raise first);
2. write the resulting files to temporary files and check them with the real reader (nothing is in place yet);
3. save the events: a conflict (another writer saved this version first) discards the temporary files;
4. rename the files into place.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import PersistenceError

from keysync.application.sandbox_ports import (
    SandboxFilesError,
    SandboxLock,
    SourceFilesWriter,
    Staged,
    StateFileError,
    StateFiles,
)
from keysync.application.sandbox_states import SavedState, StateExistsError, parse_state
from keysync.application.sandbox_views import (
    Comparison,
    Prediction,
    SandboxStatus,
    compare_with_run,
    predict,
    sandbox_status,
)
from keysync.application.service import KeySync
from keysync.application.store import KeySyncStore
from keysync.application.suspect import MAX_SHRINK, ShrinkGuard, accepted_of
from keysync.domain.normalization import NormalizationRules
from keysync.domain.observations import SYSTEMS, SourceSnapshot
from keysync.domain.sandbox import SANDBOX_ID, Operation, Original, Sandbox, check_state_name
from keysync.domain.sandbox_rows import snapshot

# A snapshot of the sandbox after this many events, or after any operation that changed this many rows: loading it
# then decodes at most a few events, and never several large ones.
SNAPSHOT_EVERY_EVENTS = 10
SNAPSHOT_AFTER_ROWS = 2_000

log = logging.getLogger("keysync")


@attrs.frozen
class SandboxSettings:
    files: Mapping[str, Path]  # system -> the CSV file the sandbox writes (and keysync run reads)
    # Files a summary or a state's copy must never be written over: the exports keysync run reads, the store, the
    # reports, the config.
    protected: Sequence[Path] = ()
    max_bulk_keys: int = 100_000
    max_key_length: int = 256
    rules: NormalizationRules = attrs.Factory(NormalizationRules)
    strategy: str = "mirror"
    auto_approve: bool = False
    max_shrink: float = MAX_SHRINK  # as processing.max_shrink: the share of valid rows an export may lose


class NoRunYetError(Exception):
    def __init__(self) -> None:
        super().__init__("no completed run to compare with yet: run keysync run first")


@attrs.frozen
class Change:
    """What one command did (its history entries, the last one last) and the sandbox's state after it;
    ``reports_behind`` says why the reports could not be brought up to date after it ("" when they were)."""

    operations: list[dict[str, Any]]
    status: SandboxStatus
    reports_behind: str = ""

    @property
    def operation(self) -> dict[str, Any]:
        return self.operations[-1]


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@attrs.define
class SandboxService:
    store: KeySyncStore
    settings: SandboxSettings
    write_files: SourceFilesWriter
    states: StateFiles
    lock: SandboxLock
    actor: str = "keysync"
    clock: Callable[[], str] = utc_now
    keysync: KeySync | None = None  # the reconciliation side, for predictions against the registry and runs

    # Reads ---------------------------------------------------------------------------------------------------

    def sandbox(self) -> Sandbox:
        try:
            return self.store.repository.get(SANDBOX_ID)
        except AggregateNotFoundError:
            return Sandbox()

    def status(self) -> SandboxStatus:
        return sandbox_status(self.sandbox(), self.settings)

    def history(self) -> list[dict[str, Any]]:
        """Every operation, oldest first."""
        return list(self.sandbox().operations)

    def predict(self, accept_shrink: Collection[str] = ()) -> Prediction:
        """The next run's outcome, from the sandbox's rows and the registry alone (nothing is run or saved), and
        which exports that run would hold back as suspect (bar those in ``accept_shrink``)."""
        return predict(self.sandbox(), self.settings, self.store.registry(), self._shrink_guard(accept_shrink))

    def _shrink_guard(self, accept_shrink: Collection[str]) -> ShrinkGuard | None:
        """What the next run holds back by: each system's last accepted export, listed in the latest completed
        run's KPIs, as the run itself finds it."""
        if self.keysync is None:
            return None
        completed = [r for r in self.keysync.runs() if r["status"] == "completed"]
        if not completed:
            return None
        accepted = accepted_of(completed[0])
        return ShrinkGuard(accepted, self.store.base_snapshots(), self.settings.max_shrink, frozenset(accept_shrink))

    def compare_last_run(self) -> Comparison:
        """The prediction for the sandbox's rows against the latest completed run."""
        assert self.keysync is not None
        completed = [r for r in self.keysync.runs() if r["status"] == "completed"]
        if not completed:
            raise NoRunYetError()
        return compare_with_run(self.sandbox(), self.settings, completed[0], self.keysync.registry_rows())

    def files_not_its_own(self) -> list[Path]:
        """The files a first edit would write over although the sandbox never wrote them: exports from elsewhere
        (the sandbox writes to the sources' own paths unless sandbox.input_dir says otherwise). Undo cannot bring
        them back, as the log never held them."""
        return [] if self.sandbox().started else self._files_with_data()

    def _files_with_data(self) -> list[Path]:
        return [path for path in self.settings.files.values() if path.is_file() and path.stat().st_size > 0]

    def plan_removal(self, systems: Sequence[str], keys: Sequence[str], patterns: Sequence[str]) -> list[list[Any]]:
        """The rows remove_keys would remove, without removing them."""
        return self.sandbox().plan_removal(systems, keys, patterns, self.settings.max_bulk_keys)

    # Changes to the rows -------------------------------------------------------------------------------------

    def init(self, keys: int, seed: int, *, replace_exports: bool = False) -> Change:
        """``replace_exports``: write A-E even over files the sandbox never wrote (see ``files_not_its_own``)."""
        return self._change(
            lambda s, op: s.initialize(op, keys, seed, self.settings.max_bulk_keys), replace_exports=replace_exports
        )

    def reset(self, *, keys: int | None = None, empty: bool = False) -> Change:
        return self._change(lambda s, op: s.reset(op, self.settings.max_bulk_keys, keys=keys, empty=empty))

    def add_keys(self, keys: Sequence[str], systems: Sequence[str]) -> Change:
        return self._change(lambda s, op: s.add_keys(op, keys, systems, op.at, self.settings.max_bulk_keys))

    def remove_keys(self, systems: Sequence[str], keys: Sequence[str], patterns: Sequence[str]) -> Change:
        return self._change(lambda s, op: s.remove_keys(op, systems, keys, patterns, self.settings.max_bulk_keys))

    def modify_key(
        self, key: str, systems: Sequence[str], *, to: str | None = None, kind: str = "", corruption: str = "control"
    ) -> Change:
        max_len = self.settings.max_key_length
        return self._change(
            lambda s, op: s.modify_key(
                op, key, systems, to=to, kind=kind, corruption=corruption, max_key_length=max_len
            )
        )

    def undo(self, count: int = 1) -> Change:
        return self._change(lambda s, op: s.undo(op, self._originals(s.to_undo(count))))

    def redo(self, count: int = 1) -> Change:
        return self._change(lambda s, op: s.redo(op, self._originals(s.to_redo(count))))

    def _originals(self, listed: list[list[Any]]) -> list[Original]:
        """Each listed operation's diff, read back from its own event in the log; for an init or a reset that set
        the baseline, also the baseline before it (the sandbox as it stood just before) and after it."""
        originals = []
        for operation_id, version in listed:
            [event] = self.store.events.get(SANDBOX_ID, gt=version - 1, lte=version)
            original = Original(operation_id, event.removed, event.added)
            if isinstance(event, Sandbox.Initialized | Sandbox.Reset) and event.keys:
                before = self.store.repository.get(SANDBOX_ID, version=version - 1).baseline
                original = original._replace(baseline_before=before, baseline_after=[event.keys, event.seed])
            originals.append(original)
        return originals

    # Saved states --------------------------------------------------------------------------------------------

    def save_state(self, name: str, description: str = "", *, force: bool = False) -> SavedState:
        check_state_name(name)
        if self.states.exists(name) and not force:
            raise StateExistsError(name)
        saved: list[SavedState] = []

        def save(sandbox: Sandbox, op: Operation) -> list[Staged]:
            state = SavedState(name, description, op.at, op.actor, {s: list(r) for s, r in sandbox.rows.items()})
            sandbox.record_state_saved(op, name, description, state.row_count, imported=False)  # checks first
            saved.append(state)
            return [self.states.stage(name, state.document())]

        self._apply(save)
        return saved[0]

    def load_state(self, name: str) -> Change:
        state = parse_state(self.states.read(check_state_name(name)), str(self.states.path(name)))
        return self._change(lambda s, op: s.load_state(op, name, state.systems, self.settings.max_bulk_keys))

    def delete_state(self, name: str) -> None:
        check_state_name(name)

        def delete(sandbox: Sandbox, op: Operation) -> list[Staged]:
            sandbox.record_state_deleted(op, name)
            return [self.states.stage_delete(name)]

        self._apply(delete)

    def import_state(self, path: Path, name: str | None = None, *, force: bool = False) -> SavedState:
        """Add a state exported elsewhere (a file from export-state) to the states folder."""
        state = parse_state(self.states.read_file(path), str(path))
        if name is not None:
            state = attrs.evolve(state, name=check_state_name(name))
        if self.states.exists(state.name) and not force:
            raise StateExistsError(state.name)

        def add(sandbox: Sandbox, op: Operation) -> list[Staged]:
            sandbox.record_state_saved(op, state.name, state.description, state.row_count, imported=True)
            return [self.states.stage(state.name, state.document())]

        self._apply(add)
        return state

    def export_state(self, name: str, target: Path) -> Path:
        self.check_free_to_write(target / f"{name}.json" if target.is_dir() else target)
        return self.states.export(check_state_name(name), target)

    def check_free_to_write(self, target: Path) -> None:
        """Refuse ``target`` for a file of ours (a summary, a state's copy) if it is one of the systems' exports,
        or the store, a report or the config."""
        if any(target.resolve() == path.resolve() for path in self.settings.files.values()):
            raise SandboxFilesError(f"{target} is one of the systems' exports: give another file; nothing was written")
        if any(_is_or_inside(target.resolve(), path.resolve()) for path in self.settings.protected):
            raise SandboxFilesError(
                f"{target} is one of KeySync's own files (an export, the event store, a report, the config, a saved "
                "state, a log): give another file; nothing was written"
            )

    def saved_states(self) -> list[dict[str, Any]]:
        """Every saved state: name, created_at, actor, rows, bytes, description (an unreadable one says why)."""
        listed = []
        for name in self.states.names():
            try:
                state = parse_state(self.states.read(name), name)
                listed.append(state.summary() | {"bytes": self.states.size(name)})
            except (StateFileError, OSError) as error:  # one damaged file must not hide the others
                listed.append({"name": name, "created_at": "", "actor": "", "rows": 0, "bytes": 0,
                               "description": f"(unreadable: {error})"})  # fmt: skip
        return listed

    # The unit of work ----------------------------------------------------------------------------------------

    def _change(self, command: Callable[[Sandbox, Operation], None], *, replace_exports: bool = False) -> Change:
        """Run a command that changes the rows: its files are staged, checked, and put in place after the save.
        The sandbox's first edit is refused if it would write over exports it never wrote, unless
        ``replace_exports``."""
        expected: dict[str, SourceSnapshot] = {}

        def change(sandbox: Sandbox, op: Operation) -> list[Staged]:
            first = not sandbox.started  # it has written no A-E yet (saving or importing a state writes none)
            command(sandbox, op)  # the domain's refusals first (an edit before init, say)
            found = self._files_with_data() if first and not replace_exports else []
            if found:
                raise SandboxFilesError(
                    f"{', '.join(map(str, found))} hold data the sandbox did not write, which undo could not "
                    "bring back: `keysync sandbox init --yes` replaces them, or set sandbox.input_dir to keep "
                    "the sandbox's files apart; nothing was changed"
                )
            expected.update(self._snapshots(sandbox))
            return [self.write_files(self.settings.files, sandbox.rows, expected,
                                     max_key_length=self.settings.max_key_length)]  # fmt: skip

        sandbox, first, behind = self._apply(change)
        return Change(sandbox.operations[first:], sandbox_status(sandbox, self.settings, expected), behind)

    def _apply(self, command: Callable[[Sandbox, Operation], list[Staged]]) -> tuple[Sandbox, int, str]:
        """Run the command, save it, put its files in place, then bring the read models and the reports up to date:
        the sandbox, the index of the command's first history entry, and why the reports are behind ("")."""
        with self.lock():
            sandbox = self.sandbox()
            first = len(sandbox.operations)
            op = Operation(uuid.uuid4().hex[:12], self.actor, self.clock())
            staged = command(sandbox, op)
            try:
                self._save(sandbox)
            except BaseException:
                for files in staged:
                    files.discard()
                raise
            for files in staged:
                files.commit()
            self._snapshot_now_and_then(sandbox, sandbox.operations[first:])
        for done in sandbox.operations[first:]:
            log.info("sandbox %s by %s", done["operation"], done["actor"], extra={"fields": done})
        return sandbox, first, self._catch_up()

    def _catch_up(self) -> str:
        """The edit's event is in the log: the audit trail and its report must show it, as after a run or an
        approval (keysync doctor finds the read models behind the log otherwise). The edit is stored and its files
        are in place whatever happens here, and any later command catches up, so a failure (a full disk, a busy
        store) does not fail the edit: it is said, and logged."""
        if self.keysync is None:
            return ""
        try:
            self.keysync.projections.catch_up()
        except (OSError, PersistenceError) as error:
            log.warning("the reports could not be brought up to date after a sandbox edit: %s", error)
            return f"the reports could not be brought up to date ({error}); `keysync reports` does it"
        return ""

    def _snapshots(self, sandbox: Sandbox) -> dict[str, SourceSnapshot]:
        """What the reader should find in each file."""
        settings = self.settings
        return {s: snapshot(s, sandbox.rows[s], settings.max_key_length, str(settings.files[s])) for s in SYSTEMS}

    def _save(self, sandbox: Sandbox) -> None:
        self.store.save_or_conflict(
            sandbox,
            conflict="another sandbox command changed the sandbox at the same moment; nothing was changed, try again",
        )

    def _snapshot_now_and_then(self, sandbox: Sandbox, operations: list[dict[str, Any]]) -> None:
        rows = sum(o["rows_added"] + o["rows_removed"] for o in operations)
        events = len(operations)
        crossed = sandbox.version // SNAPSHOT_EVERY_EVENTS > (sandbox.version - events) // SNAPSHOT_EVERY_EVENTS
        if (crossed or rows >= SNAPSHOT_AFTER_ROWS) and self.store.snapshots is not None:
            # From the aggregate in hand: it is exactly the version just saved, so no need to load it again.
            self.store.snapshots.put([type(sandbox).Snapshot.take(sandbox)])


def _is_or_inside(target: Path, protected: Path) -> bool:
    return target == protected or (protected.is_dir() and target.is_relative_to(protected))

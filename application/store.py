"""The event-sourced application: the event store and the aggregates in it."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar
from uuid import UUID

import attrs
from eventsourcing.application import AggregateNotFoundError, Application, project_aggregate
from eventsourcing.persistence import IntegrityError, OperationalError, Transcoder

from keysync.domain.audit_chain import LoggedEvent
from keysync.domain.observations import SourceSnapshot
from keysync.domain.registry import REGISTRY_ID, Registry
from keysync.domain.run import ReconciliationRun, snapshots_from_events


def logged_event(notification: Any) -> LoggedEvent:
    """A stored event (a notification) as the audit chain logs it."""
    return LoggedEvent(
        notification.id,
        str(notification.originator_id),
        notification.originator_version,
        notification.topic,
        hashlib.sha256(bytes(notification.state)).hexdigest(),
    )


@attrs.define
class StoredRun:
    """The events this process stored one after another, with no other writer's in between: every event after
    position ``after`` up to the last one's. A run's seal hashes these as it stored them, rather than reading a
    million keys' observations back from the log."""

    after: int
    events: list[LoggedEvent]

    @property
    def last(self) -> int:
        return self.events[-1].id if self.events else self.after


class ConflictError(Exception):
    """Another process changed the store at the same moment; nothing of this command was saved."""


EVENTS_PAGE = 20  # stored events read at once when following a run's rows (batches of up to 100,000 rows each)


class KeySyncStore(Application):
    """Holds the runs and the registry. Only the application layer calls ``save``."""

    name = "keysync"
    # Registry events are batches, a few per run; a snapshot now and then keeps loading it quick.
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {Registry: 20}

    # Called with the number of events each save stored (the composition root hooks fault injection here).
    after_save: Callable[[int], None] | None = None

    # The registry as this process last saved or loaded it, its last event as stored, and its version then: the next
    # use applies only the events stored since, once that event is found where it was (not so in a store restored
    # or remade). A saved registry is kept as it is, not copied (1.5M master keys at 10M keys per system): a change
    # made to it after its save moves its version, and the kept one is then let go.
    _registry: tuple[Registry, bytes, int] | None = None

    def construct_transcoder(self) -> Transcoder:
        """JSON, as eventsourcing's, which also stores the Arrow tables of observation batches."""
        from keysync.infrastructure.arrow_transcoding import KeySyncTranscoder

        transcoder = KeySyncTranscoder()
        self.register_transcodings(transcoder)
        return transcoder

    # What this process stored since another writer last did, as the audit chain logs it (see StoredRun).
    stored_run: StoredRun | None = None

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        before = self.recorder.max_notification_id() or 0
        recordings = super().save(*objs, **kwargs)
        self._note_stored(before, [r.notification for r in recordings])
        stored = [r.notification.state for r in recordings if r.domain_event.originator_id == REGISTRY_ID]
        for saved in objs:
            if isinstance(saved, Registry) and stored:
                self._registry = (saved, bytes(stored[-1]), saved.version)
        if self.after_save is not None:
            self.after_save(len(recordings))
        return recordings

    def _note_stored(self, before: int, stored: list[Any]) -> None:
        """Keep the events just stored when they follow position ``before`` without a gap, so that no other
        writer's event can be among them (else forget them all: the log is read instead)."""
        if [n.id for n in stored] != list(range(before + 1, before + 1 + len(stored))):
            self.stored_run = None
            return
        if self.stored_run is None or self.stored_run.last != before:
            self.stored_run = StoredRun(before, [])
        self.stored_run.events.extend(map(logged_event, stored))

    def save_or_conflict(self, *aggregates: Any, conflict: str) -> Any:
        """Save, turning a concurrent writer's win into ConflictError(``conflict``) and a busy store into another
        clear ConflictError: either way nothing was saved."""
        try:
            return self.save(*aggregates)
        except IntegrityError as error:
            raise ConflictError(conflict) from error
        except OperationalError as error:
            raise ConflictError(f"the event store is busy or unusable ({error}); nothing was saved") from error

    def registry(self) -> Registry:
        """The registry as stored now, for a command to change: a copy of the one this process last saved or
        loaded, with whatever was stored since (another process's approvals) applied; else loaded from the store.
        A run then costs a query, not a reload of every master key."""
        kept: Registry | None = None
        if self._registry is not None:
            kept, last, version = self._registry
            stored = self.recorder.select_events(REGISTRY_ID, gt=version - 1)
            unchanged = kept.version == version and not kept.pending_events  # changed since its save: let go
            if unchanged and stored and stored[0].originator_version == version and bytes(stored[0].state) == last:
                if len(stored) > 1:  # applied to a copy: the kept one may still be in its saver's hands
                    kept = project_aggregate(copy.deepcopy(kept), map(self.mapper.to_domain_event, stored[1:]))
                self._registry = (kept, bytes(stored[-1].state), kept.version)
            else:
                kept = self._registry = None
        if kept is None:
            try:
                kept = self.repository.get(REGISTRY_ID)
            except AggregateNotFoundError:
                return Registry()
            last_stored = self.recorder.select_events(REGISTRY_ID, gt=kept.version - 1)
            if last_stored and last_stored[0].originator_version == kept.version:
                self._registry = (kept, bytes(last_stored[0].state), kept.version)
        return copy.deepcopy(kept)

    def run(self, originator_id: Any) -> ReconciliationRun:
        return self.repository.get(originator_id)

    def run_options(self, originator_id: Any) -> dict[str, Any]:
        """The options a run started with (its rules, strategy...), from its first event alone."""
        started = next(iter(self.events.get(UUID(str(originator_id)), lte=1, limit=1)), None)
        return dict(getattr(started, "options", None) or {})

    def run_snapshots(self, originator_id: Any) -> tuple[dict[str, SourceSnapshot], dict[str, str]]:
        """A run's rows per system, and its unavailable systems' reasons."""
        return snapshots_from_events(self.events.get(UUID(str(originator_id))), self.base_snapshots())

    def rows_held(self, holders: Mapping[str, str]) -> dict[str, SourceSnapshot]:
        """The rows of each system (a key of ``holders``) that the run ``holders[system]`` holds."""
        resolve = self.base_snapshots()
        return {system: resolve(holder, system) for system, holder in holders.items()}

    def base_snapshots(self) -> Callable[[str, str], SourceSnapshot]:
        """What snapshots_from_events needs to follow an incremental run's systems back to the runs whose
        events hold their rows. Only the system's rows are decoded (at 10M keys per system, decoding a run's five
        systems at once took over 20 GB), and the rows of the runs a chain of deltas passes through are let go as
        soon as the next delta is applied."""

        def base_snapshot(base: str, system: str) -> SourceSnapshot:
            snapshots, _ = snapshots_from_events(self.system_events(base, system), base_snapshot, only=system)
            return snapshots[system]

        return base_snapshot

    def system_events(self, originator_id: str, system: str) -> Iterator[Any]:
        """The events of run ``originator_id``, in order, but for other systems' batches of rows, which are
        skipped unread: a page of stored events at a time, a batch's system read from its frame's head."""
        from keysync.infrastructure.arrow_transcoding import framed_system

        position = 0
        while page := self.recorder.select_events(UUID(originator_id), gt=position, limit=EVENTS_PAGE):
            for stored in page:
                if framed_system(stored.state) not in (None, system):
                    continue
                yield self.mapper.to_domain_event(stored)
            position = page[-1].originator_version

    def run_events(self, originator_id: Any) -> list[Any]:
        """Every event of one run, in order: the raw observations with them."""
        return list(self.events.get(originator_id))

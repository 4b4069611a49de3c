"""Sealing the event log into the audit chain, and checking the chain: keysync audit seal|verify, keysync doctor.

What a seal records, and what the chain can and cannot detect: see keysync.domain.audit_chain. A run seals the
log in the same save as its conclusion (so a run killed at any point never leaves a seal without its run, nor
a completed run waiting for a seal it will never get); the events that save stores are sealed by the next seal.
``keysync audit seal`` seals everything stored so far, under the run lock.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import ApplicationRecorder, Mapper, Notification, PersistenceError
from eventsourcing.utils import get_topic

from keysync.application.store import KeySyncStore, logged_event
from keysync.domain.audit_chain import AUDIT_CHAIN_ID, AuditChain, ChainReport, ChainWalk, LoggedEvent, Seal

if TYPE_CHECKING:
    from keysync.application.service import KeySync

# Notifications per read of the log: observation batches are large (MBs each), so pages stay small.
PAGE = 50
SEALED = get_topic(AuditChain.Sealed)

log = logging.getLogger("keysync")


def stored_events(recorder: ApplicationRecorder, after: int, last: int) -> Iterator[Notification]:
    """The stored events after notification id ``after`` up to ``last``, in log order, a small page at a time."""
    position = after
    while position < last:
        page = recorder.select_notifications(start=position, limit=PAGE, stop=last, inclusive_of_start=False)
        if not page:
            return
        yield from page
        position = page[-1].id


@attrs.frozen
class Sealing:
    """Seals made over the events stored since the previous seal; ``chain`` holds them, not saved yet."""

    chain: AuditChain
    seals: int
    events: int
    first_id: int
    last_id: int

    def as_dict(self) -> dict[str, Any]:
        return {"seals": self.seals, "events": self.events, "covers": [self.first_id, self.last_id],
                "last_seal": self.chain.seals, "digest": self.chain.digest}  # fmt: skip


def pending_sealing(store: KeySyncStore) -> Sealing | None:
    """Seal every event stored since the last seal (unsaved: the caller saves ``chain``); None when nothing but
    the chain's own events is unsealed (sealing those alone would only ever make another one to seal)."""
    try:
        chain: AuditChain = store.repository.get(AUDIT_CHAIN_ID)
    except AggregateNotFoundError:
        chain = AuditChain()
    start = chain.sealed_through
    last = store.recorder.max_notification_id() or 0
    events = logged_events(store, start, last)
    if all(e.originator_id == str(AUDIT_CHAIN_ID) for e in events):
        return None
    seals = chain.seal(events)
    return Sealing(chain, seals, len(events), start + 1, events[-1].id)


def logged_events(store: KeySyncStore, after: int, last: int) -> list[LoggedEvent]:
    """The events stored after position ``after`` up to ``last``, as the chain logs them: those this process
    stored itself as it stored them, the rest read from the log."""
    kept = store.stored_run
    if kept is None or not kept.events or kept.last != last or kept.after >= last:
        return [logged_event(n) for n in stored_events(store.recorder, after, last)]
    before = [logged_event(n) for n in stored_events(store.recorder, after, kept.after)]
    return before + [e for e in kept.events if e.id > after]


def sealed_chain(store: KeySyncStore) -> list[AuditChain]:
    """The aggregates to save for a seal over every event not sealed yet: the chain, or none. A log that cannot
    be read to the end is not sealed (nor does it stop the caller's save): keysync audit verify says where."""
    try:
        sealing = pending_sealing(store)
    except (PersistenceError, ValueError) as error:
        log.warning("the event log was not sealed: it cannot be read (%s); keysync audit verify says where", error)
        return []
    return [] if sealing is None else [sealing.chain]


class ChainReader:
    """Feeds stored events, in log order, to a ChainWalk: every event hashed, every seal decoded."""

    def __init__(self, mapper: Mapper):
        self.mapper = mapper
        self.walk = ChainWalk()

    def add(self, notification: Notification) -> None:
        if notification.topic == SEALED and notification.originator_id == AUDIT_CHAIN_ID:
            self._seal(notification)
        self.walk.logged(logged_event(notification))  # a seal is an event too: the next seal covers it

    def _seal(self, notification: Notification) -> None:
        try:
            sealed = self.mapper.to_domain_event(notification)
            seal = Seal(
                number=notification.originator_version - 1,  # version 1 is the chain's Created event
                position=notification.id,
                first_id=int(sealed.first_id),
                last_id=int(sealed.last_id),
                count=int(sealed.count),
                entries=list(sealed.entries),
                digest=str(sealed.digest),
                previous_digest=str(sealed.previous_digest),
            )
        except Exception as error:  # an altered seal may fail in any way: that is the finding, never a crash
            self.walk.unreadable(notification.id, notification.originator_version, f"{type(error).__name__}")
            return
        self.walk.sealed(seal)

    def report(self, expected: str | None = None) -> ChainReport:
        return self.walk.report(expected)


def verify_chain(store: KeySyncStore, expected: str | None = None) -> ChainReport:
    """Recompute every seal's digest from the log, in order, up to the first broken link."""
    reader = ChainReader(store.mapper)
    recorder, position = store.recorder, 0
    last = recorder.max_notification_id() or 0
    while position < last and reader.walk.broken is None:  # nothing after a broken link can be vouched for
        try:
            page = _page(recorder, position, last)
        except (PersistenceError, ValueError) as error:  # e.g. a SQLite state that is no longer a BLOB
            reader.walk.unreadable_log(f"{type(error).__name__}: {' '.join(str(error).split())[:200]}")
            break
        if not page:
            break
        for notification in page:
            reader.add(notification)
        position = page[-1].id
    return reader.report(expected)


def _page(recorder: ApplicationRecorder, position: int, last: int) -> Sequence[Notification]:
    """The next page of the log; if it cannot be read, the next event alone, so a failure names the event."""
    try:
        return recorder.select_notifications(start=position, limit=PAGE, stop=last, inclusive_of_start=False)
    except (PersistenceError, ValueError):
        return recorder.select_notifications(start=position, limit=1, stop=last, inclusive_of_start=False)


def verdict(report: ChainReport) -> str:
    """The chain's state in one line: sound (and how far), or the first broken link."""
    if report.broken is not None:
        return f"tampered with: {report.broken.kind} at {report.broken.describe()}"
    if report.expected_found is False:
        return (f"the digest {report.expected} is not in the chain: the log was cut short or rewritten since it "
                "was recorded (or the digest is mistyped)")  # fmt: skip
    if report.last_seal is None:
        return f"no seals yet: {_unsealed(report)} (the next keysync run or keysync audit seal seals them)"
    last = report.last_seal
    return (f"{report.seals} seal(s) verify events 1-{last.last_id} ({report.verified} events); {_unsealed(report)} "
            "after them, verified once sealed")  # fmt: skip


def _unsealed(report: ChainReport) -> str:
    ids = report.unsealed
    if not ids:
        return "no event unsealed"
    return f"{len(ids)} event{'s' if len(ids) > 1 else ''} ({ids[0]}-{ids[-1]}) not sealed yet"


@attrs.define
class AuditTrail:
    """The use cases of keysync audit seal and verify."""

    keysync: KeySync

    def seal(self) -> Sealing | None:
        """Seal every event stored so far (under the run lock: only its holder seals, so seals never conflict);
        None when there was nothing to seal."""
        with self.keysync.lock() as claim:
            claim("(keysync audit seal)")
            sealing = pending_sealing(self.keysync.store)
            if sealing is None:
                return None
            conflict = "the audit chain changed at the same moment; nothing was saved, run again"
            self.keysync.projections.remember(self.keysync.store.save_or_conflict(sealing.chain, conflict=conflict))
            self.keysync.projections.catch_up()
        return sealing

    def verify(self, expected: str | None = None) -> ChainReport:
        return verify_chain(self.keysync.store, expected)

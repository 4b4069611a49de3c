"""The audit chain: seals that let anyone check that the event log still holds what it held when it was sealed.

A seal covers the stored events after the previous seal's range, up to the last event stored before it, and
records a digest: sha256 over the previous seal's digest, then, for each covered event, its notification id,
aggregate id, version, topic and the sha256 of its stored bytes. An event changed, deleted, inserted or moved
changes the digest of the seal that covers it, and as each digest starts from the previous one, a seal vouches
for every seal before it. Seals are events of the log too, so each seal is covered by the next one.

A seal also lists each covered event's notification id with a short fingerprint of it, so that a broken link can
name the event (the digest alone could only say that something in the range changed).

What a chain without a secret cannot do: someone who rewrites the log and recomputes every seal after the
rewrite goes unnoticed, and so does a log cut short together with its last seals. A seal's digest recorded
elsewhere catches both: it must still be in the chain later (``keysync audit verify --expect DIGEST``).

Pure: no I/O. The application reads the log and feeds it to ``ChainWalk`` in order.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from itertools import pairwise
from typing import Any
from uuid import UUID

import attrs
from eventsourcing.domain import Aggregate, event

from keysync.domain.ids import AUDIT_CHAIN_ID

GENESIS = "0" * 64  # the "previous digest" of the first seal
# Events per seal at most: a seal lists its events, and the first seal of a large existing log would otherwise
# be one very large event. More are sealed at once as several seals, saved together.
SEAL_SPAN = 10_000
SHOWN_IDS = 10


class AuditChainError(Exception):
    """Events that cannot be sealed as given (not after the last seal, or not in log order)."""


@attrs.frozen
class LoggedEvent:
    """One stored event as the chain sees it: its place in the log, whose event it is, and a hash of its bytes."""

    id: int  # notification id
    originator_id: str
    version: int
    topic: str
    state_sha256: str

    @property
    def fingerprint(self) -> str:
        """Short, for naming the event that differs; the seal's digest (full sha256) is what detects it."""
        return hashlib.sha256(self._fields(self.originator_id, self.version, self.topic)).hexdigest()[:16]

    def _fields(self, *fields: Any) -> bytes:
        return json.dumps([*fields, self.state_sha256], separators=(",", ":")).encode()

    def line(self) -> bytes:
        return self._fields(self.id, self.originator_id, self.version, self.topic)

    def describe(self) -> str:
        return f"{self.topic.rpartition('.')[2]} version {self.version} of {self.originator_id}"


def chain_digest(previous: str, events: Sequence[LoggedEvent]) -> str:
    """sha256 over the previous seal's digest, then each event's id, aggregate, version, topic and state hash."""
    digest = hashlib.sha256(previous.encode("ascii"))
    for logged in events:
        digest.update(b"\n" + logged.line())
    return digest.hexdigest()


class AuditChain(Aggregate):
    """The log's seals, one after the other. Only the holder of the run lock seals, so it never conflicts."""

    @staticmethod
    def create_id() -> UUID:
        return AUDIT_CHAIN_ID

    @event("Created")
    def __init__(self) -> None:
        self.digest = GENESIS
        self.sealed_through = 0  # the last notification id sealed
        self.seals = 0

    def seal(self, events: Sequence[LoggedEvent]) -> int:
        """Seal ``events``: every stored event after the last seal's range, in log order (one seal per
        SEAL_SPAN events). Returns the number of seals made."""
        ids = [e.id for e in events]
        if ids and (ids[0] <= self.sealed_through or any(a >= b for a, b in pairwise(ids))):
            raise AuditChainError(f"events to seal must follow event {self.sealed_through}, in log order")
        for start in range(0, len(events), SEAL_SPAN):
            covered = events[start : start + SEAL_SPAN]
            self._sealed(
                first_id=self.sealed_through + 1,
                last_id=covered[-1].id,
                count=len(covered),
                entries=[[e.id, e.fingerprint] for e in covered],
                digest=chain_digest(self.digest, covered),
                previous_digest=self.digest,
            )
        return -(-len(events) // SEAL_SPAN)

    @event("Sealed")
    def _sealed(
        self, first_id: int, last_id: int, count: int, entries: list[list[Any]], digest: str, previous_digest: str
    ) -> None:
        self.digest = digest
        self.sealed_through = last_id
        self.seals += 1


# Verifying ------------------------------------------------------------------------------------------------


@attrs.frozen
class Seal:
    """A seal as read back from the log."""

    number: int  # 1 for the first seal
    position: int  # the seal's own notification id
    first_id: int
    last_id: int
    count: int
    entries: Sequence[Sequence[Any]]  # [notification id, fingerprint] per covered event
    digest: str
    previous_digest: str

    @property
    def span(self) -> str:
        return f"events {self.first_id}-{self.last_id}"

    def summary(self) -> dict[str, Any]:
        return {"seal": self.number, "at_event": self.position, "covers": [self.first_id, self.last_id],
                "digest": self.digest}  # fmt: skip


@attrs.frozen
class BrokenLink:
    """The first seal that the log no longer matches, and how."""

    seal: int
    position: int  # where the seal is in the log (0: the log could not be read that far)
    span: str  # the events it covers, e.g. "events 12-40"
    kind: str  # changed | deleted | inserted | reordered | seal missing | seal altered | seal unreadable | unreadable
    detail: str
    ids: tuple[int, ...] = ()  # the events concerned

    def describe(self) -> str:
        if not self.position:  # the log could not be read as far as the seal
            return f"{self.span}: {self.detail}"
        return f"seal {self.seal} (at event {self.position}, covering {self.span}): {self.detail}"


@attrs.frozen
class ChainReport:
    events: int  # events read
    verified: int  # events covered by the seals that verified
    seals: int  # seals verified
    last_seal: Seal | None  # the last seal verified
    unsealed: tuple[int, ...]  # ids of the events after the last seal's range (the seal itself among them)
    broken: BrokenLink | None
    expected: str | None = None  # a digest recorded earlier, which must still be in the chain
    expected_found: bool | None = None

    @property
    def ok(self) -> bool:
        return self.broken is None and self.expected_found is not False

    def as_dict(self) -> dict[str, Any]:
        last = self.last_seal
        return {
            "ok": self.ok,
            "events": self.events,
            "events_verified": self.verified,
            "seals": self.seals,
            "last_seal": None if last is None else last.summary(),
            "unsealed": {"count": len(self.unsealed), "ids": _span(self.unsealed)},
            "broken": None if self.broken is None else attrs.asdict(self.broken),
            "expected": None if self.expected is None else {"digest": self.expected, "found": self.expected_found},
        }


@attrs.define
class ChainWalk:
    """Checks the seals against the events, fed the whole log in order: each event (``logged``), and each seal
    (``sealed``) just before its own event. Stops checking at the first broken link: after it, nothing can be
    vouched for."""

    number: int = 0
    digest: str = GENESIS
    sealed_through: int = 0
    events: int = 0
    verified: int = 0
    pending: list[LoggedEvent] = attrs.Factory(list)
    digests: set[str] = attrs.Factory(set)
    last_seal: Seal | None = None
    broken: BrokenLink | None = None

    def logged(self, logged: LoggedEvent) -> None:
        self.events += 1
        if self.broken is None:
            self.pending.append(logged)

    def sealed(self, seal: Seal) -> None:
        if self.broken is not None:
            return
        covered = [e for e in self.pending if e.id <= seal.last_id]
        self.broken = broken_link(seal, self.number, self.digest, self.sealed_through, covered)
        if self.broken is not None:
            return
        self.pending = [e for e in self.pending if e.id > seal.last_id]
        self.number, self.digest, self.sealed_through = seal.number, seal.digest, seal.last_id
        self.verified += len(covered)
        self.digests.add(seal.digest)
        self.last_seal = seal

    def unreadable(self, position: int, version: int, error: str) -> None:
        if self.broken is None:
            span = f"events after {self.sealed_through}"
            detail = f"the seal's stored event cannot be read ({error}): it was altered"
            self.broken = BrokenLink(version - 1, position, span, "seal unreadable", detail, (position,))

    def unreadable_log(self, error: str) -> None:
        """The log cannot be read past the events seen so far (a row altered so that it no longer loads)."""
        if self.broken is None:
            after = max((e.id for e in self.pending), default=self.sealed_through)
            detail = f"cannot be read ({error}): it was altered"
            self.broken = BrokenLink(self.number + 1, 0, f"the event after event {after}", "unreadable", detail)

    def report(self, expected: str | None = None) -> ChainReport:
        found = None if expected is None else expected.strip().lower() in self.digests
        unsealed = () if self.broken is not None else tuple(e.id for e in self.pending)
        return ChainReport(
            self.events, self.verified, self.number, self.last_seal, unsealed, self.broken, expected, found
        )


def broken_link(
    seal: Seal, number: int, digest: str, sealed_through: int, covered: Sequence[LoggedEvent]
) -> BrokenLink | None:
    """What is wrong with ``seal``, given the previous seal (its number, digest and last event sealed) and the
    events now in the log within the seal's range; None: nothing."""

    def broken(kind: str, detail: str, ids: Sequence[int] = ()) -> BrokenLink:
        return BrokenLink(seal.number, seal.position, seal.span, kind, detail, tuple(ids))

    if seal.number != number + 1:
        missing = f"{number + 1}" if seal.number == number + 2 else f"{number + 1}-{seal.number - 1}"
        if seal.number <= number:
            return broken("seal missing", f"it comes after seal {number}: the seals are out of order")
        return broken("seal missing", f"seal {missing} is missing from the log (this one follows seal {number})")
    if seal.previous_digest != digest or seal.first_id != sealed_through + 1:
        return broken("seal altered", f"it does not continue seal {number} (which ends at event {sealed_through}, "
                                      f"digest {digest[:16]}...): the seal was altered")  # fmt: skip
    if seal.position <= seal.last_id:
        return broken("reordered", f"the seal is at event {seal.position}, before events it covers: the log was "
                                   "reordered", [seal.position])  # fmt: skip
    if len(covered) == seal.count and chain_digest(digest, covered) == seal.digest:
        return None
    found = {e.id: e for e in covered}
    try:
        sealed = {int(i): str(f) for i, f in seal.entries}
    except (TypeError, ValueError):
        sealed = {}
    if len(sealed) != seal.count:
        return broken("seal altered", "its list of events does not match its count: the seal was altered")
    deleted = sorted(sealed.keys() - found.keys())
    if deleted:
        return broken("deleted", f"{_events(deleted)} {_are(deleted)} missing from the log (deleted)", deleted)
    inserted = sorted(found.keys() - sealed.keys())
    if inserted:
        were = "were" if len(inserted) > 1 else "was"
        return broken("inserted", f"{_events(inserted)} {were} not in the log when it was sealed (inserted)", inserted)
    differing = [i for i in sorted(sealed) if found[i].fingerprint != sealed[i]]
    if not differing:
        return broken("seal altered", "its events match its list but not its digest: the seal was altered")
    if Counter(found[i].fingerprint for i in differing) == Counter(sealed[i] for i in differing):
        return broken("reordered", f"{_events(differing)} hold each other's events: the log was reordered", differing)
    changed = [i for i in differing if found[i].fingerprint not in set(sealed.values())]
    first = found[(changed or differing)[0]]
    what = f"{_events(changed or differing)} {'was' if len(changed or differing) == 1 else 'were'} changed"
    return broken("changed", f"{what} (event {first.id} now holds {first.describe()})", changed or differing)


def _events(ids: Sequence[int]) -> str:
    shown = ", ".join(map(str, ids[:SHOWN_IDS])) + (f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else "")
    return f"event{'s' if len(ids) > 1 else ''} {shown}"


def _are(ids: Sequence[int]) -> str:
    return "are" if len(ids) > 1 else "is"


def _span(ids: Sequence[int]) -> list[int]:
    return [ids[0], ids[-1]] if ids else []

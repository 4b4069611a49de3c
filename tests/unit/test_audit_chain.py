"""The audit chain on an in-memory log: seals verify an untouched log, and each kind of tampering is found at the
first broken link, named."""

from __future__ import annotations

import hashlib

import attrs
import pytest

from keysync.domain import audit_chain
from keysync.domain.audit_chain import (
    AUDIT_CHAIN_ID,
    GENESIS,
    AuditChain,
    AuditChainError,
    ChainReport,
    ChainWalk,
    LoggedEvent,
    Seal,
)

RUN_TOPIC = "keysync.domain.run:ReconciliationRun.KeysObserved"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@attrs.define
class Log:
    """Stored events in log order, each with the seal it is (None for every other event)."""

    rows: list[tuple[LoggedEvent, Seal | None]] = attrs.Factory(list)
    next_id: int = 1
    chain: AuditChain = attrs.Factory(AuditChain)

    def store(self, count: int, gap: int = 0) -> None:
        """``count`` run events; ``gap`` ids skipped first (as a PostgreSQL sequence does after a failed insert)."""
        self.next_id += gap
        for _ in range(count):
            event_id = self.next_id
            self.rows.append((LoggedEvent(event_id, "run-1", event_id, RUN_TOPIC, sha(str(event_id))), None))
            self.next_id += 1

    def seal(self) -> None:
        unsealed = [logged for logged, _ in self.rows if logged.id > self.chain.sealed_through]
        self.chain.seal(unsealed)
        for event in self.chain.collect_events():
            version = event.originator_version
            logged = LoggedEvent(self.next_id, str(AUDIT_CHAIN_ID), version, type(event).__name__, sha(repr(event)))
            seal = None
            if isinstance(event, AuditChain.Sealed):
                seal = Seal(version - 1, self.next_id, event.first_id, event.last_id, event.count, event.entries,
                            event.digest, event.previous_digest)  # fmt: skip
            self.rows.append((logged, seal))
            self.next_id += 1

    def walk(self, expected: str | None = None) -> ChainReport:
        walk = ChainWalk()
        for logged, seal in self.rows:
            if seal is not None:
                walk.sealed(seal)
            walk.logged(logged)
        return walk.report(expected)

    def position(self, event_id: int) -> int:
        return next(i for i, (logged, _) in enumerate(self.rows) if logged.id == event_id)


@pytest.fixture
def log() -> Log:
    """Two runs, each sealed: seal 1 covers events 1-5, seal 2 covers 6-13 (seal 1's events among them)."""
    log = Log()
    log.store(5)
    log.seal()  # Created (6) and Sealed (7)
    log.store(6)
    log.seal()  # Sealed (14)
    return log


def test_an_untouched_log_verifies_and_says_what_is_not_sealed_yet(log):
    report = log.walk()
    assert report.ok and report.broken is None
    assert (report.events, report.verified, report.seals) == (14, 13, 2)
    assert report.last_seal is not None and report.last_seal.span == "events 6-13"
    assert report.unsealed == (14,)  # the last seal itself: sealed by the next one
    assert report.last_seal.digest == log.chain.digest and report.last_seal.previous_digest != GENESIS


def test_a_log_without_seals_is_not_tampered_with():
    log = Log()
    log.store(4)
    report = log.walk()
    assert report.ok and report.seals == 0 and report.unsealed == (1, 2, 3, 4)


def test_an_edited_event_is_named(log):
    i = log.position(3)
    log.rows[i] = (attrs.evolve(log.rows[i][0], state_sha256=sha("edited")), None)
    broken = log.walk().broken
    assert broken is not None and (broken.seal, broken.kind, broken.ids) == (1, "changed", (3,))
    assert broken.span == "events 1-5"
    assert "event 3 was changed" in broken.detail


def test_a_deleted_event_is_named(log):
    del log.rows[log.position(9)]
    broken = log.walk().broken
    assert broken is not None and (broken.seal, broken.kind, broken.ids) == (2, "deleted", (9,))
    assert "event 9 is missing from the log (deleted)" in broken.detail


def test_swapped_events_are_found_as_reordered(log):
    a, b = log.position(2), log.position(4)
    (first, _), (second, _) = log.rows[a], log.rows[b]
    log.rows[a], log.rows[b] = (attrs.evolve(second, id=2), None), (attrs.evolve(first, id=4), None)
    broken = log.walk().broken
    assert broken is not None and (broken.seal, broken.kind, broken.ids) == (1, "reordered", (2, 4))


def test_an_event_inserted_into_a_hole_in_the_ids_is_named():
    log = Log()
    log.store(2)
    log.store(2, gap=3)  # ids 1, 2, then 6, 7
    log.seal()
    log.rows.insert(2, (LoggedEvent(4, "intruder", 1, RUN_TOPIC, sha("x")), None))
    broken = log.walk().broken
    assert broken is not None and (broken.seal, broken.kind, broken.ids) == (1, "inserted", (4,))
    assert "event 4 is not in the log when it was sealed" not in broken.detail
    assert "event 4 was not in the log when it was sealed (inserted)" in broken.detail


def test_a_missing_seal_and_an_altered_seal_are_found():
    log = Log()
    for _ in range(3):
        log.store(2)
        log.seal()
    missing = Log(rows=[row for row in log.rows if row[1] is None or row[1].number != 2])
    broken = missing.walk().broken
    assert broken is not None and (broken.seal, broken.kind) == (3, "seal missing")
    assert "seal 2 is missing from the log" in broken.detail
    i = next(i for i, (_, seal) in enumerate(log.rows) if seal is not None and seal.number == 2)
    logged, seal = log.rows[i]
    log.rows[i] = (logged, attrs.evolve(seal, previous_digest=GENESIS))
    broken = log.walk().broken
    assert broken is not None and (broken.seal, broken.kind) == (2, "seal altered")


def test_an_unreadable_seal_breaks_the_chain():
    walk = ChainWalk()
    walk.logged(LoggedEvent(1, "run-1", 1, RUN_TOPIC, sha("1")))
    walk.unreadable(2, 2, "MapperDeserialisationError")
    report = walk.report()
    assert not report.ok and report.broken is not None and report.broken.kind == "seal unreadable"


def test_a_log_that_cannot_be_read_to_the_end_is_broken(log):
    walk = ChainWalk()
    for logged, _ in log.rows[:3]:
        walk.logged(logged)
    walk.unreadable_log("OperationalError: not a BLOB")
    broken = walk.report().broken
    assert broken is not None and broken.kind == "unreadable"
    assert broken.describe() == "the event after event 3: cannot be read (OperationalError: not a BLOB): it was altered"


def test_ids_with_gaps_verify(log):
    log.store(3, gap=5)  # PostgreSQL: a failed insert leaves a hole in the ids
    log.seal()
    assert log.walk().ok


def test_a_large_backlog_is_sealed_in_spans(monkeypatch):
    monkeypatch.setattr(audit_chain, "SEAL_SPAN", 4)
    log = Log()
    log.store(10)
    log.seal()
    report = log.walk()
    assert report.ok and report.seals == 3 and report.verified == 10
    assert [s.count for _, s in log.rows if s is not None] == [4, 4, 2]


def test_an_expected_digest_must_still_be_in_the_chain(log):
    first = next(seal for _, seal in log.rows if seal is not None)
    assert log.walk(expected=first.digest.upper()).ok
    report = log.walk(expected="ab" * 32)
    assert not report.ok and report.expected_found is False and report.broken is None


def test_events_to_seal_must_follow_the_last_seal(log):
    with pytest.raises(AuditChainError):
        log.chain.seal([LoggedEvent(3, "run-1", 3, RUN_TOPIC, sha("3"))])


def test_the_chain_replays_from_its_events():
    chain = AuditChain()
    chain.seal([LoggedEvent(1, "run-1", 1, RUN_TOPIC, sha("1"))])
    events = chain.collect_events()
    replayed = None
    for event in events:
        replayed = event.mutate(replayed)
    assert replayed is not None and (replayed.digest, replayed.sealed_through, replayed.seals) == (chain.digest, 1, 1)

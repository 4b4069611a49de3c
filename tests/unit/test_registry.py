"""The master-key lifecycle, on the aggregate alone."""

import pytest

from keysync.domain.reconciliation import OutOfAuthorityKey
from keysync.domain.registry import (
    ACTIVE,
    DEPRECATED,
    PROPOSED,
    REASON_IN_AUTHORITY,
    REASON_VANISHED,
    IllegalTransitionError,
    Registry,
    UnknownMasterKeyError,
)

ALL = {"A", "B", "C", "D", "E"}


def found(*keys: str, systems: tuple[str, ...] = ("B",)) -> dict[str, OutOfAuthorityKey]:
    return {k: OutOfAuthorityKey(k, k, list(systems), k.lower()) for k in keys}


def event_names(registry: Registry) -> list[str]:
    return [type(e).__name__ for e in registry.collect_events()]


def test_a_run_proposes_each_new_key_once_in_one_batch_event():
    registry = Registry()
    assert registry.record_run("r1", found("X-1", "X-2"), set(), ALL, auto_approve=False, actor="me") == [
        "X-1",
        "X-2",
    ]
    assert registry.record_run("r2", found("X-1", "X-2"), set(), ALL, auto_approve=False, actor="me") == []
    assert event_names(registry) == ["Created", "MasterKeysProposed", "MasterKeysSeen"]
    assert registry.status == {"X-1": PROPOSED, "X-2": PROPOSED}


def test_auto_approve_activates_new_proposals_in_the_same_run():
    registry = Registry()
    registry.record_run("r1", found("X-1"), set(), ALL, auto_approve=True, actor="me")
    assert registry.status["X-1"] == ACTIVE


def test_approve_then_deprecate_and_illegal_transitions_change_nothing():
    registry = Registry()
    registry.record_run("r1", found("X-1", "X-2"), set(), ALL, auto_approve=False, actor="me")
    assert registry.approve(["X-1"], "me") == ["X-1"]
    with pytest.raises(IllegalTransitionError, match="X-1"):
        registry.approve(["X-2", "X-1"], "me")
    assert registry.status == {"X-1": ACTIVE, "X-2": PROPOSED}
    registry.deprecate(["X-1"], "merged", "me")
    with pytest.raises(IllegalTransitionError, match="it is Deprecated"):
        registry.approve(["X-1"], "me")
    with pytest.raises(UnknownMasterKeyError, match="NOPE"):
        registry.deprecate(["NOPE"], "why", "me")
    assert registry.status == {"X-1": DEPRECATED, "X-2": PROPOSED}


def test_a_key_that_appears_in_a_is_deprecated_with_that_reason():
    registry = Registry()
    registry.record_run("r1", found("X-1"), set(), ALL, auto_approve=False, actor="me")
    registry.collect_events()
    registry.record_run("r2", {}, {"X-1"}, ALL, auto_approve=False, actor="me")
    [event] = [e for e in registry.collect_events() if type(e).__name__ == "MasterKeysDeprecated"]
    assert event.master_keys == ["X-1"] and event.reason == REASON_IN_AUTHORITY


def test_a_vanished_key_is_deprecated_only_when_its_systems_were_all_read():
    registry = Registry()
    registry.record_run("r1", found("X-1", systems=("B", "D")), set(), ALL, auto_approve=False, actor="me")
    registry.record_run("r2", {}, set(), ALL - {"D"}, auto_approve=False, actor="me")
    assert registry.status["X-1"] == PROPOSED  # D was unavailable: the key may still be there
    registry.collect_events()
    registry.record_run("r3", {}, set(), ALL, auto_approve=False, actor="me")
    [event] = registry.collect_events()
    assert event.reason == REASON_VANISHED and registry.status["X-1"] == DEPRECATED


def test_source_systems_accumulate_across_runs():
    registry = Registry()
    registry.record_run("r1", found("X-1", systems=("B",)), set(), ALL, auto_approve=False, actor="me")
    registry.record_run("r2", found("X-1", systems=("D",)), set(), ALL, auto_approve=False, actor="me")
    assert registry.systems["X-1"] == "B|D"


def test_a_deprecated_key_that_turns_up_again_stays_deprecated_but_is_noted_as_seen():
    registry = Registry()
    registry.record_run("r1", found("X-1"), set(), ALL, auto_approve=False, actor="me")
    registry.record_run("r2", {}, set(), ALL, auto_approve=False, actor="me")  # vanished: deprecated
    registry.collect_events()
    registry.record_run("r3", found("X-1", systems=("C",)), set(), ALL, auto_approve=False, actor="me")
    [event] = registry.collect_events()
    assert type(event).__name__ == "MasterKeysSeen" and event.entries == [["X-1", "B|C"]]
    assert registry.status["X-1"] == DEPRECATED

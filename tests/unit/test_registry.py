"""The master-key lifecycle, on the aggregate alone."""

import copy

import pyarrow as pa
import pytest
from eventsourcing.domain import Snapshot
from hypothesis import given
from hypothesis import strategies as st

from keysync.domain.reconciliation import out_of_authority_table
from keysync.domain.registry import (
    ACTIVE,
    DEPRECATED,
    PROPOSED,
    REASON_IN_AUTHORITY,
    REASON_RULES_CHANGED,
    REASON_SEEN_AGAIN,
    REASON_VANISHED,
    IllegalTransitionError,
    Registry,
    UnknownMasterKeyError,
    batch_keys,
    batch_rows,
)

ALL = {"A", "B", "C", "D", "E"}


def found(*keys: str, systems: tuple[str, ...] = ("B",)) -> pa.Table:
    return out_of_authority_table([[k, k, "|".join(systems), k.lower()] for k in keys])


def both(*tables: pa.Table) -> pa.Table:
    return pa.concat_tables(tables)


def as_v1_snapshot(registry: Registry, *missing: str) -> Registry:
    """The registry as it loads from a snapshot an earlier version took (a dict per column), without ``missing``."""
    snapshot = Snapshot.take(registry)
    state = {k: v for k, v in snapshot.state.items() if k not in ("keys", "sighted", "class_version")}
    state.update(status=registry.status, normalized=registry.normalized, systems=registry.systems)
    state.update(returns_to=registry.returns_to, seen=registry.seen)
    for name in missing:
        state.pop(name)
    old = Snapshot(
        originator_id=snapshot.originator_id,
        originator_version=snapshot.originator_version,
        timestamp=snapshot.timestamp,
        topic=snapshot.topic,
        state=state,
    )
    return old.mutate(None)


def event_names(registry: Registry) -> list[str]:
    return [type(e).__name__ for e in registry.collect_events()]


def test_a_run_proposes_each_new_key_once_in_one_batch_event():
    registry = Registry()
    assert registry.decide_run("r1", found("X-1", "X-2"), set(), ALL, auto_approve=False, actor="me").proposed == [
        "X-1",
        "X-2",
    ]
    assert registry.decide_run("r2", found("X-1", "X-2"), set(), ALL, auto_approve=False, actor="me").proposed == []
    assert event_names(registry) == ["Created", "MasterKeysProposed", "MasterKeysSeen"]
    assert registry.status == {"X-1": PROPOSED, "X-2": PROPOSED}


def test_auto_approve_activates_new_proposals_in_the_same_run():
    registry = Registry()
    registry.decide_run("r1", found("X-1"), set(), ALL, auto_approve=True, actor="me")
    assert registry.status["X-1"] == ACTIVE


def test_approve_then_deprecate_and_illegal_transitions_change_nothing():
    registry = Registry()
    registry.decide_run("r1", found("X-1", "X-2"), set(), ALL, auto_approve=False, actor="me")
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
    registry.decide_run("r1", found("X-1"), set(), ALL, auto_approve=False, actor="me")
    registry.collect_events()
    registry.decide_run("r2", found(), {"X-1"}, ALL, auto_approve=False, actor="me")
    [event] = [e for e in registry.collect_events() if type(e).__name__ == "MasterKeysDeprecated"]
    assert batch_keys(event.master_keys) == ["X-1"] and event.reason == REASON_IN_AUTHORITY


def test_a_vanished_key_is_deprecated_only_when_its_systems_were_all_read():
    registry = Registry()
    registry.decide_run("r1", found("X-1", systems=("B", "D")), set(), ALL, auto_approve=False, actor="me")
    registry.decide_run("r2", found(), set(), ALL - {"D"}, auto_approve=False, actor="me")
    assert registry.status["X-1"] == PROPOSED  # D was unavailable: the key may still be there
    registry.collect_events()
    registry.decide_run("r3", found(), set(), ALL, auto_approve=False, actor="me")
    [event] = registry.collect_events()
    assert event.reason == REASON_VANISHED and registry.status["X-1"] == DEPRECATED


def test_source_systems_accumulate_across_runs():
    registry = Registry()
    registry.decide_run("r1", found("X-1", systems=("B",)), set(), ALL, auto_approve=False, actor="me")
    registry.decide_run("r2", found("X-1", systems=("D",)), set(), ALL, auto_approve=False, actor="me")
    assert registry.systems["X-1"] == "B|D"


def test_a_key_deprecated_by_hand_that_turns_up_again_stays_deprecated_but_is_noted_as_seen():
    registry = Registry()
    registry.decide_run("r1", found("X-1"), set(), ALL, auto_approve=False, actor="me")
    registry.deprecate(["X-1"], "merged", "me")
    registry.collect_events()
    registry.decide_run("r3", found("X-1", systems=("C",)), set(), ALL, auto_approve=False, actor="me")
    [event] = registry.collect_events()
    assert type(event).__name__ == "MasterKeysSeen" and batch_rows(event.entries) == [["X-1", "B|C"]]
    assert registry.status["X-1"] == DEPRECATED


@pytest.mark.parametrize("before", [PROPOSED, ACTIVE])
@pytest.mark.parametrize("rules_changed", [False, True])
def test_a_key_a_run_found_nowhere_returns_to_its_status_when_seen_again(before, rules_changed):
    registry = Registry()
    registry.decide_run("r1", found("X-1"), set(), ALL, auto_approve=before == ACTIVE, actor="me")
    decided = registry.decide_run(
        "r2", found(), set(), ALL, auto_approve=False, actor="me", rules_changed=rules_changed
    )
    assert decided.deprecated == {REASON_RULES_CHANGED if rules_changed else REASON_VANISHED: ["X-1"]}
    registry.collect_events()
    decided = registry.decide_run("r3", found("X-1", systems=("C",)), set(), ALL, auto_approve=False, actor="me")
    assert decided.returned == {before: ["X-1"]} and registry.status["X-1"] == before
    _seen, back = registry.collect_events()
    assert type(back).__name__ == "MasterKeysReactivated"
    assert (batch_keys(back.master_keys), back.status, back.reason, back.run_id) == (
        ["X-1"],
        before,
        REASON_SEEN_AGAIN,
        "r3",
    )
    registry.decide_run("r4", found("X-1"), set(), ALL, auto_approve=False, actor="me")
    assert not registry.collect_events()[1:]  # seen once more: nothing else to decide


def test_a_key_that_entered_a_does_not_return_by_itself():
    registry = Registry()
    registry.decide_run("r1", found("X-1"), set(), ALL, auto_approve=True, actor="me")
    registry.decide_run("r2", found(), {"X-1"}, ALL, auto_approve=False, actor="me")
    registry.decide_run("r3", found("X-1"), set(), ALL, auto_approve=False, actor="me")
    assert registry.status["X-1"] == DEPRECATED


def test_a_vanished_key_deprecated_again_by_hand_no_longer_returns_by_itself():
    registry = Registry()
    registry.decide_run("r1", found("X-1"), set(), ALL, auto_approve=True, actor="me")
    registry.decide_run("r2", found(), set(), ALL, auto_approve=False, actor="me")
    registry.reactivate(["X-1"], "a bad export", "me")
    registry.deprecate(["X-1"], "retired", "me")
    registry.decide_run("r3", found("X-1"), set(), ALL, auto_approve=False, actor="me")
    assert registry.status["X-1"] == DEPRECATED


def test_reactivate_brings_deprecated_keys_to_active_and_refuses_the_rest_whole():
    registry = Registry()
    registry.decide_run("r1", found("X-1", "X-2", "X-3"), set(), ALL, auto_approve=False, actor="me")
    registry.deprecate(["X-1", "X-2"], "merged", "me")
    with pytest.raises(IllegalTransitionError, match="cannot make X-3 Active again: it is Proposed"):
        registry.reactivate(["X-1", "X-3"], "undo", "me")
    with pytest.raises(UnknownMasterKeyError, match="NOPE"):
        registry.reactivate(["X-1", "NOPE"], "undo", "me")
    assert registry.status == {"X-1": DEPRECATED, "X-2": DEPRECATED, "X-3": PROPOSED}
    registry.collect_events()
    assert registry.reactivate(["X-1", "X-1"], "undo", "me") == ["X-1"]
    [event] = registry.collect_events()
    assert (type(event).__name__, event.status, event.reason, event.actor) == ("MasterKeysReactivated", ACTIVE,
                                                                                "undo", "me")  # fmt: skip
    assert registry.status == {"X-1": ACTIVE, "X-2": DEPRECATED, "X-3": PROPOSED}


def test_the_stored_events_replay_into_the_same_registry_and_copies_are_independent():
    registry = Registry()
    registry.decide_run("r1", found("X-1", "X-2"), set(), ALL, auto_approve=True, actor="me")
    registry.decide_run("r2", found(), set(), ALL, auto_approve=False, actor="me")
    replayed = None
    for event in registry.collect_events():
        replayed = event.mutate(replayed)
    assert replayed.status == registry.status and replayed.returns_to == {"X-1": ACTIVE, "X-2": ACTIVE}
    copied = copy.deepcopy(replayed)
    copied.decide_run("r3", found("X-1"), set(), ALL, auto_approve=False, actor="me")
    assert copied.status["X-1"] == ACTIVE and replayed.status["X-1"] == DEPRECATED


def test_a_registry_from_a_snapshot_taken_before_keys_could_return_still_works():
    registry = Registry()
    registry.decide_run("r1", found("X-1"), set(), ALL, auto_approve=True, actor="me")
    registry = as_v1_snapshot(registry, "returns_to")
    registry.decide_run("r2", found(), set(), ALL, auto_approve=False, actor="me")
    registry.decide_run("r3", found("X-1"), set(), ALL, auto_approve=False, actor="me")
    assert registry.status["X-1"] == ACTIVE


KEYS = ["X-1", "X-2", "X-3"]


@given(st.lists(st.tuples(st.frozensets(st.sampled_from(KEYS)), st.booleans()), max_size=8))
def test_whatever_the_runs_a_key_found_is_never_deprecated_and_keeps_the_status_it_was_given(runs):
    """Runs that find some keys and not others (approving what they propose, or not): a key a run finds is never
    Deprecated after it, and is Active exactly when the run that first proposed it approved it."""
    registry, approved_at_proposal = Registry(), {}
    for i, (keys, auto_approve) in enumerate(runs):
        proposed = registry.decide_run(
            f"r{i}", found(*sorted(keys)), set(), ALL, auto_approve=auto_approve, actor="me"
        ).proposed
        approved_at_proposal.update(dict.fromkeys(proposed, auto_approve))
        for key in keys:
            assert registry.status[key] == (ACTIVE if approved_at_proposal[key] else PROPOSED)
        for key in set(registry.status) - keys:
            assert registry.status[key] == DEPRECATED


def seen_events(registry: Registry) -> list[tuple[str, list[list[str]], list[str] | None]]:
    return [
        (e.run_id, batch_rows(e.entries), None if e.unseen is None else batch_keys(e.unseen))
        for e in registry.collect_events()
        if type(e).__name__ == "MasterKeysSeen"
    ]


def test_a_run_records_only_what_changed_in_what_it_saw():
    registry = Registry()
    both_found = both(found("X-1"), found("X-2", systems=("D",)))
    registry.decide_run("r1", both_found, set(), ALL, auto_approve=False, actor="me")
    assert seen_events(registry) == []  # a first run's proposals are what it saw
    registry.decide_run("r2", both_found, set(), ALL, auto_approve=False, actor="me")
    assert seen_events(registry) == [("r2", [], [])]  # the same keys: nothing listed
    # D unavailable: X-2 (seen only in D) is not seen and not deprecated; X-1 is seen in C too.
    registry.decide_run("r3", found("X-1", systems=("B", "C")), set(), ALL - {"D"}, auto_approve=False, actor="me")
    assert seen_events(registry) == [("r3", [["X-1", "B|C"]], ["X-2"])]
    assert registry.status["X-2"] == PROPOSED
    registry.decide_run("r4", both(found("X-1", systems=("B", "C")), found("X-2", systems=("D",))), set(), ALL,
                        auto_approve=False, actor="me")  # fmt: skip
    assert seen_events(registry) == [("r4", [["X-2", "D"]], [])]  # seen anew, in the systems it had
    assert (registry.seen, registry.seen_by) == ({"X-1": None, "X-2": None}, "r4")


def test_a_registry_whose_snapshot_predates_sightings_lists_every_key_seen_once():
    registry = Registry()
    registry.decide_run("r1", found("X-1", "X-2"), set(), ALL, auto_approve=False, actor="me")
    registry = as_v1_snapshot(registry, "seen", "seen_by")
    registry.decide_run("r2", found("X-1", "X-3"), set(), ALL - {"B"}, auto_approve=False, actor="me")
    assert seen_events(registry) == [("r2", [["X-1", "B"]], None)]  # the form stored before: every known key seen
    assert registry.seen == {"X-1": None, "X-3": None}
    registry.decide_run("r3", found("X-3"), set(), ALL - {"B"}, auto_approve=False, actor="me")
    assert seen_events(registry) == [("r3", [], ["X-1"])]


def test_system_a_keys_given_as_arrow_decide_as_a_python_set_does():
    import pyarrow as pa

    decided = []
    for authority in ({"X-2", "CUST-1"}, pa.array(["CUST-1", "X-2"])):
        registry = Registry()
        registry.decide_run("r1", found("X-1", "X-2", "X-3"), set(), ALL, auto_approve=False, actor="me")
        registry.decide_run("r2", found("X-3"), authority, ALL - {"D"}, auto_approve=False, actor="me")
        decided.append((registry.status, [vars(e) | {"timestamp": None} for e in registry.collect_events()[1:]]))
    assert decided[0] == decided[1]
    assert decided[0][0] == {"X-1": DEPRECATED, "X-2": DEPRECATED, "X-3": PROPOSED}

"""The sandbox aggregate and its rows: checks before events, one event per operation, exact undo and redo."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keysync.domain.normalization import NormalizationRules, normalize_key
from keysync.domain.sandbox import (
    BulkLimitError,
    InvalidKeyError,
    InvalidStateNameError,
    KeysNotFoundError,
    NoKeysGivenError,
    NothingMatchedError,
    NothingToUndoError,
    NotStartedError,
    Operation,
    Original,
    Sandbox,
    UnknownSystemError,
    VariantUnchangedError,
    check_state_name,
)
from keysync.domain.sandbox_rows import (
    InvalidRowError,
    apply_diff,
    baseline,
    checked_rows,
    file_key,
    key_matcher,
    make_row,
    snapshot,
    variant,
)

LIMIT = 100_000
SEEN = "2026-01-02T03:04:05+00:00"


def op(n: int = 1, actor: str = "tester") -> Operation:
    return Operation(f"op{n}", actor, SEEN)


def initialized(keys: int = 20, seed: int = 1) -> Sandbox:
    sandbox = Sandbox()
    sandbox.initialize(op(0), keys, seed, LIMIT)
    return sandbox


def pending(sandbox: Sandbox) -> list[str]:
    return [type(e).__name__ for e in sandbox.collect_events()]


# ---- rows


def test_the_baseline_is_seeded_distinct_and_already_normalized():
    rows = baseline(500, 3)
    assert rows == baseline(500, 3)
    assert rows != baseline(500, 4)
    keys = [r[0] for r in rows]
    assert len(set(keys)) == 500 and keys == sorted(keys)
    assert all(normalize_key(k, NormalizationRules()) == k for k in keys)
    assert {r[1] for r in rows} <= {"customer", "product", "transaction"}


def test_a_key_with_bytes_that_are_not_utf8_keeps_its_bytes_in_hex():
    key = b"CUST-1\xff".decode("utf-8", "surrogateescape")
    row = make_row(key, "customer", "", SEEN)
    assert row == ["CUST-1\\xff", "customer", "", SEEN, "435553542d31ff"]
    assert file_key(row) == key
    assert row[0].isprintable()  # the event store's JSON and the terminal only ever see this form


def test_a_lone_surrogate_that_is_no_byte_is_refused():
    with pytest.raises(InvalidRowError):
        make_row("A\ud800")


@pytest.mark.parametrize(
    ("kind", "key", "expected"),
    [
        ("lower", "CUST-00042", "cust-00042"),
        ("upper", "cust-1", "CUST-1"),
        ("spaces", "CUST-1", "  CUST-1 "),
        ("delims", "PROD-ABC-042", "PROD_ABC_042"),
        ("delims", "ABC123", "ABC123_"),
        ("pad", "CUST-00042", "CUST-42"),
        ("pad", "TXN-2024-0007", "TXN-2024-7"),
    ],
)
def test_variants(kind: str, key: str, expected: str):
    assert variant(key, kind) == expected


def test_variants_that_normalization_reconciles_and_those_it_does_not():
    rules = NormalizationRules()
    for kind in ("lower", "upper", "spaces", "delims"):
        assert normalize_key(variant("PROD-ABC-042", kind), rules) == "PROD-ABC-042"
    assert normalize_key(variant("CUST-00042", "pad"), rules) != "CUST-00042"
    assert normalize_key(variant("CUST-00042", "pad"), NormalizationRules(pad_numbers=5)) == "CUST-00042"


@pytest.mark.parametrize(
    ("corruption", "reason"),
    [
        ("control", "control character \\x1b in key"),
        ("empty", "empty key"),
        ("long", "key longer than 16 characters (17)"),
        ("bytes", "key is not valid UTF-8"),
    ],
)
def test_corrupt_variants_are_rejected_for_the_reader_s_reason(corruption: str, reason: str):
    row = make_row(variant("CUST-00042", "corrupt", corruption=corruption, max_key_length=16))
    snap = snapshot("B", [make_row("OK-1"), row, make_row("OK-2")], max_key_length=16)
    assert snap.keys.to_pylist() == ["OK-1", "OK-2"]
    assert snap.lines.to_pylist() == [2, 4]
    assert [(r.line, r.reason) for r in snap.rejected] == [(3, reason)]


def test_a_quoted_line_break_moves_the_following_rows_down():
    snap = snapshot("B", [make_row("A\nB"), make_row("C\r\nD"), make_row("E")], max_key_length=256)
    assert snap.lines.to_pylist() == [6]  # "A\nB" spans lines 2-3, "C\r\nD" 4-5
    assert [r.line for r in snap.rejected] == [2, 4]


def test_key_matcher_takes_keys_and_case_sensitive_globs():
    matches = key_matcher(["X-1"], ["CUST-0*", "PROD-?"])
    assert [k for k in ["X-1", "CUST-01", "cust-01", "PROD-A", "PROD-AB", "Y"] if matches(k)] == [
        "X-1",
        "CUST-01",
        "PROD-A",
    ]


def test_checked_rows_refuses_what_would_read_back_differently():
    good = [["K", "customer", "WH-1", SEEN], ["K\\xff", "", "", "", "4bff"]]
    assert checked_rows(good) == good
    for bad in (
        [["K", "customer", "WH-1"]],
        [["K", "cust,omer", "", ""]],
        [["K", "", "", "yesterday"]],
        [["K", "", "", "", "not hex"]],
        [["K", 1, "", ""]],
        [["K\ud800", "", "", ""]],
        "not a list",
    ):
        with pytest.raises(InvalidRowError):
            checked_rows(bad)


# ---- the aggregate: checks first, then one event


def test_each_operation_is_one_event_however_many_keys():
    sandbox = initialized()
    sandbox.add_keys(op(), [f"NEW-{i}" for i in range(1000)], ["B", "C", "D", "E"], SEEN, LIMIT)
    assert pending(sandbox) == ["Opened", "Initialized", "KeysAdded"]
    assert sandbox.key_count == {"A": 20, "B": 1020, "C": 1020, "D": 1020, "E": 1020}
    [entry] = sandbox.operations[-1:]
    assert entry["operation"] == "add-key" and entry["keys"] == 1000 and entry["actor"] == "tester"


@pytest.mark.parametrize(
    ("command", "error"),
    [
        (lambda s: s.add_keys(op(), ["X"], ["F"], SEEN, LIMIT), UnknownSystemError),
        (lambda s: s.add_keys(op(), [], ["B"], SEEN, LIMIT), NoKeysGivenError),
        (lambda s: s.add_keys(op(), ["X", "Y", "Z"], ["B"], SEEN, 2), BulkLimitError),
        (lambda s: s.add_keys(op(), ["A\ud800"], ["B"], SEEN, LIMIT), InvalidKeyError),
        (lambda s: s.remove_keys(op(), ["B"], ["NOPE"], [], LIMIT), KeysNotFoundError),
        (lambda s: s.remove_keys(op(), ["B"], [], ["NOPE*"], LIMIT), NothingMatchedError),
        (lambda s: s.remove_keys(op(), ["B"], [], [], LIMIT), NoKeysGivenError),
        (lambda s: s.remove_keys(op(), ["B"], [], ["*"], 5), BulkLimitError),
        (lambda s: s.modify_key(op(), "NOPE", ["B"], kind="lower"), KeysNotFoundError),
        (lambda s: s.modify_key(op(), s.rows["B"][0][0], ["B"], kind="upper"), VariantUnchangedError),
        (lambda s: s.initialize(op(), 50, 1, 10), BulkLimitError),
        (lambda s: s.undo(op(), []), NothingToUndoError),
        (lambda s: s.to_undo(3), NothingToUndoError),
        (lambda s: s.to_redo(1), NothingToUndoError),
        (lambda s: s.load_state(op(), "../x", {}, LIMIT), InvalidStateNameError),
    ],
)
def test_a_refused_command_raises_before_any_event(command, error):
    sandbox = initialized()
    sandbox.collect_events()
    before = copy.deepcopy(sandbox.rows)
    with pytest.raises(error):
        command(sandbox)
    assert pending(sandbox) == []
    assert sandbox.rows == before


def test_keys_cannot_be_added_before_the_sandbox_has_data_of_its_own():
    sandbox = Sandbox()
    with pytest.raises(NotStartedError, match="start with keysync sandbox init"):
        sandbox.add_keys(op(), ["X"], ["B"], SEEN, LIMIT)
    sandbox.reset(op(), LIMIT, empty=True)
    sandbox.add_keys(op(), ["X"], ["B"], SEEN, LIMIT)
    assert sandbox.rows["B"] == [["X", "", "", SEEN]]


@pytest.mark.parametrize("name", ["demo", "Before-Demo_2", "x" * 64])
def test_valid_state_names(name: str):
    assert check_state_name(name) == name


@pytest.mark.parametrize("name", ["", "../x", "/tmp/x", "a/b", "a\\b", "a.json", ".hidden", "x" * 65, "sp ace", "ü"])
def test_state_names_that_could_be_paths_are_refused(name: str):
    with pytest.raises(InvalidStateNameError):
        check_state_name(name)


def diffs(events: list) -> dict[str, Original]:
    """Each operation's diff, read from its event, as the application reads them from the log."""
    return {e.operation_id: Original(e.operation_id, e.removed, e.added) for e in events if hasattr(e, "removed")}


def test_undo_and_redo_are_compensating_events_and_exact():
    sandbox = initialized()
    start = copy.deepcopy(sandbox.rows)
    sandbox.remove_keys(op(1), ["B", "D"], [], ["CUST-*"], LIMIT)
    sandbox.modify_key(op(2), sandbox.rows["A"][3][0], ["A", "C"], kind="lower")
    after = copy.deepcopy(sandbox.rows)
    logged = diffs(sandbox.collect_events())
    assert [i for i, _version in sandbox.to_undo(2)] == ["op2", "op1"]
    sandbox.undo(op(3), [logged["op2"], logged["op1"]])
    assert sandbox.rows == start
    assert pending(sandbox) == ["OperationReverted", "OperationReverted"]
    assert [o["undone"] for o in sandbox.operations[1:3]] == [True, True]
    assert [o["detail"] for o in sandbox.operations[3:]] == ["modify-key op2", "remove-key op1"]
    sandbox.redo(op(4), [logged["op1"], logged["op2"]])
    assert sandbox.rows == after
    assert pending(sandbox) == ["OperationRestored", "OperationRestored"]
    with pytest.raises(NothingToUndoError):
        sandbox.to_redo(1)


def test_undoing_an_init_or_reset_brings_back_the_baseline_reset_returns_to():
    sandbox = initialized(keys=30, seed=1)
    sandbox.initialize(op(1), 10, 9, LIMIT)
    sandbox.reset(op(2), LIMIT, keys=5)
    logged = diffs(sandbox.collect_events())
    init = logged["op1"]._replace(baseline_before=[30, 1], baseline_after=[10, 9])
    reset = logged["op2"]._replace(baseline_before=[10, 9], baseline_after=[5, 9])
    assert sandbox.baseline == [5, 9]

    sandbox.undo(op(3), [reset, init])
    assert sandbox.baseline == [30, 1]
    sandbox.redo(op(4), [init])
    assert sandbox.baseline == [10, 9]
    [event] = [e for e in sandbox.collect_events() if type(e).__name__ == "OperationRestored"]
    assert event.baseline == [10, 9]  # carried by the event: a replay or a snapshot gives the same state
    sandbox.reset(op(5), LIMIT)
    assert {len(rows) for rows in sandbox.rows.values()} == {10}


def test_a_new_change_clears_what_redo_could_bring_back():
    sandbox = initialized()
    sandbox.add_keys(op(1), ["X"], ["B"], SEEN, LIMIT)
    sandbox.undo(op(2), [diffs(sandbox.collect_events())["op1"]])
    assert len(sandbox.to_redo(1)) == 1
    sandbox.add_keys(op(3), ["Y"], ["C"], SEEN, LIMIT)
    with pytest.raises(NothingToUndoError):
        sandbox.to_redo(1)


_systems = st.sets(st.sampled_from("ABCDE"), min_size=1)
_edits = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.lists(st.sampled_from(["N-1", "N-2", "n 1", "\x07", ""]), min_size=1), _systems),
        st.tuples(st.just("remove"), st.sampled_from(["CUST-*", "*1*", "N-*", "*"]), _systems),
        st.tuples(
            st.just("modify"), st.integers(0, 30), st.sampled_from(["lower", "spaces", "delims", "pad", "corrupt"])
        ),
        st.tuples(st.just("reset"), st.booleans(), st.just(None)),
    ),
    min_size=1,
    max_size=8,
)


def apply_edit(sandbox: Sandbox, n: int, edit: tuple) -> bool:
    """Apply one random edit; False if the sandbox refused it (which it must do without changing anything)."""
    kind, a, b = edit
    try:
        if kind == "add":
            sandbox.add_keys(op(n), a, sorted(b), SEEN, LIMIT)
        elif kind == "remove":
            sandbox.remove_keys(op(n), sorted(b), [], [a], LIMIT)
        elif kind == "modify":
            rows = sandbox.rows["B"]
            if not rows:
                return False
            sandbox.modify_key(op(n), rows[a % len(rows)][0], ["B"], kind=b, corruption="bytes")
        else:
            sandbox.reset(op(n), LIMIT, empty=a)
    except Exception as error:
        assert type(error).__module__ == "keysync.domain.sandbox", error
        return False
    return True


@settings(max_examples=40, deadline=None)
@given(_edits)
def test_undoing_every_operation_restores_the_start_and_redoing_restores_the_end(edits):
    sandbox = initialized(keys=12)
    start = copy.deepcopy(sandbox.rows)
    applied = sum(apply_edit(sandbox, n, edit) for n, edit in enumerate(edits, 1))
    end = copy.deepcopy(sandbox.rows)
    logged = diffs(sandbox.collect_events())
    if applied:
        sandbox.undo(op(99), [logged[i] for i, _version in sandbox.to_undo(applied)])
    assert sandbox.rows == start
    if applied:
        sandbox.redo(op(100), [logged[i] for i, _version in sandbox.to_redo(applied)])
    assert sandbox.rows == end


def test_apply_diff_inserts_rows_back_in_their_places():
    rows = {"B": [["a"], ["b"], ["c"], ["d"]]}
    removed = [["B", 1, "b"], ["B", 3, "d"]]
    added = [["B", 0, "x"], ["B", 3, "y"]]
    apply_diff(rows, removed, added)
    assert rows["B"] == [["x"], ["a"], ["c"], ["y"]]
    apply_diff(rows, added, removed)
    assert rows["B"] == [["a"], ["b"], ["c"], ["d"]]

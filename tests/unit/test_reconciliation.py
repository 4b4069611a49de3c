"""Reconciliation semantics on small hand-made snapshots, and set properties with hypothesis."""

from hypothesis import given, settings
from hypothesis import strategies as st

from keysync.domain import reconciliation
from keysync.domain.normalization import NormalizationRules, normalize_key
from keysync.domain.observations import SYSTEMS, SourceSnapshot
from keysync.domain.reconciliation import master_key_for, reconcile

RULES = NormalizationRules()


def snap(system: str, *keys: str) -> SourceSnapshot:
    n = len(keys)
    return SourceSnapshot.of(system, f"{system}.csv", n, list(keys), ["customer"] * n, [""] * n, [""] * n,
                          list(range(2, n + 2)), [])  # fmt: skip


def test_classifies_missing_both_ways_after_normalization():
    recon = reconcile(
        {"A": snap("A", "CUST-1", "CUST-2", "CUST-3"), "B": snap("B", "cust_1", " cust 2 ", "CUST-9"),
         "C": snap("C", "CUST-1", "CUST-2", "CUST-3"), "D": snap("D"), "E": snap("E", "cust.3")},
        RULES,
    )  # fmt: skip
    b = recon.systems["B"]
    assert (b.matched, b.missing_in_a_keys(), b.missing_from_system_keys()) == (2, ["CUST-9"], ["CUST-3"])
    assert b.match_rate == 2 / 4
    assert recon.systems["C"].match_rate == 1.0
    assert recon.systems["D"].missing_from_system_keys() == ["CUST-1", "CUST-2", "CUST-3"]
    assert recon.systems["E"].keys.to_pylist()[0]["source_key"] == "cust.3"
    assert recon.systems["B"].missing_from_system.to_pylist()[0]["source_key"] == "CUST-3"  # A's raw form


def test_an_unavailable_system_has_no_diffs():
    recon = reconcile({"A": snap("A", "K-1"), "B": snap("B", "K-2")}, RULES, unavailable_reasons={"C": "gone"})
    c = recon.systems["C"]
    assert not c.available and c.unavailable_reason == "gone"
    assert c.missing_in_a.num_rows == 0 and c.missing_from_system.num_rows == 0
    assert recon.available_systems == {"A", "B"}


def test_duplicates_count_every_system_including_a_and_keep_raw_forms():
    recon = reconcile({"A": snap("A", "K-1", "k 1", "K-2"), "B": snap("B", "K-2", "K-2")}, RULES)
    [dup_a] = recon.systems["A"].duplicates.to_pylist()
    assert dup_a == {"normalized_key": "K-1", "occurrences": 2, "source_keys": "K-1 | k 1"}
    [dup_b] = recon.systems["B"].duplicates.to_pylist()
    assert dup_b == {"normalized_key": "K-2", "occurrences": 2, "source_keys": "K-2 (x2)"}


def test_a_key_that_normalizes_to_nothing_is_rejected_with_its_line():
    recon = reconcile({"A": snap("A", "K-1", "***")}, RULES)
    [row] = recon.systems["A"].rejected
    assert (row.line, row.severity, row.reason) == (3, "error", "key is empty after normalization")
    assert row.raw == "A,***,customer,,"
    assert recon.systems["A"].unique_keys == 1


def test_out_of_authority_keys_merge_systems_under_mirror_and_split_under_namespaced():
    snapshots = {"A": snap("A", "K-1"), "B": snap("B", "X-1"), "D": snap("D", "x_1")}
    mirror = reconcile(snapshots, RULES).out_of_authority().to_pylist()
    assert mirror == [{"master_key": "X-1", "normalized_key": "X-1", "systems": "B|D", "source_key": "X-1"}]
    namespaced = reconcile(snapshots, RULES, "namespaced").out_of_authority()
    assert sorted(namespaced["master_key"].to_pylist()) == ["A-B-X-1", "A-D-X-1"]
    assert master_key_for("C", "K-9", "namespaced") == "A-C-K-9"


keys = st.lists(st.sampled_from([f"K-{i}" for i in range(12)]), max_size=15)


@given(st.fixed_dictionaries({s: keys for s in SYSTEMS}))
def test_set_semantics_hold_for_any_key_sets(data):
    recon = reconcile({s: snap(s, *ks) for s, ks in data.items()}, RULES)
    a = set(data["A"])
    for system in SYSTEMS[1:]:
        s, r = set(data[system]), recon.systems[system]
        assert set(r.missing_in_a_keys()) == s - a
        assert set(r.missing_from_system_keys()) == a - s
        assert r.matched == len(s & a)
        assert r.match_rate == (len(s & a) / len(s | a) if s | a else 1.0)
        assert set(r.duplicate_keys()) == {k for k in s if data[system].count(k) > 1}


RAW = st.sampled_from(["K-1", "k-1", " K-2", "K-3", "", "  ", "***", "K-4", "x-9", "k 3", "Ｋ－１", "=K-5", 'K,"6'])
SEEN = st.sampled_from(["", "2026-01-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00", "2025-12-31T23:59:59+00:00"])
ROWS = st.lists(st.tuples(RAW, SEEN, st.sampled_from(["customer", "product"])), max_size=14)


def rich_snap(system: str, rows: list[tuple[str, str, str]]) -> SourceSnapshot:
    n = len(rows)
    keys, seen, types = ([r[i] for r in rows] for i in range(3))
    return SourceSnapshot.of(system, f"{system}.csv", n, keys, types, [""] * n, seen, list(range(2, n + 2)), [])


def reference(snapshot: SourceSnapshot, rules: NormalizationRules) -> dict[str, dict[str, object]]:
    """Each normalized key's first raw form and entity type, latest last seen, occurrences and raw forms: the
    reconciliation's definition, one row at a time."""
    found: dict[str, dict[str, object]] = {}
    for raw, kind, seen in zip(
        *(c.to_pylist() for c in (snapshot.keys, snapshot.entity_types, snapshot.last_seen_at)), strict=True
    ):
        key = normalize_key(raw, rules)
        if not key:
            continue
        entry = found.setdefault(key, {"source_key": raw, "entity_type": kind, "last_seen_at": "", "forms": {}})
        entry["last_seen_at"] = max(entry["last_seen_at"], seen)  # type: ignore[type-var]
        entry["forms"][raw] = entry["forms"].get(raw, 0) + 1  # type: ignore[index,union-attr]
    return found


@settings(max_examples=200)
@given(st.fixed_dictionaries({s: ROWS for s in SYSTEMS}), st.sampled_from([0, 4]))
def test_the_columnar_reconciliation_agrees_with_the_row_by_row_definition(data, pad):
    rules = NormalizationRules(pad_numbers=pad)
    snapshots = {s: rich_snap(s, rows) for s, rows in data.items()}
    recon = reconcile(snapshots, rules)
    expected = {s: reference(snapshot, rules) for s, snapshot in snapshots.items()}
    for system, result in recon.systems.items():
        want = expected[system]
        assert sorted(result.key_list()) == sorted(want)
        assert [row["normalized_key"] for row in result.keys.to_pylist()] == sorted(want)  # the table is sorted
        for row in result.keys.to_pylist():
            entry = want[row["normalized_key"]]
            assert (row["source_key"], row["entity_type"], row["last_seen_at"]) == (
                entry["source_key"], entry["entity_type"], entry["last_seen_at"],
            )  # fmt: skip
            assert row["occurrences"] == sum(entry["forms"].values())  # type: ignore[union-attr]
        duplicated = {k: e for k, e in want.items() if sum(e["forms"].values()) > 1}  # type: ignore[union-attr]
        assert [d["normalized_key"] for d in result.duplicates.to_pylist()] == sorted(duplicated)
        for d in result.duplicates.to_pylist():
            forms = duplicated[d["normalized_key"]]["forms"]
            assert d["source_keys"] == " | ".join(k if n == 1 else f"{k} (x{n})" for k, n in forms.items())  # type: ignore[union-attr]
        emptied = [i + 2 for i, raw in enumerate(snapshots[system].keys.to_pylist()) if not normalize_key(raw, rules)]
        assert [r.line for r in result.rejected] == emptied
        if system != "A":
            a = expected["A"]
            assert result.missing_in_a_keys() == sorted(set(want) - set(a))
            assert result.missing_from_system_keys() == sorted(set(a) - set(want))
            gaps = result.missing_from_system.to_pylist()
            assert all(g["source_key"] == a[g["normalized_key"]]["source_key"] for g in gaps)


@settings(max_examples=150)
@given(st.fixed_dictionaries({s: ROWS for s in SYSTEMS}), st.sampled_from(["mirror", "namespaced"]))
def test_out_of_authority_agrees_with_the_row_by_row_definition(data, strategy):
    # In the order first met: systems in A-E order, each one's missing keys in key order.
    recon = reconcile({s: rich_snap(s, rows) for s, rows in data.items()}, RULES, strategy)
    a = reference(rich_snap("A", data["A"]), RULES)
    expected: dict[str, tuple[str, list[str], str]] = {}
    for system in SYSTEMS[1:]:
        found = reference(rich_snap(system, data[system]), RULES)
        for key in sorted(set(found) - set(a)):
            master = master_key_for(system, key, strategy)
            expected.setdefault(master, (key, [], str(found[key]["source_key"])))[1].append(system)
    got = recon.out_of_authority().to_pylist()
    assert [o["master_key"] for o in got] == list(expected)
    assert {o["master_key"]: (o["normalized_key"], o["systems"].split("|"), o["source_key"]) for o in got} == expected


def test_keys_past_two_gigabytes_compare_as_the_rest(monkeypatch):
    snapshots = {"A": snap("A", "K-1", "k 2", "K-3"), "B": snap("B", "x_1", "K-2", "K-2"), "C": snap("C", "K-3")}
    narrow = reconcile(snapshots, RULES)
    monkeypatch.setattr(reconciliation, "WIDE_TEXT", 0)  # as if the keys' text passed 2 GiB
    wide = reconcile(snapshots, RULES)
    assert wide.totals() == narrow.totals()
    for system in "ABC":
        assert wide.systems[system].keys.equals(narrow.systems[system].keys)
        assert wide.systems[system].missing_in_a.equals(narrow.systems[system].missing_in_a)
    assert wide.out_of_authority().equals(narrow.out_of_authority())

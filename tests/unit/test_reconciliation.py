"""Reconciliation semantics on small hand-made snapshots, and set properties with hypothesis."""

from hypothesis import given
from hypothesis import strategies as st

from keysync.domain.normalization import NormalizationRules
from keysync.domain.observations import SYSTEMS, SourceSnapshot
from keysync.domain.reconciliation import master_key_for, reconcile

RULES = NormalizationRules()


def snap(system: str, *keys: str) -> SourceSnapshot:
    n = len(keys)
    return SourceSnapshot(system, f"{system}.csv", n, list(keys), ["customer"] * n, [""] * n, [""] * n,
                          list(range(2, n + 2)), [])  # fmt: skip


def test_classifies_missing_both_ways_after_normalization():
    recon = reconcile(
        {"A": snap("A", "CUST-1", "CUST-2", "CUST-3"), "B": snap("B", "cust_1", " cust 2 ", "CUST-9"),
         "C": snap("C", "CUST-1", "CUST-2", "CUST-3"), "D": snap("D"), "E": snap("E", "cust.3")},
        RULES,
    )  # fmt: skip
    b = recon.systems["B"]
    assert (b.matched, b.missing_in_a, b.missing_from_system) == (2, ["CUST-9"], ["CUST-3"])
    assert b.match_rate == 2 / 4
    assert recon.systems["C"].match_rate == 1.0
    assert recon.systems["D"].missing_from_system == ["CUST-1", "CUST-2", "CUST-3"]
    assert recon.systems["E"].source_key("CUST-3") == "cust.3"


def test_an_unavailable_system_has_no_diffs():
    recon = reconcile({"A": snap("A", "K-1"), "B": snap("B", "K-2")}, RULES, unavailable_reasons={"C": "gone"})
    c = recon.systems["C"]
    assert not c.available and c.unavailable_reason == "gone"
    assert c.missing_in_a == [] and c.missing_from_system == []
    assert recon.available_systems == {"A", "B"}


def test_duplicates_count_every_system_including_a_and_keep_raw_forms():
    recon = reconcile({"A": snap("A", "K-1", "k 1", "K-2"), "B": snap("B", "K-2", "K-2")}, RULES)
    [dup_a] = recon.systems["A"].duplicates
    assert (dup_a.normalized_key, dup_a.occurrences, dup_a.source_keys) == ("K-1", 2, ["K-1", "k 1"])
    [dup_b] = recon.systems["B"].duplicates
    assert dup_b.source_keys == ["K-2"] and dup_b.occurrences == 2


def test_a_key_that_normalizes_to_nothing_is_rejected_with_its_line():
    recon = reconcile({"A": snap("A", "K-1", "***")}, RULES)
    [row] = recon.systems["A"].rejected
    assert (row.line, row.severity, row.reason) == (3, "error", "key is empty after normalization")
    assert row.raw == "A,***,customer,,"
    assert recon.systems["A"].unique_keys == 1


def test_out_of_authority_keys_merge_systems_under_mirror_and_split_under_namespaced():
    snapshots = {"A": snap("A", "K-1"), "B": snap("B", "X-1"), "D": snap("D", "x_1")}
    mirror = reconcile(snapshots, RULES).out_of_authority()
    assert list(mirror) == ["X-1"] and mirror["X-1"].systems == ["B", "D"]
    assert mirror["X-1"].source_key == "X-1"
    namespaced = reconcile(snapshots, RULES, "namespaced").out_of_authority()
    assert sorted(namespaced) == ["A-B-X-1", "A-D-X-1"]
    assert master_key_for("C", "K-9", "namespaced") == "A-C-K-9"


keys = st.lists(st.sampled_from([f"K-{i}" for i in range(12)]), max_size=15)


@given(st.fixed_dictionaries({s: keys for s in SYSTEMS}))
def test_set_semantics_hold_for_any_key_sets(data):
    recon = reconcile({s: snap(s, *ks) for s, ks in data.items()}, RULES)
    a = set(data["A"])
    for system in SYSTEMS[1:]:
        s, r = set(data[system]), recon.systems[system]
        assert set(r.missing_in_a) == s - a
        assert set(r.missing_from_system) == a - s
        assert r.matched == len(s & a)
        assert r.match_rate == (len(s & a) / len(s | a) if s | a else 1.0)
        assert {d.normalized_key for d in r.duplicates} == {k for k in s if data[system].count(k) > 1}

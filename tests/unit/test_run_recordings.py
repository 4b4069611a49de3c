"""A run that records a system again (a resumed run whose export changed meanwhile): folding its events gives the
newer recording, whatever the two were (rows whole, as a delta on an earlier run's rows in this version's form or
0.1.0's, unchanged, unavailable, or held back)."""

from __future__ import annotations

import hashlib
from typing import Any

import attrs
import numpy as np
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from keysync.domain.columns import pack_lines, pack_text
from keysync.domain.observations import Fingerprint, SourceSnapshot, row_schema
from keysync.domain.row_delta import row_delta
from keysync.domain.run import ReconciliationRun, snapshots_from_events, spliced

BASE_RUN = "base-run"
BASE = SourceSnapshot.of("B", "B.csv", 3, ["K1", "K2", "K3"], ["c"] * 3, [""] * 3, [""] * 3, [2, 3, 4], [])


def rows(keys: list[str], seed: int) -> SourceSnapshot:
    n = len(keys)
    fp = Fingerprint(size=seed, mtime_ns=seed, sha256=f"{seed:064x}")
    return SourceSnapshot.of("B", "B.csv", n, keys, ["c"] * n, [""] * n, [""] * n, list(range(2, n + 2)), [], fp)


# One recording of System B: ("whole"|"delta" (0.1.0's)|"spliced"|"unchanged"|"unavailable"|"held back", its keys)
recordings = st.tuples(
    st.sampled_from(["whole", "delta", "spliced", "unchanged", "unavailable", "held back"]),
    st.lists(st.sampled_from(["K1", "K2", "K3", "K4", "K5"]), max_size=5),
)


def record(run: ReconciliationRun, how: str, keys: list[str], seed: int) -> tuple[list[str] | None, str]:
    """Record B on ``run``; return the keys and unavailable reason that folding must then give."""
    snapshot = rows(keys, seed)
    if how == "whole":
        run.observe(snapshot, batch_size=2)
    elif how == "delta":
        record_as_delta(run, snapshot)
    elif how == "spliced":
        delta = row_delta(hashes(BASE), hashes(snapshot))
        run.observe_changes(snapshot, BASE_RUN, 1, delta, batch_size=2)
    elif how == "unchanged":
        run.observe_unchanged("B", "B.csv", snapshot.fingerprint, BASE_RUN, 0, len(BASE))  # type: ignore[arg-type]
        return BASE.keys.to_pylist(), ""
    elif how == "held back":  # the base run's rows stand in for the suspect export
        run.hold_back(snapshot, f"suspect {seed}", {"run_id": "r0", "holder": BASE_RUN, "depth": 0, "rows": 3})
        return BASE.keys.to_pylist(), ""
    else:
        run.mark_unavailable("B", "B.csv", f"reason {seed}")
        return None, f"reason {seed}"
    return keys, ""


def record_as_delta(
    run: ReconciliationRun, snapshot: SourceSnapshot, base: SourceSnapshot = BASE, base_run: str = BASE_RUN
) -> None:
    """Record B as earlier versions recorded a changed export: the rows removed from the rows ``base_run`` holds
    (``base``) and the rows added (here: every row after the keys both share at the start)."""
    keys, n = snapshot.keys.to_pylist(), len(snapshot)
    same = next(
        (i for i, (a, b) in enumerate(zip(base.keys.to_pylist(), keys, strict=False)) if a != b), min(len(base), n)
    )
    added = list(range(same, n))
    fingerprint = list(attrs.astuple(snapshot.fingerprint))
    run._source_changed("B", "B.csv", n, fingerprint, base_run, 1, n, pack_lines(snapshot.lines.to_pylist()))
    if same < len(base):
        run._remove_rows("B", pack_lines(range(same, len(base))))
    if added:
        values = [
            [column[i] for i in added]
            for column in (keys, snapshot.entity_types.to_pylist(), snapshot.location_refs.to_pylist())
        ]
        run._add_rows("B", pack_lines(added), *map(pack_text, values), pack_text([""] * len(added)))


def hashes(snapshot: SourceSnapshot) -> np.ndarray:
    """Each row's two hashes, from its values (as keysync.infrastructure.row_hashes makes them, in spirit)."""
    values = zip(*(c.to_pylist() for c in (snapshot.keys, snapshot.entity_types, snapshot.location_refs,
                                           snapshot.last_seen_at)), strict=True)  # fmt: skip
    digests = [hashlib.sha256("\x1f".join(row).encode()).digest()[:16] for row in values]
    return np.frombuffer(b"".join(digests), dtype=np.uint64).reshape(-1, 2)


def base_snapshot(run: str, system: str) -> SourceSnapshot:
    assert (run, system) == (BASE_RUN, "B")
    return BASE


@given(st.lists(recordings, min_size=1, max_size=4), st.booleans())
def test_the_newest_recording_of_a_system_is_the_runs(history: list[tuple[str, list[str]]], supersede: bool) -> None:
    run = ReconciliationRun(run_id="r1", mode="incremental", options={}, actor="test")
    expected: tuple[list[str] | None, str] = (None, "")
    for seed, (how, keys) in enumerate(history, start=1):
        if seed > 1 and supersede:  # as a resumed run does; an older store's fold must not need it
            run.supersede("B", "B.csv", "changed since it was recorded")
        expected = record(run, how, keys, seed)
    events: list[Any] = run.collect_events()
    snapshots, unavailable = snapshots_from_events(events, base_snapshot)
    keys, reason = expected
    assert (snapshots["B"].keys.to_pylist() if "B" in snapshots else None) == keys
    assert unavailable.get("B", "") == reason
    assert run.unavailable.get("B", "") == reason
    assert ("B" in run.observed) == (keys is not None)
    held = history[-1][0] == "held back"
    assert run.held_back.get("B") == (f"suspect {len(history)}" if held else None)
    assert ("B" in run.stand_ins) == held


def test_a_superseded_recording_not_yet_replaced_leaves_the_system_to_read() -> None:
    run = ReconciliationRun(run_id="r1", mode="full", options={}, actor="test")
    run.observe(rows(["K1"], 1), batch_size=2)
    run.mark_unavailable("C", "C.csv", "file not found")
    run.supersede("B", "B.csv", "changed since it was recorded")
    run.supersede("C", "C.csv", "was unavailable when recorded and can be opened now")
    snapshots, unavailable = snapshots_from_events(run.collect_events())
    assert snapshots == {} and unavailable == {}
    assert run.observed == {} and run.unavailable == {}


def test_a_held_back_recording_set_aside_leaves_the_system_to_read_and_no_longer_suspect() -> None:
    run = ReconciliationRun(run_id="r1", mode="full", options={}, actor="test")
    run.hold_back(rows(["K1"], 1), "suspect", {"run_id": "r0", "holder": BASE_RUN, "depth": 0, "rows": 3})
    run.supersede("B", "B.csv", "is to be taken as it is now (--accept-shrink)")
    snapshots, unavailable = snapshots_from_events(run.collect_events(), base_snapshot)
    assert snapshots == {} and unavailable == {}
    assert run.observed == {} and run.held_back == {} and run.stand_ins == {}


@given(st.lists(st.integers(), max_size=40), st.data())
def test_splicing_removes_and_inserts_rows_like_a_list_would(old: list[int], data: st.DataObject) -> None:
    removed = sorted(data.draw(st.sets(st.sampled_from(range(len(old))))) if old else [])
    kept = [v for i, v in enumerate(old) if i not in set(removed)]
    added = data.draw(st.lists(st.integers(), max_size=10))
    size = len(kept) + len(added)
    at = (
        sorted(data.draw(st.sets(st.sampled_from(range(size)), min_size=len(added), max_size=len(added))))
        if size
        else []
    )
    slots = dict(zip(at, added, strict=True))
    rest = iter(kept)
    expected = [slots[i] if i in slots else next(rest) for i in range(size)]
    base = table(old)
    # The removed positions and the added rows come in batches, as RowsSpliced events carry them.
    cut = data.draw(st.integers(0, len(added)))
    batches = [table(added[:cut], at[:cut]), table(added[cut:], at[cut:])]
    rows = spliced(base, [removed[:cut], removed[cut:]], batches, list(range(2, size + 2)))
    assert rows is not None
    assert rows.column("key").to_pylist() == [str(v) for v in expected]
    assert rows.column("line").to_pylist() == list(range(2, size + 2))


def test_a_delta_that_does_not_fit_its_base_is_refused() -> None:
    base = table([1, 2, 3])
    assert spliced(base, [[5]], [], [2, 3]) is None  # no row 5
    assert spliced(base, [[0]], [], [2, 3, 4]) is None  # three lines for two rows
    assert spliced(base, [], [table([9], [7])], [2, 3, 4, 5]) is None  # no position 7 among four


def table(values: list[int], at: list[int] | None = None) -> pa.Table:
    n = len(values)
    columns = {"key": [str(v) for v in values], "entity_type": ["c"] * n, "location_ref": [""] * n,
               "last_seen_at": [""] * n, "line": [0] * n}  # fmt: skip
    rows = pa.table(columns, schema=row_schema())
    return rows if at is None else rows.append_column("at", pa.array(at, pa.int64()))

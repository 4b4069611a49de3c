"""Observation batches are stored as binary frames of Arrow IPC, on either backend, and every earlier form of them
still loads: tables in base64 inside the event's JSON (before the frame), and plain JSON events."""

from __future__ import annotations

import pyarrow as pa
import pytest
from eventsourcing.persistence import JSONTranscoder, Transcoder

from keysync.application.bootstrap import store_env
from keysync.application.store import KeySyncStore
from keysync.domain.observations import Fingerprint, SourceSnapshot
from keysync.domain.run import ReconciliationRun
from keysync.infrastructure.arrow_transcoding import FRAME, KeySyncTranscoder, _ArrowTableAsIPC
from keysync.infrastructure.compression import SMALL, ZLIB, ZstdCompressor
from keysync.infrastructure.config import load_config
from keysync.infrastructure.postgres_store import PostgresTarget
from tests.conftest import POSTGRES_DSN

KEYS = ["CUST-1", "cust 2", "ＣＵＳＴ-３", '"quoted",comma', "tab\there", "é\u0301", ""]
ROWS_OBSERVED = "keysync.domain.run:ReconciliationRun.RowsObserved"


def snapshot(system: str) -> SourceSnapshot:
    n = len(KEYS)
    fingerprint = Fingerprint(size=1, mtime_ns=1, sha256="0" * 64)
    return SourceSnapshot.of(
        system, f"{system}.csv", n, KEYS, ["customer"] * n, ["L1"] * n, ["2026-01-01T00:00:00+00:00"] * n,
        list(range(2, n + 2)), [], fingerprint,
    )  # fmt: skip


def recorded_run(store: KeySyncStore, system: str) -> ReconciliationRun:
    run = ReconciliationRun(run_id=f"run-{system}", mode="full", options={}, actor="t")
    run.observe(snapshot(system), batch_size=3)
    store.save(run)
    return run


def stored_states(store: KeySyncStore, run: ReconciliationRun) -> list[bytes]:
    return [
        bytes(e.state)
        for e in store.recorder.select_events(run.id)
        if e.topic == ROWS_OBSERVED  # the batches
    ]


def rows_of(store: KeySyncStore, run: ReconciliationRun, system: str) -> pa.Table:
    snapshots, _ = store.run_snapshots(run.id)
    return snapshots[system].rows


class StoreBeforeTheFrame(KeySyncStore):
    """The store as it wrote observation batches before the frame: each table in base64 inside the JSON."""

    name = KeySyncStore.name  # the same tables

    def construct_transcoder(self) -> Transcoder:
        transcoder = JSONTranscoder()
        transcoder.register(_ArrowTableAsIPC())
        self.register_transcodings(transcoder)
        return transcoder


def test_an_observation_batch_is_stored_as_a_frame_and_read_back_as_it_was(any_project):
    env = store_env(load_config(any_project.config), create_tables=True)
    KeySyncStore(env=env)  # creates the tables
    store = KeySyncStore(env=env)
    run = recorded_run(store, "A")
    states = stored_states(store, run)
    assert len(states) == 3
    assert all(s.startswith(FRAME) and b"arrow_ipc" not in s for s in states)

    again = KeySyncStore(env=env)  # nothing kept from saving
    assert rows_of(again, run, "A").equals(snapshot("A").rows)
    assert again.run(run.id).observed == {"A": len(KEYS)}


def test_a_store_holding_tables_in_base64_json_still_loads_beside_frames(any_project):
    env = store_env(load_config(any_project.config), create_tables=True)
    KeySyncStore(env=env)
    before = recorded_run(StoreBeforeTheFrame(env=env), "A")
    store = KeySyncStore(env=env)
    after = recorded_run(store, "B")
    old = [ZstdCompressor().decompress(s) for s in stored_states(store, before)]
    assert old and all(s.startswith(b"{") and b'"_type_":"arrow_ipc"' in s for s in old)

    again = KeySyncStore(env=env)
    assert rows_of(again, before, "A").equals(snapshot("A").rows)
    assert rows_of(again, after, "B").equals(snapshot("B").rows)


def test_events_without_tables_stay_compressed_json_and_frames_are_not_compressed_again():
    transcoder, compressor = KeySyncTranscoder(), ZstdCompressor()
    plain = transcoder.encode({"system": "A", "lines": [[1, "error", "why", "raw"]]})
    assert plain.startswith(b"{")
    assert transcoder.decode(compressor.decompress(compressor.compress(plain))) == {
        "system": "A",
        "lines": [[1, "error", "why", "raw"]],
    }
    table = snapshot("A").rows
    frame = transcoder.encode({"system": "A", "rows": table, "after": 1})
    assert compressor.compress(frame) is frame and compressor.decompress(frame) is frame
    decoded = transcoder.decode(frame)
    assert list(decoded) == ["system", "rows", "after"]  # the event's attributes keep their order
    assert decoded["rows"].equals(table) and (decoded["system"], decoded["after"]) == ("A", 1)


def test_small_events_are_zlib_large_ones_zstd_and_both_kinds_already_stored_still_read():
    compressor = ZstdCompressor()
    small = JSONTranscoder().encode({"system": "A", "options": {"rules": {"trim": True}}, "rows": 12})
    large = JSONTranscoder().encode({"master_keys": [f"CUST-{i}" for i in range(SMALL // 8)]})
    assert len(small) < SMALL <= len(large)
    stored_small, stored_large = compressor.compress(small), compressor.compress(large)
    assert stored_small.startswith(ZLIB) and not stored_large.startswith(ZLIB)
    assert len(stored_large) < len(large) // 4 and int.from_bytes(stored_large[:8], "little") == len(large)
    assert compressor.decompress(stored_small) == small and compressor.decompress(stored_large) == large
    # How a small event was stored before: its length, then zstd.
    earlier = len(small).to_bytes(8, "little") + pa.Codec("zstd").compress(small, asbytes=True)
    assert compressor.decompress(earlier) == small


@pytest.mark.skipif(not POSTGRES_DSN, reason="no PostgreSQL server given")
def test_postgresql_stores_the_states_as_they_come_without_compressing_them_again(any_project):
    """Also in a store whose tables an earlier version made: once `keysync store init` has run."""
    if "postgres" not in any_project.config.read_text(encoding="utf-8"):
        pytest.skip("SQLite")
    config = load_config(any_project.config)
    target = PostgresTarget.from_dsn(config.store.dsn)

    def storage() -> str:
        with target.connect() as conn:
            found = conn.execute(
                "SELECT a.attstorage FROM pg_attribute a JOIN pg_class c ON a.attrelid = c.oid "
                "JOIN pg_namespace n ON c.relnamespace = n.oid "
                "WHERE n.nspname = %s AND c.relname = %s AND a.attname = 'state'",
                (target.schema, f"{KeySyncStore.name}_events"),
            ).fetchone()
        assert found
        return found[0]

    assert storage() == "e"  # external: out of line, never compressed by the server
    with target.connect(autocommit=True) as conn:  # as an earlier version made it
        conn.execute(f'ALTER TABLE "{target.schema}".{KeySyncStore.name}_events ALTER COLUMN state SET STORAGE MAIN')
    any_project.invoke("store", "init")
    assert storage() == "e"
    store = KeySyncStore(env=store_env(config))
    run = recorded_run(store, "A")
    assert rows_of(KeySyncStore(env=store_env(config)), run, "A").equals(snapshot("A").rows)

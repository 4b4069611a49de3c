"""What a run keeps of an export beside the store comes back as it was kept, and only for that export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from keysync.domain.observations import Fingerprint
from keysync.infrastructure.export_cache import ExportCache
from keysync.infrastructure.sources import read_source

RULES = '{"uppercase": true}'


def export(tmp_path: Path) -> Path:
    path = tmp_path / "B.csv"
    rows = [f"B,K-{i},customer,WH-1," for i in range(50)]
    path.write_text("\n".join(["source_system,source_key,entity_type,location_ref,last_seen_at", *rows, "B,x"]) + "\n")
    return path


def test_an_export_kept_with_its_lines_and_keys_comes_back_as_it_was(tmp_path):
    snapshot = read_source("B", export(tmp_path), keep_lines=True)
    cache = ExportCache(tmp_path / "exports")
    keys = pa.array([k.lower() for k in snapshot.keys.to_pylist()])
    staged = cache.stage("B", RULES, keys)
    assert staged.equals(keys)
    cache.keep("run-1", snapshot, (RULES, staged))
    assert [p.name for p in (tmp_path / "exports").iterdir()] == ["B-run-1"]  # nothing staged is left
    kept = cache.kept("run-1", "B", snapshot.fingerprint)
    assert kept is not None and kept.rows.equals(snapshot.rows)
    assert (kept.rejected, kept.rows_read, kept.file) == (snapshot.rejected, snapshot.rows_read, snapshot.file)
    assert np.array_equal(kept.export_lines.hashes, snapshot.export_lines.hashes)
    assert np.array_equal(kept.export_lines.blank, snapshot.export_lines.blank)
    assert cache.normalized("run-1", "B", RULES).equals(keys)
    assert cache.normalized("run-1", "B", '{"uppercase": false}') is None  # kept under other rules


def test_what_is_kept_is_not_used_for_another_export_or_run_or_once_damaged(tmp_path):
    snapshot = read_source("B", export(tmp_path))  # a full run's: no lines
    cache = ExportCache(tmp_path / "exports")
    cache.keep("run-1", snapshot)
    assert cache.kept("run-1", "B", snapshot.fingerprint).export_lines is None
    other = Fingerprint(snapshot.fingerprint.size, 0, "0" * 64)
    assert cache.kept("run-1", "B", other) is None
    assert cache.kept("run-2", "B", snapshot.fingerprint) is None
    cache.keep("run-2", snapshot)  # the system's latest: the earlier one goes
    assert cache.kept("run-1", "B", snapshot.fingerprint) is None
    (tmp_path / "exports" / "B-run-2" / "rows.arrow").write_bytes(b"not rows")
    assert cache.kept("run-2", "B", snapshot.fingerprint) is None

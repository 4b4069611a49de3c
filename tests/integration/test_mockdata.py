"""The seeded mock-data generator, checked by reading back the files it writes."""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from keysync.domain.normalization import NormalizationRules, normalize_key
from keysync.infrastructure.mockdata import COLUMNS, SCENARIOS, generate

SYSTEMS = ("A", "B", "C", "D", "E")
DOWNSTREAM = SYSTEMS[1:]
RULES = NormalizationRules()
SHAPES = {
    "customer": re.compile(r"CUST-[1-9][0-9]{4,}"),
    "product": re.compile(r"PROD-[A-Z]{3}-[1-9][0-9]{2,}"),
    "transaction": re.compile(r"TXN-20[0-9]{2}-[0-9]{3,}"),
}
MATCH_TARGET = {"normal": 0.80, "drift": 0.60, "failure": 0.50, "recovery": 0.75}
DEFAULT_AS_OF = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Export:
    """One file read back: the accepted rows (as fields) and the rejected lines (by reason)."""

    lines: list[bytes] = field(default_factory=list)  # data lines, header excluded
    valid: list[list[str]] = field(default_factory=list)
    valid_lines: list[bytes] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)

    def keys(self) -> set[str]:
        return {normalize_key(row[1], RULES) for row in self.valid}


def _key_problem(key: str) -> str | None:
    if not key:
        return "empty_key"
    if len(key) > 256:
        return "too_long"
    if any(unicodedata.category(char) == "Cc" for char in key):
        return "control_char"
    return None


def read_export(path: Path) -> Export:
    data = path.read_bytes()
    assert data.endswith(b"\n")
    lines = data.split(b"\n")[:-1]
    export = Export()
    if path.suffix == ".csv":
        assert lines[0] == b"source_system,source_key,entity_type,location_ref,last_seen_at"
        lines = lines[1:]
    export.lines = lines
    for line in lines:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            export.rejected["not_utf8"] += 1
            continue
        if path.suffix == ".csv":
            fields = next(csv.reader([text]))
        else:
            try:
                record = json.loads(text)
            except json.JSONDecodeError:
                export.rejected["field_count"] += 1
                continue
            assert isinstance(record, dict)
            fields = [record[column] for column in COLUMNS] if set(record) == set(COLUMNS) else []
        if len(fields) != len(COLUMNS):
            export.rejected["field_count"] += 1
            continue
        problem = _key_problem(fields[1])
        if problem:
            export.rejected[problem] += 1
            continue
        export.valid.append(fields)
        export.valid_lines.append(line)
    return export


def read_all(paths: dict[str, Path]) -> dict[str, Export]:
    return {system: read_export(path) for system, path in paths.items()}


@pytest.fixture(scope="module")
def normal(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Export]:
    return read_all(generate(tmp_path_factory.mktemp("normal"), keys=3000, seed=7))


# --- determinism --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["csv", "json"])
def test_same_arguments_give_byte_identical_files(tmp_path: Path, kind: str) -> None:
    first = generate(tmp_path / "one", keys=1500, seed=3, kind=kind, scenario="drift")
    second = generate(tmp_path / "two", keys=1500, seed=3, kind=kind, scenario="drift")
    assert list(first) == list(SYSTEMS)
    for system in SYSTEMS:
        assert first[system].name == f"{system}.{kind}"
        assert first[system].read_bytes() == second[system].read_bytes()


def test_a_different_seed_gives_different_files(tmp_path: Path) -> None:
    first = generate(tmp_path / "one", keys=1500, seed=3)
    second = generate(tmp_path / "two", keys=1500, seed=4)
    for system in SYSTEMS:
        assert first[system].read_bytes() != second[system].read_bytes()
    assert read_export(first["A"]).keys() != read_export(second["A"]).keys()


def test_default_as_of_is_a_fixed_instant(tmp_path: Path) -> None:
    implicit = generate(tmp_path / "implicit", keys=500)
    explicit = generate(tmp_path / "explicit", keys=500, as_of=DEFAULT_AS_OF)
    for system in SYSTEMS:
        assert implicit[system].read_bytes() == explicit[system].read_bytes()


def test_without_a_spread_history_every_key_was_last_seen_at_the_export(tmp_path: Path) -> None:
    spread = generate(tmp_path / "spread", keys=500, seed=5)
    flat = generate(tmp_path / "flat", keys=500, seed=5, spread_history=False)
    stamp = re.compile(rb"20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")

    for system in SYSTEMS:
        assert set(stamp.findall(flat[system].read_bytes())) == {DEFAULT_AS_OF.isoformat().encode()}
        assert len(set(stamp.findall(spread[system].read_bytes()))) > 100
        # Only the timestamps differ: the keys are the same rows in the same order.
        assert stamp.sub(b"", flat[system].read_bytes()) == stamp.sub(b"", spread[system].read_bytes())


# --- the scenario split -------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_split_per_scenario_is_within_five_points(tmp_path: Path, scenario: str) -> None:
    keys = 4000
    exports = read_all(generate(tmp_path, scenario=scenario, keys=keys, seed=11))
    authority = exports["A"].keys()
    assert len(authority) == keys
    target = MATCH_TARGET[scenario]
    for system in DOWNSTREAM:
        downstream = exports[system].keys()
        union = len(downstream | authority)
        match = len(downstream & authority) / union
        out_of_authority = len(downstream - authority) / union
        gap = len(authority - downstream) / union
        assert abs(match - target) <= 0.05, (system, match)
        assert abs(out_of_authority - (1 - target) / 2) <= 0.05, (system, out_of_authority)
        assert abs(gap - (1 - target) / 2) <= 0.05, (system, gap)
        assert abs(len(downstream) - keys) <= 0.1 * keys


def test_out_of_authority_keys_partly_overlap_across_systems(normal: dict[str, Export]) -> None:
    authority = normal["A"].keys()
    systems_per_key = Counter(key for s in DOWNSTREAM for key in normal[s].keys() - authority)
    spread = Counter(systems_per_key.values())
    assert spread[1] > 0
    assert spread[2] + spread[3] + spread[4] > 0.2 * len(systems_per_key)


# --- corrupt rows, duplicates, raw forms --------------------------------------------------------------


@pytest.mark.parametrize("kind", ["csv", "json"])
def test_corruption_rate_is_honoured_with_every_kind_of_corruption(tmp_path: Path, kind: str) -> None:
    exports = read_all(generate(tmp_path, keys=3000, corruption_rate=0.05, kind=kind))
    reasons: Counter[str] = Counter()
    for export in exports.values():
        rejected = sum(export.rejected.values())
        assert rejected + len(export.valid) == len(export.lines)
        assert 0.04 <= rejected / len(export.lines) <= 0.06
        reasons += export.rejected
    assert set(reasons) == {"not_utf8", "field_count", "empty_key", "too_long", "control_char"}
    assert min(reasons.values()) >= 0.1 * sum(reasons.values())


def test_corrupt_rows_are_extra_rows(tmp_path: Path) -> None:
    clean = read_all(generate(tmp_path / "clean", keys=1000, corruption_rate=0.0))
    dirty = read_all(generate(tmp_path / "dirty", keys=1000, corruption_rate=0.2))
    for system in SYSTEMS:
        assert not clean[system].rejected
        assert sorted(clean[system].valid) == sorted(dirty[system].valid)
        assert sum(dirty[system].rejected.values()) == round(0.2 * len(clean[system].valid))


def test_no_quote_is_left_open(tmp_path: Path) -> None:
    for path in generate(tmp_path, keys=2000, corruption_rate=0.2).values():
        text = path.read_bytes().decode("utf-8", "surrogateescape")
        assert len(list(csv.reader(io.StringIO(text, newline="")))) == text.count("\n")


def test_duplicates_are_present_some_in_another_raw_form(normal: dict[str, Export]) -> None:
    for system, export in normal.items():
        keys = [normalize_key(row[1], RULES) for row in export.valid]
        duplicates = len(keys) - len(set(keys))
        assert 0.004 * len(keys) <= duplicates <= 0.012 * len(keys), system
        raw_forms: dict[str, set[str]] = {}
        for row, key in zip(export.valid, keys, strict=True):
            raw_forms.setdefault(key, set()).add(row[1])
        assert any(len(forms) > 1 for forms in raw_forms.values()), system


def test_every_raw_key_normalizes_to_a_canonical_key_of_its_entity_type(normal: dict[str, Export]) -> None:
    entity_of: dict[str, str] = {}
    for export in normal.values():
        for _, raw, entity_type, _, _ in export.valid:
            key = normalize_key(raw, RULES)
            assert SHAPES[entity_type].fullmatch(key), (raw, key)
            assert normalize_key(key, RULES) == key
            assert entity_of.setdefault(key, entity_type) == entity_type


def test_raw_forms_vary_as_the_default_rules_reconcile(normal: dict[str, Export]) -> None:
    raw = [row[1] for export in normal.values() for row in export.valid]
    canonical = sum(key == normalize_key(key, RULES) for key in raw)
    assert 0.5 * len(raw) < canonical < 0.95 * len(raw)
    assert any(key != key.strip() for key in raw)
    assert any(key.islower() for key in raw)
    assert any(not key.isupper() and not key.islower() for key in raw)  # mixed case
    for delimiter in ("_", ".", " ", "/", ":"):
        assert any(delimiter in key.strip() for key in raw), delimiter
    assert any(re.search(r"[-_ ]{2,}", key.strip()) for key in raw)  # doubled delimiters
    # Digits never change: a raw key's digit runs are exactly those of its normalized key.
    assert all(re.findall(r"\d+", key) == re.findall(r"\d+", normalize_key(key, RULES)) for key in raw)


# --- the file format ----------------------------------------------------------------------------------


def test_csv_lines_are_what_the_csv_module_writes(normal: dict[str, Export]) -> None:
    for system, export in normal.items():
        for fields, line in zip(export.valid, export.valid_lines, strict=True):
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="\n").writerow(fields)
            assert buffer.getvalue().encode("utf-8") == line + b"\n"
            assert fields[0] == system
        assert not any(b"\r" in line for line in export.lines)


def test_timestamps_lie_in_the_history_window(tmp_path: Path) -> None:
    as_of = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)
    exports = read_all(generate(tmp_path, keys=2000, as_of=as_of, days_of_history=7))
    for system, export in exports.items():
        stamps = [row[4] for row in export.valid]
        present = [stamp for stamp in stamps if stamp]
        if system == "A":
            assert len(present) == len(stamps)
        else:
            assert 0 < len(stamps) - len(present) < 0.1 * len(stamps)
        assert all(stamp.endswith("+00:00") for stamp in present)
        moments = [datetime.fromisoformat(stamp) for stamp in present]
        assert as_of - timedelta(days=7) <= min(moments)
        assert max(moments) < as_of
        assert max(moments) - min(moments) > timedelta(days=6)


def test_locations_look_like_warehouses_or_regions(normal: dict[str, Export]) -> None:
    locations = Counter(row[3] for export in normal.values() for row in export.valid)
    assert all(re.fullmatch(r"(WH-\d{2}|REGION-[A-Z]+)?", location) for location in locations)
    assert locations[""] > 0
    assert len(locations) > 10


def test_json_lines_hold_the_same_rows_as_the_csv(tmp_path: Path) -> None:
    as_csv = read_all(generate(tmp_path / "csv", keys=1500, seed=5, scenario="recovery"))
    as_json = read_all(generate(tmp_path / "json", keys=1500, seed=5, scenario="recovery", kind="json"))
    for system in SYSTEMS:
        assert as_json[system].valid == as_csv[system].valid
        assert as_json[system].rejected == as_csv[system].rejected
        for line in as_json[system].valid_lines:
            record = json.loads(line)
            assert list(record) == list(COLUMNS)
            assert json.dumps(record, ensure_ascii=False).encode("utf-8") == line


# --- arguments ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"scenario": "chaos"}, "scenario"),
        ({"keys": 0}, "keys"),
        ({"keys": -5}, "keys"),
        ({"keys": 2.5}, "keys"),
        ({"corruption_rate": -0.01}, "corruption_rate"),
        ({"corruption_rate": 1.5}, "corruption_rate"),
        ({"corruption_rate": float("nan")}, "corruption_rate"),
        ({"days_of_history": 0}, "days_of_history"),
        ({"seed": -1}, "seed"),
        ({"kind": "xml"}, "kind"),
        ({"as_of": "2026-01-01"}, "as_of"),
    ],
)
def test_invalid_arguments_are_refused_by_name(tmp_path: Path, arguments: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        generate(tmp_path, **arguments)
    assert not list(tmp_path.iterdir())


def test_small_and_extreme_arguments_still_work(tmp_path: Path) -> None:
    exports = read_all(generate(tmp_path / "one", keys=1, corruption_rate=1.0))
    assert len(exports["A"].keys()) == 1
    exports = read_all(generate(tmp_path / "two", keys=50, scenario="failure", corruption_rate=0.0))
    assert len(exports["A"].keys()) == 50

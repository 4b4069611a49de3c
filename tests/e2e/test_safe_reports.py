"""CSV (formula) injection: keys that a spreadsheet would run as formulas reach every report neutralised (OWASP:
a leading single quote), while the event store keeps them exactly as they were read."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from keysync.infrastructure.cell_safety import FORMULA_TRIGGERS
from keysync.infrastructure.report_files import write_csv_atomic
from keysync.projections.reports import DUPLICATES, MISSING_FROM_SYSTEM, MISSING_IN_A, REGISTRY, REJECTED, REPORTS

HYPERLINK = '=HYPERLINK("http://x","y")'
FORMULAS = [HYPERLINK, "@SUM(1+1)", "+CUST-9", "-1", "\t=1+1"]
A = ["CUST-1", "CUST-2", "-2", "@A-KEY"]
# Normalization off: normalized and master keys keep the formula characters (with it on, they lose them).
RAW_RULES = "normalize: {trim: false, uppercase: false, strip_non_alnum: false, collapse_delims: false}\n"


def cells(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def assert_no_cell_starts_a_formula(output: Path) -> None:
    for name in REPORTS:
        for line, row in enumerate(cells(output / name), start=2):
            for column, value in row.items():
                assert not value.startswith(FORMULA_TRIGGERS), f"{name} line {line}, {column}: {value!r}"


@pytest.fixture
def formulas(any_project, write_systems):
    """Formula-like keys in every report: out-of-authority keys (B), System A keys missing elsewhere (C), a
    duplicate (C), a rejected row and an entity type (D), and a deprecation reason (the registry)."""
    any_project.write_config(RAW_RULES)
    write_systems(A=A, B=[*A, *FORMULAS], C=["CUST-1", "CUST-2", "@SUM(1+1)", "@SUM(1+1)"], E=A)
    (any_project.input / "D.csv").write_text(
        "source_key,source_system,entity_type,location_ref,last_seen_at\n"
        "CUST-1,D,=cmd|' /C calc'!A0,,2026-01-01T00:00:00+00:00\n"
        "=1+1\x01,D,customer,,\n"  # a control character: rejected, and its raw line starts with =
        "-3,D,customer,,+1\n",  # an unparseable date: kept, with a warning
        encoding="utf-8",
    )
    any_project.invoke("run")
    any_project.invoke("registry", "deprecate", "+CUST-9", "--reason", "=1+1 \r@evil")
    return any_project


def test_no_report_cell_starts_a_formula(formulas):
    assert_no_cell_starts_a_formula(formulas.output)
    missing = {r["source_key"]: r for r in cells(formulas.output / MISSING_IN_A)}
    assert set(missing) == {"'" + k for k in [*FORMULAS, "-3"]}
    assert missing["'" + HYPERLINK]["normalized_key"] == "'" + HYPERLINK
    assert missing["'" + HYPERLINK]["proposed_master_key"] == "'" + HYPERLINK
    gaps = {(r["system"], r["master_key"], r["source_key_in_A"]) for r in cells(formulas.output / MISSING_FROM_SYSTEM)}
    assert ("C", "'-2", "'-2") in gaps and ("C", "'@A-KEY", "'@A-KEY") in gaps
    [duplicate] = cells(formulas.output / DUPLICATES)
    assert (duplicate["normalized_key"], duplicate["source_keys"]) == ("'@SUM(1+1)", "'@SUM(1+1) (x2)")
    registry = {r["master_key"]: r for r in cells(formulas.output / REGISTRY)}
    assert registry["'+CUST-9"]["status_reason"] == "'=1+1 \r@evil"
    rejected = {r["severity"]: r for r in cells(formulas.output / REJECTED)}
    assert rejected["error"]["raw"].startswith("'=1+1\\x01,D,")
    assert rejected["warning"]["raw"].startswith("'-3,D")


def test_the_store_keeps_the_raw_values(formulas):
    registry = {r["master_key"]: r for r in json.loads(formulas.invoke("registry", "list", "--json").stdout)}
    assert {HYPERLINK, "@SUM(1+1)", "+CUST-9", "-1", "\t=1+1"} <= set(registry)
    assert registry["+CUST-9"]["status_reason"] == "=1+1 \r@evil"
    events = json.loads(formulas.invoke("audit", "--key", HYPERLINK, "--json").stdout)
    assert "RowsObserved" in {e["event_type"] for e in events}


def test_a_dry_run_and_a_rebuild_are_neutralised_too(formulas):
    formulas.invoke("run", "--dry-run")
    assert_no_cell_starts_a_formula(formulas.output)
    formulas.invoke("rebuild")
    assert_no_cell_starts_a_formula(formulas.output)
    formulas.invoke("doctor")  # the doctor's rebuild writes with the same rules: the reports match it


def test_keys_normalized_as_usual_lose_their_formula_characters_but_raw_ones_are_still_quoted(
    any_project, write_systems
):
    write_systems(A=A, B=[*A, *FORMULAS], C=A, D=A, E=A)
    any_project.invoke("run")
    assert_no_cell_starts_a_formula(any_project.output)
    rows = {r["normalized_key"]: r["source_key"] for r in cells(any_project.output / MISSING_IN_A)}
    assert rows["HYPERLINKHTTP-XY"] == "'" + HYPERLINK


def test_escaping_can_be_turned_off_in_the_config(formulas):
    formulas.write_config(RAW_RULES + "reports: {escape_formulas: false}\n")
    formulas.invoke("reports")  # the folder was written escaped: bringing it up to date writes it again
    missing = {r["source_key"] for r in cells(formulas.output / MISSING_IN_A)}
    assert HYPERLINK in missing and "@SUM(1+1)" in missing
    formulas.invoke("doctor")  # and it matches a rebuild under this config


# LibreOffice Calc, where it is installed (Debian: libreoffice-calc-nogui; ./test.sh does not need it): it
# evaluates a CSV cell that starts a formula, so it can tell whether any did.

SOFFICE = shutil.which("soffice") or shutil.which("libreoffice")


def formulas_in(csv_files: list[Path], work: Path) -> dict[str, list[str]]:
    """The formulas LibreOffice finds in each CSV file, by converting them (at once) to flat OpenDocument."""
    out = work / "converted"
    subprocess.run(
        [SOFFICE, f"-env:UserInstallation={(work / 'profile').as_uri()}", "--headless", "--convert-to", "fods",
         "--outdir", str(out), *map(str, csv_files)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    found = {}
    for csv_file in csv_files:
        converted = (out / csv_file.with_suffix(".fods").name).read_text(encoding="utf-8")
        found[csv_file.name] = [part.split('"', 1)[0] for part in converted.split('table:formula="')[1:]]
    return found


@pytest.mark.skipif(SOFFICE is None, reason="LibreOffice (soffice) is not installed")
def test_libreoffice_evaluates_no_formula_in_any_report(formulas, tmp_path):
    # The check can see a formula: the same keys written without escaping give LibreOffice live formulas.
    raw = write_csv_atomic(tmp_path / "raw.csv", {"key": FORMULAS}, escape_formulas=False)
    copies = [Path(shutil.copy(formulas.output / name, tmp_path / name)) for name in REPORTS]
    found = formulas_in([raw, *copies], tmp_path)
    assert any("HYPERLINK" in formula for formula in found.pop("raw.csv"))
    assert found == {name: [] for name in REPORTS}

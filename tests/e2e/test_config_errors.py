"""A config file that cannot be used is one clear line on stderr and exit code 1, through the real command line,
never a traceback: malformed YAML, wrong types, unknown keys, two systems on one file, reports inside the input
folder... and whatever a fuzzer makes of a valid config."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keysync.cli import options
from keysync.cli.main import cli

REPO_CONFIG = Path(__file__).resolve().parents[2] / "keysync-config.yaml"
SOURCES = "sources:\n" + "".join(f"  {s}: {{type: csv, path: ./input/{s}.csv}}\n" for s in "ABCDE")


def invoke(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args, "-c", str(config)], catch_exceptions=True)


def assert_one_clear_line(result: Result, *said: str) -> str:
    """Exit 1, stderr one line starting with "Error: ", naming what it should; no exception escaped."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    line = result.stderr.rstrip("\n")
    assert "\n" not in line and line.startswith("Error: ") and "Traceback" not in line, result.stderr
    for text in said:
        assert text in line, line
    return line


@pytest.mark.parametrize(
    ("text", "said"),
    [
        pytest.param("processing: {batch_size: 10\n", ["invalid YAML at line 2", "flow mapping"], id="unclosed-brace"),
        pytest.param(
            "processing:\n\tbatch_size: 10\n", ["invalid YAML at line 2", "found character '\\t'"], id="tab-indent"
        ),
        pytest.param("a: b: c\n", ["invalid YAML at line 1"], id="mapping-in-a-value"),
        pytest.param(
            "processing: {batch_size: 1}\nprocessing: {batch_size: 2}\n",
            ["duplicate key 'processing'"],
            id="duplicate-section",
        ),
        pytest.param("- schedule\n- processing\n", ["(top level)", "is not a mapping of settings"], id="a-list"),
        pytest.param(
            "processing: {batch_size: many}\n", ["processing.batch_size: 'many' is not an integer"], id="string-for-int"
        ),
        pytest.param(
            "processing: {parallel: maybe}\n", ["processing.parallel: 'maybe' is not a boolean"], id="string-for-bool"
        ),
        pytest.param(
            "processing: {batch_size: 1.5}\n", ["processing.batch_size: 1.5 is not an integer"], id="float-for-int"
        ),
        pytest.param("processing: {timeout_s: .nan}\n", ["processing.timeout_s: nan is out of range"], id="nan"),
        pytest.param(
            "processing: {max_file_mb: 0}\n",
            ["processing.max_file_mb: 0 is out of range (must be >= 1)"],
            id="max-file-mb-zero",
        ),
        pytest.param(
            "processing: {max_key_length: -1}\n", ["processing.max_key_length: -1 is out of range"], id="negative"
        ),
        pytest.param("processing: 7\n", ["processing: 7 is not a mapping"], id="section-not-a-mapping"),
        pytest.param(
            "processing: {batch_sise: 10}\n", ["processing.batch_sise: unknown key (allowed: mode,"], id="unknown-key"
        ),
        pytest.param("colour: blue\n", ["colour: unknown key (allowed: schedule,"], id="unknown-section"),
        pytest.param(
            "output_dir: !!python/object:os.system ls\n", ["could not determine a constructor"], id="python-tag"
        ),
        pytest.param("output_dir: [a, b]\n", ["output_dir: ['a', 'b'] is not a path"], id="list-for-path"),
        pytest.param("sources: {A: {type: csv, path: a.csv}}\n", ["sources: missing B, C, D, E"], id="missing-systems"),
        pytest.param(
            SOURCES.replace("./input/C.csv", "./input/B.csv"),
            ["sources.C.path:", "is already used by sources.B (each system needs its own file)"],
            id="two-systems-one-file",
        ),
        pytest.param(
            SOURCES + "output_dir: ./input/reports\n",
            ["output_dir:", "is inside the folder of sources.A", "apart from the input files"],
            id="output-inside-input",
        ),
        pytest.param(
            SOURCES + "output_dir: ./input\n", ["output_dir:", "is the folder of sources.A"], id="output-is-input"
        ),
        pytest.param(
            "store: {dsn: 'postgresql://u:secret@h/db'}\n", ["store.dsn: a password is not allowed"], id="password"
        ),
        pytest.param("schedule: every day\n", ["schedule: 'every day' is not a cron expression"], id="cron"),
        # Upper limits: each of these once ended in a traceback, or in a run that ate all memory.
        pytest.param(
            "normalize: {pad_numbers: 1000000000}\n",
            ["normalize.pad_numbers: 1000000000 is out of range (must be <= 64)"],
            id="pad-numbers-huge",
        ),
        pytest.param(
            "processing: {max_key_length: 100000000000000000000000}\n",
            ["processing.max_key_length: 100000000000000000000000 is out of range (must be <= "],
            id="beyond-int64",
        ),
        pytest.param(
            "processing: {timeout_s: 1.0e+300}\n",
            ["processing.timeout_s: 1e+300 is out of range (must be <= 86400)"],
            id="timeout-huge",
        ),
        pytest.param(
            "processing: {retries: 11}\n", ["processing.retries: 11 is out of range (must be <= 10)"], id="retries"
        ),
        pytest.param("simulation: {keys: 100000000}\n", ["simulation.keys: 100000000 is out of range"], id="keys-huge"),
        pytest.param(
            "simulation: {temporal: {days_of_history: 100000}}\n",
            ["simulation.temporal.days_of_history: 100000 is out of range (must be <= 3660)"],
            id="days-huge",
        ),
    ],
)
def test_a_bad_config_is_one_clear_line(tmp_path: Path, text: str, said: list[str]) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text, encoding="utf-8")

    line = assert_one_clear_line(invoke(config, "run"), f"{config}: ", *said)

    assert "secret" not in line
    assert not (tmp_path / "data").exists(), "nothing is created for a config that cannot be used"


@pytest.mark.parametrize(
    ("content", "said"),
    [
        pytest.param(b"\xff\xfe\x00\x01garbage", ["bad.yaml: "], id="binary"),
        pytest.param(b"[" * 3_000, ["invalid YAML"], id="nested-too-deeply"),
        pytest.param(
            b"processing:\n  - &a [x, x, x, x, x, x, x, x, x]\n"
            + b"".join(b"  - &%c [" % c + b", ".join([b"*%c" % (c - 1)] * 9) + b"]\n" for c in b"bcdefghi"),
            ["processing: [['x', 'x'", "is not a mapping"],
            id="billion-laughs",  # regression: the error message once expanded every alias (minutes, gigabytes)
        ),
    ],
)
def test_a_pathological_config_is_one_clear_line(tmp_path: Path, content: bytes, said: list[str]) -> None:
    config = tmp_path / "bad.yaml"
    config.write_bytes(content)

    assert_one_clear_line(invoke(config, "config", "show"), *said)


def test_a_command_line_value_out_of_range_is_one_clear_line(tmp_path: Path) -> None:
    config = tmp_path / "keysync-config.yaml"
    config.write_text("", encoding="utf-8")

    result = invoke(config, "generate", "--keys", "100000000")

    assert_one_clear_line(result, "simulation.keys: 100000000 is out of range (must be <= 10000000)")
    assert not (tmp_path / "input").exists()


def test_a_missing_config_file_is_one_clear_line(tmp_path: Path) -> None:
    assert_one_clear_line(invoke(tmp_path / "nowhere.yaml", "run"), "nowhere.yaml: config file not found")


def test_in_a_real_process_the_line_is_all_there_is(tmp_path: Path) -> None:
    """Through the installed entry point: what a user sees in a terminal, exit code included."""
    config = tmp_path / "bad.yaml"
    config.write_text(SOURCES.replace("./input/E.csv", "./input/A.csv"), encoding="utf-8")
    keysync = Path(sys.executable).with_name("keysync")

    done = subprocess.run([str(keysync), "run", "-c", str(config)], capture_output=True, text=True, check=False)

    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"Error: {config}: sources.E.path: ")


# ------------------------------------------------------------------------------------------------------------
# Fuzzing: mutate a valid config (the shipped one) and load it through the command line

JUNK_TEXT = st.text(alphabet=st.characters(blacklist_characters="/\\~.\x00", blacklist_categories=["Cs"]), max_size=12)
JUNK = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | JUNK_TEXT
    | st.sampled_from(["", "csv", "json", "mirror", "postgres", "0 2 * * *", "1e309", "-1", "yes", "input/A.csv"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(JUNK_TEXT, inner, max_size=3),
    max_leaves=6,
)


def shipped_config() -> dict[str, Any]:
    return yaml.safe_load(REPO_CONFIG.read_text(encoding="utf-8"))


def paths_in(document: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path in a nested mapping, sections included."""
    found = []
    if isinstance(document, dict):
        for key, value in document.items():
            found.append((*prefix, key))
            found += paths_in(value, (*prefix, key))
    return found


@st.composite
def mutated_configs(draw: st.DrawFn) -> str:
    document = shipped_config()
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(paths_in(document)))
        *parents, key = where
        holder = document
        for name in parents:
            holder = holder[name]
        action = draw(st.sampled_from(["replace", "delete", "rename", "add", "same-file", "output-inside"]))
        if action == "replace":
            holder[key] = draw(JUNK)
        elif action == "delete":
            del holder[key]
        elif action == "rename":
            holder[draw(JUNK_TEXT)] = holder.pop(key)
        elif action == "add":
            holder[draw(JUNK_TEXT | st.integers())] = draw(JUNK)
        elif action == "same-file":
            document["sources"] = {s: {"type": "csv", "path": "./input/A.csv"} for s in "ABCDE"}
        else:
            document["output_dir"] = draw(st.sampled_from(["./input", "./input/out", "input/../input/x"]))
    text = yaml.safe_dump(document, sort_keys=draw(st.booleans()), allow_unicode=True)
    for _ in range(draw(st.integers(0, 2))):  # and now and then break the YAML itself
        at = draw(st.integers(0, len(text)))
        text = (
            text[:at]
            + draw(st.sampled_from([":", "- ", "{", "[", "]", "&a ", "*a", "\t", "'", '"', "\n  x"]))
            + text[at:]
        )
    return text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=mutated_configs())
def test_a_mutated_config_loads_or_is_one_clear_line(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "keysync-config.yaml"
        config.write_text(text, encoding="utf-8")
        result = invoke(config, "config", "show")
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        if result.exit_code == 0:
            assert isinstance(yaml.safe_load(result.stdout), dict)
        else:
            assert_one_clear_line(result, f"{config}: ")


def test_the_unmutated_config_loads(tmp_path: Path) -> None:
    config = tmp_path / "keysync-config.yaml"
    config.write_text(REPO_CONFIG.read_text(encoding="utf-8"), encoding="utf-8")

    result = invoke(config, "config", "show", "--json")

    assert result.exit_code == 0, result.stderr
    assert '"max_file_mb": 2048' in result.stdout


def test_without_any_config_file_the_defaults_are_said_to_apply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KEYSYNC_CONFIG", raising=False)
    monkeypatch.setattr(options._loaded, "said_defaults", False)  # said once a process: this process may have

    result = CliRunner().invoke(cli, ["history", "--json"])

    assert result.exit_code == 0, result.stderr
    assert f"No config file ({tmp_path / 'keysync-config.yaml'} does not exist): using the defaults." in result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["run", "--keys", "5"], "--keys shape generated mock data: give --generate-data too"),
        (["history", "--json", "--csv"], "give --json or --csv, not both"),
        (["registry", "approve", "--all", "K-1"], "give master keys to approve, or --all, not both"),
        (["registry", "deprecate", "K-1", "--reason", " "], "say why (it is kept in the audit trail)"),
    ],
    ids=["mock-option-without-generate", "json-and-csv", "keys-and-all", "empty-reason"],
)
def test_options_that_cannot_go_together_are_a_usage_error(tmp_path: Path, args: list[str], said: str) -> None:
    config = tmp_path / "keysync-config.yaml"
    config.write_text("output_dir: ./output\n", encoding="utf-8")

    result = invoke(config, *args)

    assert result.exit_code == 2 and said in result.stderr, (result.exit_code, result.stderr)
    assert not (tmp_path / "output").exists()  # refused before doing anything


def test_settings_this_version_does_not_act_on_are_said_to_have_no_effect(tmp_path: Path) -> None:
    config = tmp_path / "keysync-config.yaml"
    config.write_text(
        "processing: {checkpoint_interval: 10}\nsimulation: {failures: {simulate_timeout: true}}\n", encoding="utf-8"
    )

    result = invoke(config, "config", "show")

    assert result.exit_code == 0, result.stderr
    assert "processing.checkpoint_interval has no effect" in result.stderr
    assert "simulation.failures.simulate_timeout has no effect" in result.stderr

"""Config loading: defaults, path resolution, validation messages, overrides and the dict round trip."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keysync.domain.normalization import NormalizationRules
from keysync.infrastructure import config as config_module
from keysync.infrastructure.config import (
    Config,
    ConfigError,
    Reports,
    SandboxConfig,
    Source,
    config_as_dict,
    load_config,
    override,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
REPO_CONFIG = REPO_ROOT / "keysync-config.yaml"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEYSYNC_CONFIG", raising=False)
    monkeypatch.delenv("KEYSYNC_STORE_DSN", raising=False)


def write(folder: Path, text: str, name: str = "keysync-config.yaml") -> Path:
    file = folder / name
    file.write_text(text, encoding="utf-8")
    return file


def error_of(file: Path | str | None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(file)
    message = str(caught.value)
    assert "\n" not in message
    return message


# ---- defaults and the repository's file


def test_defaults_without_a_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config()
    assert config.path is None
    assert config == Config()
    assert config.schedule == "0 2 * * *"
    assert config.normalize == NormalizationRules()
    assert config.provisioning.strategy == "mirror"
    assert config.provisioning.auto_approve is False
    assert config.sources == {s: Source("csv", tmp_path / "input" / f"{s}.csv") for s in "ABCDE"}
    assert config.simulation.seed == 42
    assert config.simulation.scenario == "normal"
    assert config.simulation.keys == 1000
    assert config.simulation.temporal.simulate_history is True
    assert config.simulation.temporal.days_of_history == 30
    assert config.simulation.failures.inject_corruption == 0.01
    assert config.simulation.failures.simulate_timeout is False
    assert config.processing.mode == "full"
    assert config.processing.batch_size == 100_000
    assert config.processing.parallel is True
    assert config.processing.checkpoint_interval == 5000
    assert config.processing.max_key_length == 256
    assert config.processing.lock_timeout_s == 30
    assert config.store.backend == "sqlite"
    assert config.store.path == tmp_path / "data" / "keysync.sqlite"
    assert config.store.dsn == ""
    assert config.output_dir == tmp_path / "output"
    assert config.logs_dir == tmp_path / "logs"
    assert config.input_dir == tmp_path / "input"


def test_empty_file_and_empty_sections_mean_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(write(tmp_path, "")) == Config()
    assert load_config(write(tmp_path, "normalize:\nprocessing:\nsimulation: {}\n")) == Config()


def test_repository_config_equals_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO_ROOT)
    config = load_config(REPO_CONFIG)
    assert config == Config()
    assert config.path == REPO_CONFIG
    assert load_config() == config  # ./keysync-config.yaml is the default file


def test_repository_config_lists_every_setting() -> None:
    document = yaml.safe_load(REPO_CONFIG.read_text(encoding="utf-8"))

    def shape(value: Any) -> Any:
        return {k: shape(v) for k, v in value.items()} if isinstance(value, dict) else None

    assert shape(document) == shape(config_as_dict(load_config(REPO_CONFIG)))


# ---- paths


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write(
        folder,
        "output_dir: out\n"
        "logs_dir: ../logs\n"
        "store: {path: db/k.sqlite}\n"
        "sources:\n"
        "  A: {type: csv, path: ./in/A.csv}\n"
        "  B: {type: json, path: in/B.json}\n"
        f"  C: {{type: csv, path: {tmp_path / 'abs' / 'C.csv'}}}\n"
        "  D: {type: csv, path: in/D.csv}\n"
        "  E: {type: csv, path: in/E.csv}\n",
    )
    monkeypatch.chdir(elsewhere)
    config = load_config(Path("../etc/keysync-config.yaml"))
    assert config.path == folder / "keysync-config.yaml"
    assert config.output_dir == folder / "out"
    assert config.logs_dir == tmp_path / "logs"
    assert config.store.path == folder / "db" / "k.sqlite"
    assert config.sources["A"] == Source("csv", folder / "in" / "A.csv")
    assert config.sources["B"] == Source("json", folder / "in" / "B.json")
    assert config.sources["C"].path == tmp_path / "abs" / "C.csv"
    # Settings the file leaves out are relative to the file's folder too.
    assert config.input_dir == folder / "input"


def test_default_sources_live_in_input_dir(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "input_dir: mock\n"))
    assert config.sources["E"] == Source("csv", tmp_path / "mock" / "E.csv")


# ---- errors


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("provisioning: {strategy: mirr}", "provisioning.strategy: 'mirr' is not one of mirror, namespaced"),
        (
            "normalize: {upercase: true}",
            "normalize.upercase: unknown key (allowed: trim, uppercase, ascii_fold, strip_non_alnum, letters, "
            "collapse_delims, pad_numbers)",
        ),
        ("processing: {batch_size: 0}", "processing.batch_size: 0 is out of range (must be >= 1)"),
        ("processing: {batch_size: abc}", "processing.batch_size: 'abc' is not an integer"),
        ("processing: {batch_size: true}", "processing.batch_size: true is not an integer"),
        ("processing: {batch_size: 10.5}", "processing.batch_size: 10.5 is not an integer"),
        ("processing: {mode: fast}", "processing.mode: 'fast' is not one of full, incremental"),
        ("processing: {parallel: 1}", "processing.parallel: 1 is not a boolean (true or false)"),
        ("processing: {lock_timeout_s: 0}", "processing.lock_timeout_s: 0 is out of range (must be > 0)"),
        (
            "processing: {lock_timeout_s: .inf}",
            "processing.lock_timeout_s: inf is out of range (must be > 0)",
        ),
        ("processing: {lock_timeout_s: x}", "processing.lock_timeout_s: 'x' is not a number"),
        (
            "simulation: {failures: {inject_corruption: 1.5}}",
            "simulation.failures.inject_corruption: 1.5 is out of range (must be between 0 and 1)",
        ),
        (
            "simulation: {temporal: {days_of_history: 0}}",
            "simulation.temporal.days_of_history: 0 is out of range (must be >= 1)",
        ),
        (
            "simulation: {scenario: chaos}",
            "simulation.scenario: 'chaos' is not one of normal, drift, failure, recovery",
        ),
        ("simulation: {keys: 0}", "simulation.keys: 0 is out of range (must be >= 1)"),
        ("simulation: {temporal: 3}", "simulation.temporal: 3 is not a mapping"),
        ("store: {backend: mysql}", "store.backend: 'mysql' is not one of sqlite, postgres"),
        ("normalize: {pad_numbers: -1}", "normalize.pad_numbers: -1 is out of range (must be >= 0)"),
        ("normalize: {collapse_delims: 5}", "normalize.collapse_delims: 5 is not a string"),
        ("normalize: {letters: latin}", "normalize.letters: 'latin' is not one of ascii, unicode"),
        ("normalize: {ascii_fold: yes please}", "normalize.ascii_fold: 'yes please' is not a boolean"),
        ("output_dir: 12", "output_dir: 12 is not a path"),
        ("output_dir: ''", "output_dir: '' is not a path (it is empty)"),
        ("schedule: '0 2 * *'", "schedule: '0 2 * *' is not a cron expression (need 5 fields"),
        (
            "schedule: '0 25 * * *'",
            "schedule: '0 25 * * *' is not a cron expression (hour 25 is out of range",
        ),
        ("colour: blue", "colour: unknown key (allowed: schedule, normalize, provisioning, sources,"),
        ("- a\n- b", "(top level): ['a', 'b'] is not a mapping of settings"),
        ("just text", "(top level): 'just text' is not a mapping of settings"),
        ("sources: {A: {type: csv, path: a.csv}}", "sources: missing B, C, D, E (sources must list exactly"),
        ("sources: {F: {type: csv, path: f.csv}}", "sources.F: unknown key (allowed: A, B, C, D, E)"),
    ],
)
def test_errors_name_the_key_the_value_and_what_is_allowed(tmp_path: Path, text: str, expected: str) -> None:
    file = write(tmp_path, text)
    message = error_of(file)
    assert message.startswith(f"{file}: {expected}"), message


def test_error_names_the_file_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "provisioning:\n  strategy: mirr\n")
    monkeypatch.chdir(tmp_path)
    assert error_of(None) == "keysync-config.yaml: provisioning.strategy: 'mirr' is not one of mirror, namespaced"


def test_source_errors(tmp_path: Path) -> None:
    entries = {s: f"{{type: csv, path: {s}.csv}}" for s in "ABCDE"}

    def sources(**changes: str) -> str:
        return "sources:\n" + "".join(f"  {s}: {changes.get(s, e)}\n" for s, e in entries.items())

    assert "sources.C.type: 'xml' is not one of csv, json" in error_of(
        write(tmp_path, sources(C="{type: xml, path: c.xml}"))
    )
    assert "sources.D.type: missing (must be one of csv, json)" in error_of(write(tmp_path, sources(D="{path: d.csv}")))
    assert "sources.E.path: missing" in error_of(write(tmp_path, sources(E="{type: csv}")))
    assert "sources.B.colour: unknown key (allowed: type, path)" in error_of(
        write(tmp_path, sources(B="{type: csv, path: b.csv, colour: red}"))
    )


def test_two_systems_on_one_file(tmp_path: Path) -> None:
    text = "sources:\n" + "".join(
        f"  {s}: {{type: csv, path: {'./x/../A.csv' if s == 'C' else s + '.csv'}}}\n" for s in "ABCDE"
    )
    message = error_of(write(tmp_path, text))
    assert f"sources.C.path: '{tmp_path / 'A.csv'}' is already used by sources.A" in message


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("processing:\n  mode: full\n   batch_size: 3\n", "line 3, column 14"),
        ("normalize: {trim: true\n", "line 2, column 1"),
        ("a: [1, 2\nb: 3\n", "line 2, column 2"),
    ],
)
def test_malformed_yaml_gives_line_and_column(tmp_path: Path, text: str, where: str) -> None:
    file = write(tmp_path, text)
    message = error_of(file)
    assert message.startswith(f"{file}: invalid YAML at {where}: "), message


def test_duplicate_keys_are_an_error(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "processing:\n  mode: full\n  mode: incremental\n"))
    assert "invalid YAML at line 3, column 3" in message
    assert "duplicate key 'mode'" in message


def test_exponent_floats_are_numbers(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "simulation: {failures: {inject_corruption: 1e-3}}\n"))
    assert config.simulation.failures.inject_corruption == 0.001


def test_ints_are_accepted_where_floats_are_expected(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, "processing: {lock_timeout_s: 5}\nsimulation: {failures: {inject_corruption: 1}}\n")
    )
    assert config.processing.lock_timeout_s == 5.0
    assert isinstance(config.processing.lock_timeout_s, float)
    assert config.simulation.failures.inject_corruption == 1.0


@pytest.mark.parametrize("off", ["false", "null", "''", "~"])
def test_collapse_delims_off(tmp_path: Path, off: str) -> None:
    config = load_config(write(tmp_path, f"normalize: {{collapse_delims: {off}}}\n"))
    assert config.normalize.collapse_delims == ""


def test_a_normalization_rules_value_error_names_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Stands in for whatever the domain rejects; the loader must report it as a ConfigError.
    @attrs.frozen
    class StrictRules(NormalizationRules):
        def __attrs_post_init__(self) -> None:
            if len(self.collapse_delims) > 1:
                raise ValueError("collapse_delims must be one character or empty")

    monkeypatch.setattr(config_module, "NormalizationRules", StrictRules)
    file = write(tmp_path, "normalize: {trim: false, collapse_delims: '--'}\n")
    message = error_of(file)
    assert message.startswith(f"{file}: normalize.collapse_delims: '--' is not allowed"), message
    assert "one character or empty" in message


def test_missing_explicit_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert error_of(missing) == f"{missing}: config file not found"


def test_a_folder_is_not_a_config_file(tmp_path: Path) -> None:
    assert error_of(tmp_path).startswith(f"{tmp_path}: cannot read the config file")


# ---- environment


def test_keysync_config_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = write(tmp_path, "simulation: {keys: 7}\n", name="other.yaml")
    monkeypatch.setenv("KEYSYNC_CONFIG", str(file))
    monkeypatch.chdir(REPO_ROOT)  # the env var wins over ./keysync-config.yaml
    config = load_config()
    assert config.simulation.keys == 7
    assert config.path == file
    assert load_config(REPO_CONFIG).simulation.keys == 1000  # an explicit path wins over the env var


def test_keysync_config_env_var_naming_a_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYSYNC_CONFIG", str(tmp_path / "gone.yaml"))
    assert error_of(None) == f"{tmp_path / 'gone.yaml'}: config file not found (from KEYSYNC_CONFIG)"


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://keysync:s3cret@db.example/keysync",
        "postgresql://keysync@db.example/keysync?password=s3cret",
        "host=db.example user=keysync password=s3cret",
        "host=db.example PASSWORD = 's3 cret'",
    ],
)
def test_no_password_in_the_file_dsn(tmp_path: Path, dsn: str) -> None:
    message = error_of(write(tmp_path, f"store: {{backend: postgres, dsn: {dsn!r}}}\n"))
    assert "store.dsn: a password is not allowed here" in message
    assert "KEYSYNC_STORE_DSN" in message
    assert "~/.pgpass" in message
    assert "s3" not in message  # the secret is never echoed


def test_dsn_without_password_and_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = write(tmp_path, "store: {backend: postgres, dsn: 'host=db user=keysync dbname=keysync'}\n")
    assert load_config(file).store.dsn == "host=db user=keysync dbname=keysync"
    monkeypatch.setenv("KEYSYNC_STORE_DSN", "postgresql://keysync:s3cret@db/keysync")
    config = load_config(file)
    assert config.store.dsn == "postgresql://keysync:s3cret@db/keysync"
    # Shown without the password; loading what is shown (with the same environment) gives the same config.
    shown = config_as_dict(config)
    assert shown["store"]["dsn"] == "postgresql://keysync@db/keysync"
    again = load_config(write(tmp_path, yaml.safe_dump(shown), name="shown.yaml"))
    assert again == config


# ---- override


def test_override_maps_names_to_sections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    base = Config()
    changed = override(
        base,
        output_dir=Path("reports"),
        mode="incremental",
        auto_approve=True,
        scenario="drift",
        keys=50,
        seed=7,
        days_of_history=3,
        inject_corruption=0,
        pad_numbers=4,
        store_path="db.sqlite",
        backend="postgres",
        lock_timeout_s=2,
    )
    assert changed.output_dir == tmp_path / "reports"
    assert changed.processing.mode == "incremental"
    assert changed.provisioning.auto_approve is True
    assert changed.simulation.scenario == "drift"
    assert changed.simulation.keys == 50
    assert changed.simulation.seed == 7
    assert changed.simulation.temporal.days_of_history == 3
    assert changed.simulation.failures.inject_corruption == 0.0
    assert changed.normalize.pad_numbers == 4
    assert changed.normalize.collapse_delims == "-"
    assert changed.store.path == tmp_path / "db.sqlite"
    assert changed.store.backend == "postgres"
    assert changed.processing.lock_timeout_s == 2.0
    assert changed.processing.batch_size == base.processing.batch_size
    assert base == Config()  # the original is untouched


def test_override_none_means_not_given() -> None:
    base = Config()
    assert override(base, mode=None, keys=None, output_dir=None) == base


def test_override_rejects_unknown_names_and_bad_values() -> None:
    with pytest.raises(TypeError, match="colour"):
        override(Config(), colour="blue")
    with pytest.raises(TypeError, match="path"):
        override(Config(), path="x.yaml")
    with pytest.raises(ConfigError, match=r"command line: processing\.mode: 'fast' is not one of full"):
        override(Config(), mode="fast")
    with pytest.raises(ConfigError, match=r"simulation\.keys: 0 is out of range"):
        override(Config(), keys=0)
    with pytest.raises(ConfigError, match=r"provisioning\.auto_approve: 'yes' is not a boolean"):
        override(Config(), auto_approve="yes")


# ---- config_as_dict


def test_config_as_dict_round_trips(tmp_path: Path) -> None:
    original_folder = tmp_path / "a"
    original_folder.mkdir()
    original = load_config(
        write(
            original_folder,
            "schedule: '*/15 8-18 * * mon-fri'\n"
            "normalize: {collapse_delims: false, pad_numbers: 6, uppercase: false,"
            " ascii_fold: true, letters: unicode}\n"
            "provisioning: {strategy: namespaced, auto_approve: true}\n"
            "simulation: {seed: 1, scenario: recovery, keys: 10, failures: {inject_corruption: 0.5}}\n"
            "processing: {mode: incremental, batch_size: 10, lock_timeout_s: 0.25}\n"
            "store: {backend: postgres, dsn: 'host=db dbname=k'}\n"
            "output_dir: out\n",
        )
    )
    shown = config_as_dict(original)
    text = yaml.safe_dump(shown, sort_keys=False)
    assert yaml.safe_load(text) == shown  # plain data only
    assert all(isinstance(s["path"], str) for s in shown["sources"].values())
    copy_folder = tmp_path / "b"
    copy_folder.mkdir()
    assert load_config(write(copy_folder, text)) == original


def test_config_as_dict_of_defaults_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    text = yaml.safe_dump(config_as_dict(Config()))
    (tmp_path / "sub").mkdir()
    assert load_config(write(tmp_path / "sub", text)) == Config()


# ---- nothing but Config or ConfigError


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["mirror", "full", "sqlite", "postgres", "csv", "json", "a.csv", "0 2 * * *", "-", ""]),
)
_junk = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), children, max_size=3),
    ),
    max_leaves=8,
)


@st.composite
def _mutated_defaults(draw: st.DrawFn) -> Any:
    """The default settings with some values swapped for junk and some keys dropped or added."""

    def mutate(value: Any) -> Any:
        if draw(st.integers(0, 9)) == 0:
            return draw(_junk)
        if isinstance(value, dict):
            result = {k: mutate(v) for k, v in value.items() if draw(st.integers(0, 9)) != 0}
            if draw(st.integers(0, 19)) == 0:
                result[draw(st.text(max_size=6))] = draw(_junk)
            return result
        return value

    return mutate(config_as_dict(Config()))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("junk")


def _only_config_or_config_error(folder: Path, text: str | bytes) -> None:
    file = folder / "junk.yaml"
    file.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    try:
        result = load_config(file)
    except ConfigError as error:
        assert "\n" not in str(error)
    else:
        assert isinstance(result, Config)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_mutated_defaults(), _junk))
def test_random_mappings_give_config_or_config_error(scratch: Path, document: Any) -> None:
    _only_config_or_config_error(scratch, yaml.safe_dump(document, allow_unicode=True))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(max_size=80),
        st.text(alphabet=" \t\n:-[]{},&*!|>'\"%@`#?abc019.~", max_size=60),
        st.binary(max_size=40),
    )
)
def test_random_text_gives_config_or_config_error(scratch: Path, text: str | bytes) -> None:
    _only_config_or_config_error(scratch, text)


# ---- sandbox


def test_sandbox_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config().sandbox == SandboxConfig(tmp_path / "sandbox_states", 100_000, None)
    folder = tmp_path / "etc"
    folder.mkdir()
    assert load_config(write(folder, "sandbox:\n")).sandbox.states_dir == folder / "sandbox_states"


def test_sandbox_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    config = load_config(write(folder, "sandbox: {states_dir: st, input_dir: ../sb, max_bulk_keys: 5}\n"))
    assert config.sandbox == SandboxConfig(folder / "st", 5, tmp_path / "sb")


@pytest.mark.parametrize("empty", ["''", "null"])
def test_an_empty_sandbox_input_dir_means_the_sources(tmp_path: Path, empty: str) -> None:
    assert load_config(write(tmp_path, f"sandbox: {{input_dir: {empty}}}\n")).sandbox.input_dir is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sandbox: 5", "sandbox: 5 is not a mapping"),
        ("sandbox: {max_bulk_keys: 0}", "sandbox.max_bulk_keys: 0 is out of range (must be >= 1)"),
        ("sandbox: {max_bulk_keys: many}", "sandbox.max_bulk_keys: 'many' is not an integer"),
        ("sandbox: {states_dir: 3}", "sandbox.states_dir: 3 is not a path (a string)"),
        ("sandbox: {states_dir: ''}", "sandbox.states_dir: '' is not a path (it is empty)"),
        ("sandbox: {input_dir: [a]}", "sandbox.input_dir: ['a'] is not a path (a string)"),
        ("sandbox: {keys: 3}", "sandbox.keys: unknown key (allowed: states_dir, max_bulk_keys, input_dir)"),
    ],
)
def test_sandbox_errors(tmp_path: Path, text: str, expected: str) -> None:
    file = write(tmp_path, text)
    assert error_of(file) == f"{file}: {expected}"


def test_sandbox_overrides_and_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    changed = override(Config(), states_dir="st", max_bulk_keys=7, sandbox_input_dir="sb")
    assert changed.sandbox == SandboxConfig(tmp_path / "st", 7, tmp_path / "sb")
    assert override(changed, sandbox_input_dir="").sandbox.input_dir is None
    with pytest.raises(ConfigError, match=r"sandbox\.max_bulk_keys: 0 is out of range"):
        override(Config(), max_bulk_keys=0)
    (tmp_path / "copy").mkdir()
    assert load_config(write(tmp_path / "copy", yaml.safe_dump(config_as_dict(changed)))) == changed


# ---- reports


def test_reports_escape_formulas_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config().reports == Reports(escape_formulas=True)
    assert load_config(write(tmp_path, "reports:\n")).reports.escape_formulas is True
    config = load_config(write(tmp_path, "reports: {escape_formulas: false}\n"))
    assert config.reports == Reports(escape_formulas=False)
    assert config_as_dict(config)["reports"] == {"escape_formulas": False}
    assert override(config, escape_formulas=True).reports.escape_formulas is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("reports: {escape_formulas: 'no'}", "reports.escape_formulas: 'no' is not a boolean (true or false)"),
        ("reports: {quote: true}", "reports.quote: unknown key (allowed: escape_formulas)"),
        ("reports: 3", "reports: 3 is not a mapping"),
    ],
)
def test_reports_errors(tmp_path: Path, text: str, expected: str) -> None:
    file = write(tmp_path, text)
    assert error_of(file) == f"{file}: {expected}"


# ---- output_dir apart from the inputs


def _sources_in(folder: str) -> str:
    return "sources:\n" + "".join(f"  {s}: {{type: csv, path: {folder}/{s}.csv}}\n" for s in "ABCDE")


@pytest.mark.parametrize(
    ("output_dir", "where"),
    [
        ("./in", "the folder"),
        ("in/", "the folder"),
        ("./in/reports", "inside the folder"),
        ("in/x/../y", "inside the folder"),
    ],
)
def test_output_dir_among_the_inputs_is_refused(tmp_path: Path, output_dir: str, where: str) -> None:
    file = write(tmp_path, _sources_in("./in") + f"output_dir: {output_dir}\n")
    message = error_of(file)
    assert message.startswith(
        f"{file}: output_dir: '{os.path.normpath(tmp_path / output_dir)}' is {where} of sources.A"
    )
    assert f"({str(tmp_path / 'in' / 'A.csv')!r})" in message
    assert message.endswith("reports need a folder of their own, apart from the input files")


def test_output_dir_beside_or_above_the_inputs_is_fine(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, _sources_in("./in") + "output_dir: ./in-reports\n")).output_dir == (
        tmp_path / "in-reports"
    )
    assert (
        load_config(write(tmp_path, _sources_in("./data/in") + "output_dir: ./data\n")).output_dir == tmp_path / "data"
    )
    assert load_config(write(tmp_path, "output_dir: ./output\n")).output_dir == tmp_path / "output"  # the defaults


def test_only_one_systems_folder_among_the_outputs_is_enough_to_refuse(tmp_path: Path) -> None:
    text = _sources_in("./in").replace("./in/E.csv", "./out/E.csv") + "output_dir: ./out\n"
    assert "is the folder of sources.E" in error_of(write(tmp_path, text))


def test_output_dir_through_a_symlink_to_an_input_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "reports").symlink_to(tmp_path / "in", target_is_directory=True)
    message = error_of(write(tmp_path, _sources_in("./in") + "output_dir: ./reports\n"))
    assert "output_dir: " in message and "is the folder of sources.A" in message


def test_an_output_dir_override_among_the_inputs_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(write(tmp_path, _sources_in("./in")))
    with pytest.raises(ConfigError, match=r"^command line: output_dir: '.*/in/sub' is inside the folder of sources\.A"):
        override(config, output_dir="in/sub")
    assert override(config, output_dir="elsewhere").output_dir == tmp_path / "elsewhere"


# ---- processing.timeout_s and processing.retries; notify


def test_source_reads_have_a_time_limit_and_retries_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    processing = load_config().processing
    assert processing.timeout_s == 300.0 and processing.retries == 2
    config = load_config(write(tmp_path, "processing: {timeout_s: 2.5, retries: 0}\n"))
    assert config.processing.timeout_s == 2.5 and config.processing.retries == 0
    assert config_as_dict(config)["processing"]["timeout_s"] == 2.5
    changed = override(config, timeout_s=10, retries=4)
    assert changed.processing.timeout_s == 10.0 and changed.processing.retries == 4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("processing: {timeout_s: 0}", "processing.timeout_s: 0 is out of range (must be > 0)"),
        ("processing: {timeout_s: -1}", "processing.timeout_s: -1 is out of range (must be > 0)"),
        ("processing: {timeout_s: .inf}", "processing.timeout_s: inf is out of range (must be > 0)"),
        ("processing: {timeout_s: soon}", "processing.timeout_s: 'soon' is not a number"),
        ("processing: {retries: -1}", "processing.retries: -1 is out of range (must be >= 0)"),
        ("processing: {retries: 1.5}", "processing.retries: 1.5 is not an integer"),
        ("processing: {retries: true}", "processing.retries: true is not an integer"),
    ],
)
def test_timeout_and_retries_errors(tmp_path: Path, text: str, expected: str) -> None:
    file = write(tmp_path, text)
    assert error_of(file) == f"{file}: {expected}"


def test_notify_command_defaults_to_none_and_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config().notify.command == ""
    assert load_config(write(tmp_path, "notify:\n")).notify.command == ""
    config = load_config(write(tmp_path, "notify: {command: 'cat > last-run.json'}\n"))
    assert config.notify.command == "cat > last-run.json"
    assert config_as_dict(config)["notify"] == {"command": "cat > last-run.json"}
    assert override(config, notify_command="true").notify.command == "true"
    (tmp_path / "copy").mkdir()
    assert load_config(write(tmp_path / "copy", yaml.safe_dump(config_as_dict(config)))) == config


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("notify: {command: [mail]}", "notify.command: ['mail'] is not a string"),
        ("notify: {cmd: mail}", "notify.cmd: unknown key (allowed: command)"),
        ("notify: mail", "notify: 'mail' is not a mapping"),
    ],
)
def test_notify_errors(tmp_path: Path, text: str, expected: str) -> None:
    file = write(tmp_path, text)
    assert error_of(file) == f"{file}: {expected}"


def test_letters_and_ascii_fold_are_read_and_default_to_the_old_rules(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "normalize: {ascii_fold: true, letters: unicode}\n"))
    assert config.normalize == NormalizationRules(ascii_fold=True, letters="unicode")
    assert (Config().normalize.ascii_fold, Config().normalize.letters) == (False, "ascii")


# ---- processing.max_shrink


def test_max_shrink_is_half_by_default_and_a_share(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config().processing.max_shrink == 0.5
    assert load_config(write(tmp_path, "processing: {max_shrink: 1}\n")).processing.max_shrink == 1.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("processing: {max_shrink: 1.5}", "processing.max_shrink: 1.5 is out of range (must be between 0 and 1)"),
        ("processing: {max_shrink: -0.1}", "processing.max_shrink: -0.1 is out of range (must be between 0 and 1)"),
        ("processing: {max_shrink: half}", "processing.max_shrink: 'half' is not a number"),
    ],
)
def test_max_shrink_errors(tmp_path: Path, text: str, expected: str) -> None:
    file = write(tmp_path, text)
    assert error_of(file) == f"{file}: {expected}"

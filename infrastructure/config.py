"""Configuration: load, validate and show KeySync's YAML config file.

``load_config`` reads the file (``$KEYSYNC_CONFIG`` or ``./keysync-config.yaml`` when no path is given),
checks every setting and returns a frozen ``Config``. Every problem is a ``ConfigError`` whose message is
one line naming the file, the setting's dotted path, the bad value and what is allowed.

Relative paths in the file, and the defaults of settings the file leaves out, resolve against the
config file's folder, so the same file means the same thing whatever the current directory is.
Without a config file the defaults resolve against the current directory.

``store.dsn`` may come from the environment (``KEYSYNC_STORE_DSN``, which wins over the file); the file
itself must never hold a password.
"""

from __future__ import annotations

import math
import os
import re
import reprlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs
import yaml

from keysync.domain.observations import SYSTEMS
from keysync.domain.rules import LETTERS, NormalizationRules
from keysync.infrastructure.mock_options import SCENARIOS

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_FILE",
    "DSN_ENV",
    "Config",
    "ConfigError",
    "Failures",
    "Notify",
    "Processing",
    "Provisioning",
    "Reports",
    "SandboxConfig",
    "Simulation",
    "Source",
    "Store",
    "Temporal",
    "config_as_dict",
    "load_config",
    "override",
]

CONFIG_ENV = "KEYSYNC_CONFIG"
DSN_ENV = "KEYSYNC_STORE_DSN"
DEFAULT_CONFIG_FILE = "keysync-config.yaml"

SOURCE_TYPES = ("csv", "json")
STRATEGIES = ("mirror", "namespaced")
MODES = ("full", "incremental")
BACKENDS = ("sqlite", "postgres")

# Relative defaults; they resolve against the config file's folder (or the current directory).
DEFAULT_INPUT_DIR = "input"
DEFAULT_OUTPUT_DIR = "output"
DEFAULT_LOGS_DIR = "logs"
DEFAULT_STORE_PATH = "data/keysync.sqlite"
DEFAULT_SCHEDULE = "0 2 * * *"  # every day at 02:00
DEFAULT_STATES_DIR = "sandbox_states"


class ConfigError(Exception):
    """A config file (or override) that cannot be used. The message is a single line."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.file = file
        self.key = key


# --------------------------------------------------------------------------------------------------------
# The configuration model


def _cwd_path(relative: str) -> Path:
    return Path.cwd() / relative


@attrs.frozen
class Source:
    """One system's export file."""

    type: str  # "csv" | "json"
    path: Path  # absolute


@attrs.frozen
class Provisioning:
    strategy: str = "mirror"  # "mirror" | "namespaced"
    auto_approve: bool = False


@attrs.frozen
class Temporal:
    simulate_history: bool = True
    days_of_history: int = 30  # 1..3660


@attrs.frozen
class Failures:
    inject_corruption: float = 0.01  # fraction of rows, 0..1
    simulate_timeout: bool = False


@attrs.frozen
class Simulation:
    seed: int = 42  # >= 0
    scenario: str = "normal"  # normal | drift | failure | recovery
    keys: int = 1000  # 1..10,000,000
    temporal: Temporal = attrs.Factory(Temporal)
    failures: Failures = attrs.Factory(Failures)


@attrs.frozen
class Processing:
    mode: str = "full"  # full | incremental
    batch_size: int = 100_000  # >= 1; keys per stored event
    parallel: bool = True
    checkpoint_interval: int = 5000  # >= 1
    max_key_length: int = 256  # >= 1
    max_file_mb: int = 2048  # >= 1; a system whose export is larger (in MiB) is unavailable for the run
    spill_rows: int = 200_000  # >= 0; an export of this many rows or more waits in a file during a run, not in memory
    lock_timeout_s: float = 30.0  # > 0, <= 86400
    timeout_s: float = 300.0  # > 0, <= 86400; the time limit of one attempt at reading one system's export
    retries: int = 2  # 0..10; attempts after a failed or timed-out read, with a growing pause in between
    # 0..1; an export that lost more than this share of the valid rows of the system's last accepted
    # export is held back as suspect (1: never)
    max_shrink: float = 0.5


@attrs.frozen
class Store:
    backend: str = "sqlite"  # sqlite | postgres
    path: Path = attrs.Factory(lambda: _cwd_path(DEFAULT_STORE_PATH))  # absolute
    dsn: str = ""  # postgres connection string, never with a password in the file


@attrs.frozen
class Reports:
    """How report files are written."""

    escape_formulas: bool = True  # quote cells a spreadsheet would run as formulas (OWASP CSV injection)


@attrs.frozen
class Notify:
    """Who to tell after each run: a shell command that gets the run's summary as JSON on its standard input."""

    command: str = ""  # "" = nobody


@attrs.frozen
class SandboxConfig:
    """keysync sandbox: where saved states live, how big one operation may be, where its files go."""

    states_dir: Path = attrs.Factory(lambda: _cwd_path(DEFAULT_STATES_DIR))  # absolute
    max_bulk_keys: int = 100_000  # >= 1; keys per system in one operation
    input_dir: Path | None = None  # absolute; None ("" in the file) = write to the sources' own paths


def _default_sources(input_dir: Path) -> dict[str, Source]:
    return {system: Source("csv", input_dir / f"{system}.csv") for system in SYSTEMS}


@attrs.frozen(kw_only=True)
class Config:
    """The whole configuration. ``path`` is where it came from and takes no part in equality."""

    path: Path | None = attrs.field(default=None, eq=False)
    schedule: str = DEFAULT_SCHEDULE  # cron expression
    normalize: NormalizationRules = attrs.Factory(NormalizationRules)
    provisioning: Provisioning = attrs.Factory(Provisioning)
    # input_dir comes before sources so that the default sources can live in it.
    input_dir: Path = attrs.Factory(lambda: _cwd_path(DEFAULT_INPUT_DIR))
    sources: dict[str, Source] = attrs.Factory(lambda self: _default_sources(self.input_dir), takes_self=True)
    simulation: Simulation = attrs.Factory(Simulation)
    processing: Processing = attrs.Factory(Processing)
    output_dir: Path = attrs.Factory(lambda: _cwd_path(DEFAULT_OUTPUT_DIR))
    reports: Reports = attrs.Factory(Reports)
    store: Store = attrs.Factory(Store)
    logs_dir: Path = attrs.Factory(lambda: _cwd_path(DEFAULT_LOGS_DIR))
    sandbox: SandboxConfig = attrs.Factory(SandboxConfig)
    notify: Notify = attrs.Factory(Notify)


# --------------------------------------------------------------------------------------------------------
# Value checks


@attrs.frozen
class _Where:
    """Where values come from: a label for messages (the file) and the folder relative paths start in."""

    origin: str
    base: Path

    def fail(self, key: str, message: str) -> NoReturn:
        raise ConfigError(f"{self.origin}: {key}: {message}", file=self.origin, key=key)


# repr, but bounded: YAML aliases can make a small file hold a list of billions of items (a "billion laughs"),
# whose full repr would take minutes and gigabytes, only to be cut to 80 characters.
_REPR = reprlib.Repr()  # Python 3.11's takes no arguments
_REPR.maxlevel = 3
_REPR.maxtuple = _REPR.maxlist = _REPR.maxdict = _REPR.maxset = _REPR.maxfrozenset = 10
_REPR.maxstring = _REPR.maxlong = _REPR.maxother = 100


def _show(value: Any) -> str:
    """A value as it would read in YAML, on one line and not too long."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, Path):
        text = repr(str(value))
    else:
        try:
            text = _REPR.repr(value)
        except Exception:  # a pathological value must not hide the real error
            text = f"<{type(value).__name__}>"
    text = " ".join(text.split())
    return text if len(text) <= 80 else text[:77] + "..."


_Check = Callable[[Any, str, _Where], Any]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_bool(value: Any, key: str, where: _Where) -> bool:
    if not isinstance(value, bool):
        where.fail(key, f"{_show(value)} is not a boolean (true or false)")
    return value


def _check_str(value: Any, key: str, where: _Where) -> str:
    if not isinstance(value, str):
        where.fail(key, f"{_show(value)} is not a string")
    return value


# The largest integer anything downstream holds (SQLite, numpy, pyarrow): a larger one is a mistake, and it must be
# one clear line here, not a traceback from deep inside a run.
_INT_MAX = 2**63 - 1


def _int(minimum: int, maximum: int = _INT_MAX) -> _Check:
    def check(value: Any, key: str, where: _Where) -> int:
        if not _is_int(value):
            where.fail(key, f"{_show(value)} is not an integer")
        if value < minimum:
            where.fail(key, f"{_show(value)} is out of range (must be >= {minimum})")
        if value > maximum:
            where.fail(key, f"{_show(value)} is out of range (must be <= {maximum})")
        return int(value)

    return check


def _float(low: float, high: float | None = None, *, low_open: bool = False, cap: float | None = None) -> _Check:
    """A number from low to high (both included unless low_open), or above low and at most ``cap``: a cap is a
    limit of the machinery (a timeout Python can wait for) rather than of the setting's meaning, so the message
    names it only when it is what the value breaks."""
    if high is not None:
        allowed = f"must be between {low:g} and {high:g}"
    else:
        allowed = f"must be > {low:g}" if low_open else f"must be >= {low:g}"

    def check(value: Any, key: str, where: _Where) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            where.fail(key, f"{_show(value)} is not a number")
        try:
            number = float(value)
        except OverflowError:
            where.fail(key, f"{_show(value)} is out of range ({allowed})")
        too_low = number <= low if low_open else number < low
        if not math.isfinite(number) or too_low or (high is not None and number > high):
            where.fail(key, f"{_show(value)} is out of range ({allowed})")
        if cap is not None and number > cap:
            where.fail(key, f"{_show(value)} is out of range (must be <= {cap:g})")
        return number

    return check


def _choice(*allowed: str) -> _Check:
    def check(value: Any, key: str, where: _Where) -> str:
        if not isinstance(value, str) or value not in allowed:
            where.fail(key, f"{_show(value)} is not one of {', '.join(allowed)}")
        return value

    return check


def _check_path(value: Any, key: str, where: _Where) -> Path:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        where.fail(key, f"{_show(value)} is not a path (a string)")
    if not value.strip():
        where.fail(key, f"{_show(value)} is not a path (it is empty)")
    if "\0" in value:
        where.fail(key, f"{_show(value)} is not a path (it contains a NUL character)")
    return _resolve(where.base, value)


def _resolve(base: Path, value: str) -> Path:
    """An absolute, normalized path; relative ones start in base. Symlinks are left alone."""
    return Path(os.path.normpath(base / os.path.expanduser(value)))


# Cron: five fields, or one of the usual @macros.
_CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 7, _DAYS),
)
_CRON_ITEM = re.compile(r"^(\*|(\w+)(?:-(\w+))?)(?:/(\d+))?$", re.ASCII)


def _cron_problem(expression: str) -> str | None:
    """What is wrong with a cron expression, or None."""
    fields = expression.split()
    if len(fields) == 1 and fields[0].lower() in _CRON_MACROS:
        return None
    if len(fields) != 5:
        return f"need 5 fields (minute hour day-of-month month day-of-week) or one of {', '.join(_CRON_MACROS)}"
    for text, (name, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for item in text.split(","):
            match = _CRON_ITEM.match(item)
            if match is None:
                return f"{name} field {item!r} is not *, N, N-M or one of those with /STEP"
            values = []
            for part in (match.group(2), match.group(3)):
                if part is None:
                    continue
                if part.isdigit():
                    number = int(part)
                elif part.lower() in names:
                    number = names.index(part.lower()) + (1 if name == "month" else 0)
                else:
                    return f"{name} {part!r} is not a number"
                if not low <= number <= high:
                    return f"{name} {part} is out of range {low}-{high}"
                values.append(number)
            if len(values) == 2 and values[0] > values[1]:
                return f"{name} range {item!r} runs backwards"
            if match.group(4) is not None and int(match.group(4)) == 0:
                return f"{name} step in {item!r} must be >= 1"
    return None


def _check_schedule(value: Any, key: str, where: _Where) -> str:
    text = _check_str(value, key, where)
    problem = _cron_problem(text)
    if problem is not None:
        where.fail(key, f"{_show(value)} is not a cron expression ({problem})")
    return text


def _check_optional_path(value: Any, key: str, where: _Where) -> Path | None:
    """A path, or "" (or null) for none."""
    if value is None or value == "":
        return None
    return _check_path(value, key, where)


def _check_collapse_delims(value: Any, key: str, where: _Where) -> str:
    if value is None or value is False:
        return ""
    if not isinstance(value, str):
        where.fail(key, f"{_show(value)} is not a string (a delimiter, or false for off)")
    return value


# Passwords in a DSN: "postgresql://user:secret@host/db", "...?password=secret", "password=secret host=x".
_KV_PASSWORD = re.compile(r"(?i)(?:^|(?<=\s))password\s*=\s*(?:'(?:[^'\\]|\\.)*'?|\S*)\s*")


def _split_url(dsn: str) -> Any:
    if "://" not in dsn:
        return None
    try:
        parts = urlsplit(dsn)
        _ = parts.password  # parsing the netloc can fail too
    except ValueError:
        return None
    return parts


def _dsn_has_password(dsn: str) -> bool:
    parts = _split_url(dsn)
    if parts is not None and parts.password is not None:
        return True
    if parts is not None and any(k.lower() == "password" for k, _ in parse_qsl(parts.query)):
        return True
    return re.search(r"(?i)password\s*=", dsn) is not None


def _redact_dsn(dsn: str) -> str:
    """The DSN without any password in it (for showing, or writing to a file)."""
    parts = _split_url(dsn)
    if parts is not None:
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, hosts = netloc.rpartition("@")
            netloc = f"{userinfo.partition(':')[0]}@{hosts}"
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k.lower() != "password"])
        dsn = urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return _KV_PASSWORD.sub("", dsn).strip()


_PASSWORD_MESSAGE = (
    f"a password is not allowed here (set {DSN_ENV} in the environment, or put the password in ~/.pgpass)"
)


def _check_dsn(value: Any, key: str, where: _Where) -> str:
    if value is None:
        return ""
    text = _check_str(value, key, where)
    if _dsn_has_password(text):
        # The value is deliberately not shown: it holds a secret.
        where.fail(key, _PASSWORD_MESSAGE)
    return text


# --------------------------------------------------------------------------------------------------------
# Sections


def _mapping(value: Any, key: str, where: _Where) -> Mapping[Any, Any]:
    """A section's mapping. An empty section (``processing:`` with nothing under it) means all defaults."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        where.fail(key, f"{_show(value)} is not a mapping")
    return value


def _known_keys(mapping: Mapping[Any, Any], allowed: tuple[str, ...], prefix: str, where: _Where) -> None:
    for name in mapping:
        if name not in allowed:
            label = name if isinstance(name, str) and name.isprintable() and len(name) <= 80 else _show(name)
            dotted = f"{prefix}.{label}" if prefix else label
            where.fail(dotted, f"unknown key (allowed: {', '.join(allowed)})")


def _dotted(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _fields(raw: Any, prefix: str, checks: Mapping[str, _Check], where: _Where) -> dict[str, Any]:
    """Check a section's keys and values; only the keys that are present are returned."""
    mapping = _mapping(raw, prefix, where)
    _known_keys(mapping, tuple(checks), prefix, where)
    return {name: checks[name](value, _dotted(prefix, name), where) for name, value in mapping.items()}


_DAY_S = 86_400.0  # the longest a run waits for a lock or for one read: longer is a mistake, or infinite for Python
_NORMALIZE_CHECKS: dict[str, _Check] = {
    "trim": _check_bool,
    "uppercase": _check_bool,
    "ascii_fold": _check_bool,
    "strip_non_alnum": _check_bool,
    "letters": _choice(*LETTERS),
    "collapse_delims": _check_collapse_delims,
    "pad_numbers": _int(0, 64),
}
_PROVISIONING_CHECKS: dict[str, _Check] = {"strategy": _choice(*STRATEGIES), "auto_approve": _check_bool}
_TEMPORAL_CHECKS: dict[str, _Check] = {"simulate_history": _check_bool, "days_of_history": _int(1, 3660)}
_FAILURES_CHECKS: dict[str, _Check] = {
    "inject_corruption": _float(0.0, 1.0),
    "simulate_timeout": _check_bool,
}
_SIMULATION_CHECKS: dict[str, _Check] = {
    "seed": _int(0),
    "scenario": _choice(*SCENARIOS),
    "keys": _int(1, 10_000_000),
    "temporal": lambda v, k, w: Temporal(**_fields(v, k, _TEMPORAL_CHECKS, w)),
    "failures": lambda v, k, w: Failures(**_fields(v, k, _FAILURES_CHECKS, w)),
}
_PROCESSING_CHECKS: dict[str, _Check] = {
    "mode": _choice(*MODES),
    "batch_size": _int(1),
    "parallel": _check_bool,
    "checkpoint_interval": _int(1),
    "max_key_length": _int(1),
    "max_file_mb": _int(1),
    "spill_rows": _int(0),
    "lock_timeout_s": _float(0.0, low_open=True, cap=_DAY_S),
    "timeout_s": _float(0.0, low_open=True, cap=_DAY_S),
    "retries": _int(0, 10),
    "max_shrink": _float(0.0, 1.0),
}
_STORE_CHECKS: dict[str, _Check] = {"backend": _choice(*BACKENDS), "path": _check_path, "dsn": _check_dsn}
_SOURCE_CHECKS: dict[str, _Check] = {"type": _choice(*SOURCE_TYPES), "path": _check_path}
_REPORTS_CHECKS: dict[str, _Check] = {"escape_formulas": _check_bool}
_NOTIFY_CHECKS: dict[str, _Check] = {"command": _check_str}
_SANDBOX_CHECKS: dict[str, _Check] = {
    "states_dir": _check_path,
    "max_bulk_keys": _int(1),
    "input_dir": _check_optional_path,
}


def _normalization_rules(values: dict[str, Any], where: _Where) -> NormalizationRules:
    """Build the rules; a ValueError from the domain becomes a ConfigError naming the culprit setting."""
    try:
        return NormalizationRules(**values)
    except (ValueError, TypeError) as error:
        culprit = "collapse_delims"
        for name, value in values.items():
            try:
                NormalizationRules(**{name: value})
            except (ValueError, TypeError):
                culprit = name
                break
        reason = " ".join(str(error).split()) or type(error).__name__
        where.fail(f"normalize.{culprit}", f"{_show(values.get(culprit))} is not allowed by the rules ({reason})")


def _sources(raw: Any, where: _Where) -> dict[str, Source]:
    mapping = _mapping(raw, "sources", where)
    _known_keys(mapping, SYSTEMS, "sources", where)
    missing = [system for system in SYSTEMS if system not in mapping]
    if missing:
        where.fail("sources", f"missing {', '.join(missing)} (sources must list exactly {', '.join(SYSTEMS)})")
    sources: dict[str, Source] = {}
    for system in SYSTEMS:
        prefix = f"sources.{system}"
        values = _fields(mapping[system], prefix, _SOURCE_CHECKS, where)
        for name in _SOURCE_CHECKS:
            if name not in values:
                allowed = f"one of {', '.join(SOURCE_TYPES)}" if name == "type" else "a file path"
                where.fail(f"{prefix}.{name}", f"missing (must be {allowed})")
        sources[system] = Source(**values)
    return sources


def _check_distinct_sources(sources: Mapping[str, Source], where: _Where) -> None:
    seen: dict[str, str] = {}
    for system, source in sources.items():
        identity = os.path.normcase(os.path.realpath(source.path))
        if identity in seen:
            where.fail(
                f"sources.{system}.path",
                f"{_show(source.path)} is already used by sources.{seen[identity]} (each system needs its own file)",
            )
        seen[identity] = system


def _check_output_dir_apart(config: Config, where: _Where) -> None:
    """Reports need a folder of their own: output_dir may be neither the folder of an input file nor inside one,
    so that a report can never replace an export, nor be read as one. Symbolic links are followed."""
    output = Path(os.path.normcase(os.path.realpath(config.output_dir)))
    for system, source in config.sources.items():
        folder = Path(os.path.normcase(os.path.realpath(source.path.parent)))
        if output == folder or folder in output.parents:
            where_it_is = "the folder" if output == folder else "inside the folder"
            where.fail(
                "output_dir",
                f"{_show(config.output_dir)} is {where_it_is} of sources.{system} ({_show(source.path)}); "
                "reports need a folder of their own, apart from the input files",
            )


_TOP_LEVEL = (
    "schedule",
    "normalize",
    "provisioning",
    "sources",
    "simulation",
    "processing",
    "output_dir",
    "reports",
    "store",
    "logs_dir",
    "input_dir",
    "sandbox",
    "notify",
)


def _build(document: Any, where: _Where, path: Path | None) -> Config:
    if document is None:  # an empty file
        document = {}
    if not isinstance(document, Mapping):
        where.fail("(top level)", f"{_show(document)} is not a mapping of settings")
    _known_keys(document, _TOP_LEVEL, "", where)

    def path_or(name: str, default: str) -> Path:
        return _check_path(document.get(name, default), name, where)

    input_dir = path_or("input_dir", DEFAULT_INPUT_DIR)
    sources = _sources(document["sources"], where) if "sources" in document else _default_sources(input_dir)
    _check_distinct_sources(sources, where)

    sandbox_values = _fields(document.get("sandbox"), "sandbox", _SANDBOX_CHECKS, where)
    sandbox_values.setdefault("states_dir", _resolve(where.base, DEFAULT_STATES_DIR))

    store_values = _fields(document.get("store"), "store", _STORE_CHECKS, where)
    store_values.setdefault("path", _resolve(where.base, DEFAULT_STORE_PATH))
    env_dsn = os.environ.get(DSN_ENV, "")
    if env_dsn:
        store_values["dsn"] = env_dsn

    config = Config(
        path=path,
        schedule=_check_schedule(document["schedule"], "schedule", where)
        if "schedule" in document
        else DEFAULT_SCHEDULE,
        normalize=_normalization_rules(
            _fields(document.get("normalize"), "normalize", _NORMALIZE_CHECKS, where), where
        ),
        provisioning=Provisioning(**_fields(document.get("provisioning"), "provisioning", _PROVISIONING_CHECKS, where)),
        input_dir=input_dir,
        sources=sources,
        simulation=Simulation(**_fields(document.get("simulation"), "simulation", _SIMULATION_CHECKS, where)),
        processing=Processing(**_fields(document.get("processing"), "processing", _PROCESSING_CHECKS, where)),
        output_dir=path_or("output_dir", DEFAULT_OUTPUT_DIR),
        reports=Reports(**_fields(document.get("reports"), "reports", _REPORTS_CHECKS, where)),
        store=Store(**store_values),
        logs_dir=path_or("logs_dir", DEFAULT_LOGS_DIR),
        sandbox=SandboxConfig(**sandbox_values),
        notify=Notify(**_fields(document.get("notify"), "notify", _NOTIFY_CHECKS, where)),
    )
    _check_output_dir_apart(config, where)
    return config


# --------------------------------------------------------------------------------------------------------
# YAML


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and reads 1e-3 as a float (YAML 1.2), not a string."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:
                    continue  # unhashable: the base class reports it
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {_show(key)}",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: list(resolvers) for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _parse_yaml(data: bytes, origin: str) -> Any:
    try:
        return yaml.load(data, Loader=_Loader)  # a SafeLoader subclass: safe
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        parts = [part for part in (error.context, error.problem) if part]
        if parts and parts[0] == "while constructing a mapping":
            parts = parts[1:]  # our duplicate-key report: the problem says it all
        problem = " ".join(": ".join(parts).split()) or "not valid YAML"
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{origin}: invalid YAML{where}: {problem}", file=origin) from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{origin}: invalid YAML: {' '.join(str(error).split())}", file=origin) from error
    except RecursionError as error:
        raise ConfigError(f"{origin}: invalid YAML: nested too deeply", file=origin) from error


# --------------------------------------------------------------------------------------------------------
# Public API


def load_config(path: Path | str | None = None) -> Config:
    """Load and validate the config file.

    With no path: ``$KEYSYNC_CONFIG`` if set, else ``./keysync-config.yaml``; only that last default may
    be missing, and then the defaults apply (paths relative to the current directory).
    """
    explicit = True
    source_hint = ""
    if path is None:
        env_path = os.environ.get(CONFIG_ENV, "")
        if env_path:
            path, source_hint = env_path, f" (from {CONFIG_ENV})"
        else:
            path, explicit = DEFAULT_CONFIG_FILE, False
    origin = str(path)
    file = Path(path).expanduser()
    if not file.exists() and not explicit:
        return _build({}, _Where(origin="defaults", base=Path.cwd()), None)
    try:
        data = file.read_bytes()
    except FileNotFoundError as error:
        raise ConfigError(f"{origin}: config file not found{source_hint}", file=origin) from error
    except (OSError, ValueError) as error:  # a folder, no permission, a NUL in the name...
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise ConfigError(f"{origin}: cannot read the config file{source_hint}: {reason}", file=origin) from error
    absolute = Path(os.path.abspath(file))
    document = _parse_yaml(data, origin)
    return _build(document, _Where(origin=origin, base=absolute.parent), absolute)


# Override names (CLI options) -> (section path, field, check). Store's path is "store_path", the sandbox's
# input_dir "sandbox_input_dir", notify's command "notify_command".
_OVERRIDES: dict[str, tuple[tuple[str, ...], str, _Check]] = {
    "schedule": ((), "schedule", _check_schedule),
    "output_dir": ((), "output_dir", _check_path),
    "logs_dir": ((), "logs_dir", _check_path),
    "input_dir": ((), "input_dir", _check_path),
    **{name: (("normalize",), name, check) for name, check in _NORMALIZE_CHECKS.items()},
    **{name: (("provisioning",), name, check) for name, check in _PROVISIONING_CHECKS.items()},
    **{
        name: (("simulation",), name, check)
        for name, check in _SIMULATION_CHECKS.items()
        if name not in ("temporal", "failures")
    },
    **{name: (("simulation", "temporal"), name, check) for name, check in _TEMPORAL_CHECKS.items()},
    **{name: (("simulation", "failures"), name, check) for name, check in _FAILURES_CHECKS.items()},
    **{name: (("processing",), name, check) for name, check in _PROCESSING_CHECKS.items()},
    "backend": (("store",), "backend", _STORE_CHECKS["backend"]),
    "store_path": (("store",), "path", _check_path),
    "dsn": (("store",), "dsn", _check_dsn),
    "states_dir": (("sandbox",), "states_dir", _check_path),
    "max_bulk_keys": (("sandbox",), "max_bulk_keys", _SANDBOX_CHECKS["max_bulk_keys"]),
    "sandbox_input_dir": (("sandbox",), "input_dir", _check_optional_path),
    "notify_command": (("notify",), "command", _NOTIFY_CHECKS["command"]),
    "escape_formulas": (("reports",), "escape_formulas", _REPORTS_CHECKS["escape_formulas"]),
}


def _evolve_at(obj: Any, sections: tuple[str, ...], field: str, value: Any) -> Any:
    if not sections:
        return attrs.evolve(obj, **{field: value})
    head, *rest = sections
    return attrs.evolve(obj, **{head: _evolve_at(getattr(obj, head), tuple(rest), field, value)})


def override(config: Config, **changes: Any) -> Config:
    """A copy of config with command-line values applied; a value of None means "not given".

    Names are the settings' own names (``mode``, ``keys``, ``auto_approve``, ``output_dir``...), with
    ``store_path`` for ``store.path``, ``sandbox_input_dir`` for ``sandbox.input_dir`` and ``notify_command``
    for ``notify.command``. Relative paths
    resolve against the current directory. Values are checked like the file's (ConfigError); an unknown name
    is a TypeError. Changing ``input_dir`` does not move the sources.
    """
    unknown = sorted(name for name in changes if name not in _OVERRIDES)
    if unknown:
        raise TypeError(f"override() got unknown setting(s) {', '.join(unknown)} (allowed: {', '.join(_OVERRIDES)})")
    where = _Where(origin="command line", base=Path.cwd())
    normalize_changes: dict[str, Any] = {}
    for name, value in changes.items():
        if value is None:
            continue
        sections, field, check = _OVERRIDES[name]
        checked = check(value, _dotted(".".join(sections), field), where)
        if sections == ("normalize",):
            normalize_changes[field] = checked
        else:
            config = _evolve_at(config, sections, field, checked)
    if normalize_changes:
        values = attrs.asdict(config.normalize) | normalize_changes
        config = attrs.evolve(config, normalize=_normalization_rules(values, where))
    if changes.get("output_dir") is not None:
        _check_output_dir_apart(config, where)
    return config


def checked_rules(normalize: Any, strategy: Any, origin: str) -> tuple[dict[str, Any] | None, str | None]:
    """Rules written outside the config (a sandbox scenario's ``normalize`` section and ``strategy``), checked as
    the config's are: known keys only, each value of its type, the rules they make together allowed. Only the
    settings given are returned (None for a part left out), to be laid over the defaults. ConfigError naming
    ``origin``."""
    where = _Where(origin=origin, base=Path.cwd())
    settings = None
    if normalize is not None:
        settings = _fields(normalize, "normalize", _NORMALIZE_CHECKS, where)
        _normalization_rules(settings, where)
    if strategy is not None:
        strategy = _PROVISIONING_CHECKS["strategy"](strategy, "strategy", where)
    return settings, strategy


def config_as_dict(config: Config) -> dict[str, Any]:
    """The config as plain YAML-able data (paths as strings), in the file's order.

    Loading a file holding this dict gives an equal Config. A password in ``store.dsn`` (only possible
    via the environment) is left out.
    """
    return {
        "schedule": config.schedule,
        "normalize": attrs.asdict(config.normalize),
        "provisioning": attrs.asdict(config.provisioning),
        "sources": {
            system: {"type": source.type, "path": str(source.path)} for system, source in config.sources.items()
        },
        "simulation": attrs.asdict(config.simulation),
        "processing": attrs.asdict(config.processing),
        "output_dir": str(config.output_dir),
        "reports": attrs.asdict(config.reports),
        "store": {
            "backend": config.store.backend,
            "path": str(config.store.path),
            "dsn": _redact_dsn(config.store.dsn),
        },
        "logs_dir": str(config.logs_dir),
        "input_dir": str(config.input_dir),
        "sandbox": {
            "states_dir": str(config.sandbox.states_dir),
            "max_bulk_keys": config.sandbox.max_bulk_keys,
            "input_dir": "" if config.sandbox.input_dir is None else str(config.sandbox.input_dir),
        },
        "notify": attrs.asdict(config.notify),
    }

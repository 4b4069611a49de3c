"""Finding and reading scenario files: the shipped library (package data of keysync.application), or any YAML file
a user names, so custom scenarios run the same way."""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from keysync.application.sandbox_scenarios import Scenario, ScenarioError, parse_scenario
from keysync.infrastructure.config import ConfigError, checked_rules

_SUFFIXES = (".yaml", ".yml")


def library() -> Traversable:
    return files("keysync.application").joinpath("scenarios")


def library_names() -> list[str]:
    folder = library()
    if not folder.is_dir():
        return []
    return sorted(p.name.rsplit(".", 1)[0] for p in folder.iterdir() if p.name.endswith(_SUFFIXES))


def load_scenario(name: str) -> Scenario:
    """The library scenario ``name``, or the scenario in the file ``name``, its rules checked as the config's are."""
    return parse_scenario(*read_scenario(name), check_rules=_config_checks)


def _config_checks(normalize: Any, strategy: Any, origin: str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        return checked_rules(normalize, strategy, origin)
    except ConfigError as error:
        raise ScenarioError(str(error)) from error


def read_scenario(name: str) -> tuple[Any, str]:
    """The parsed YAML of the library scenario ``name``, or of the file ``name``; and where it came from."""
    for suffix in _SUFFIXES:
        shipped = library().joinpath(name + suffix)
        if "/" not in name and shipped.is_file():
            return _parse(shipped.read_text(encoding="utf-8"), f"scenario {name}"), f"scenario {name}"
    path = Path(name)
    if path.suffix in _SUFFIXES and path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ScenarioError(f"{path}: cannot read it ({error})") from error
        return _parse(text, str(path)), str(path)
    raise ScenarioError(
        f"no scenario {name!r}: name one of {', '.join(library_names()) or '(none shipped)'}, or a .yaml file"
    )


def _parse(text: str, origin: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ScenarioError(f"{origin}: invalid YAML: {' '.join(str(error).split())}") from error

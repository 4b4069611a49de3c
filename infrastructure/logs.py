"""Logging: human lines on the console, JSON lines in logs/keysync.log."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

from keysync.infrastructure.terminal_safety import escape_controls

LOGGER = "keysync"


class ConsoleLines(logging.Formatter):
    """Human lines for the console, with control and bidi characters from data escaped."""

    def format(self, record: logging.LogRecord) -> str:
        return escape_controls(super().format(record))


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


_WARNED: set[Path] = set()  # log folders this process has said it cannot write to


def setup_logging(logs_dir: Path, verbose: bool = False) -> None:
    """File: everything, as JSON lines. Console: the same as human lines with --verbose (without it the commands
    print their own messages, so the console is not told things twice). Safe to call twice."""
    logger = logging.getLogger(LOGGER)
    logger.setLevel(logging.INFO)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    if verbose:
        console = logging.StreamHandler()
        console.setFormatter(ConsoleLines("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(console)
    try:
        logs_dir.mkdir(parents=True, exist_ok=True)
        file = logging.FileHandler(logs_dir / "keysync.log", encoding="utf-8")
    except OSError as error:
        if logs_dir not in _WARNED:  # a command may set logging up twice (after loading the config, with -v)
            _WARNED.add(logs_dir)
            logger.warning("cannot write logs to %s: %s", logs_dir, error)
    else:
        file.setFormatter(JsonLines())
        logger.addHandler(file)
    logger.propagate = False

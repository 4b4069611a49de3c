"""The README's tour runs as written: every line of its marked ``bash`` blocks, through the installed keysync
command, in a temporary folder that holds the repository's config (so every path it names points inside it)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent  # .venv/bin, where pip installed the keysync command
TOUR_MARK = "<!-- tour:"
FENCE = re.compile(r"^```(\w*)\s*$")


def bash_blocks(text: str) -> list[tuple[bool, list[str]]]:
    """Each fenced bash block: whether the tour mark precedes it, and its command lines (blank lines dropped)."""
    blocks: list[tuple[bool, list[str]]] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening or not opening.group(1):
            index += 1
            continue
        end = lines.index("```", index + 1)
        previous = next((line for line in reversed(lines[:index]) if line.strip()), "")
        if opening.group(1) == "bash":
            blocks.append((previous.startswith(TOUR_MARK), [line for line in lines[index + 1 : end] if line.strip()]))
        index = end + 1
    return blocks


def command(line: str) -> list[str]:
    """A line's words without its comment, as the shell splits them."""
    return shlex.split(line, comments=True)


def tour_lines() -> list[str]:
    return [line for marked, block in bash_blocks(README.read_text(encoding="utf-8")) if marked for line in block]


def test_the_two_set_up_commands_come_first_as_they_are():
    [(_, quick_start), *_] = bash_blocks(README.read_text(encoding="utf-8"))
    assert [command(line) for line in quick_start[:2]] == [["./run.sh"], ["./test.sh"]]
    assert (ROOT / "run.sh").is_file() and (ROOT / "test.sh").is_file()


def test_the_tour_shows_the_everyday_commands():
    commands = [" ".join(command(line)[:3]) for line in tour_lines()]
    for everyday in ("keysync registry approve", "keysync run -m", "keysync trends", "keysync sandbox init"):
        assert any(c.startswith(everyday) for c in commands), (everyday, commands)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """What ./run.sh leaves behind, in small: the repository's config (200 keys) and one run on generated data."""
    config = yaml.safe_load((ROOT / "keysync-config.yaml").read_text(encoding="utf-8"))
    config["simulation"]["keys"] = 200
    (tmp_path / "keysync-config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    run(["keysync", "run", "--generate-data"], tmp_path)
    return tmp_path


def run(args: list[str] | str, cwd: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("KEYSYNC_CONFIG", "KEYSYNC_STORE_DSN")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    shell = ["bash", "-c", args] if isinstance(args, str) else args
    result = subprocess.run(shell, cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"README line `{args}` exited {result.returncode}:\n{result.stderr[-2000:]}"


def test_every_line_of_the_tour_runs_as_written(folder: Path):
    lines = tour_lines()
    assert lines, f"no bash block in {README.name} follows a {TOUR_MARK!r} mark"
    for line in lines:
        run(line, folder)

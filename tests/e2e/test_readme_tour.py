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


def test_the_tour_reads_in_five_minutes():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 150


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """What ./run.sh leaves behind, in small: the repository's config (200 keys) and one run on generated data;
    with the run's table."""
    folder = tmp_path_factory.mktemp("tour")
    config = yaml.safe_load((ROOT / "keysync-config.yaml").read_text(encoding="utf-8"))
    config["simulation"]["keys"] = 200
    (folder / "keysync-config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return folder, run(["keysync", "run", "--generate-data"], folder)


def run(args: list[str] | str, cwd: Path) -> str:
    assert (BIN / "keysync").exists(), (
        f"no keysync command beside {sys.executable}: run the tests with .venv/bin/pytest"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("KEYSYNC_CONFIG", "KEYSYNC_STORE_DSN")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    shell = ["bash", "-c", args] if isinstance(args, str) else args
    result = subprocess.run(shell, cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"README line `{args}` exited {result.returncode}:\n{result.stderr[-2000:]}"
    return result.stdout


def _words(line: str) -> list[str]:
    return line.split()


def test_the_samples_show_what_a_run_shows(first_run: tuple[Path, str]):
    folder, table = first_run
    readme = README.read_text(encoding="utf-8").splitlines()
    [heading] = [line for line in table.splitlines() if _words(line)[:1] == ["system"]]
    assert _words(heading) in [_words(line) for line in readme], f"the README's sample table lacks: {heading.strip()}"
    header = (folder / "output" / "diff_missing_in_A.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header in readme, f"the README's sample of diff_missing_in_A.csv lacks its header: {header}"


def test_every_line_of_the_tour_runs_as_written(first_run: tuple[Path, str]):
    folder, _ = first_run
    lines = tour_lines()
    assert lines, f"no bash block in {README.name} follows a {TOUR_MARK!r} mark"
    for line in lines:
        run(line, folder)

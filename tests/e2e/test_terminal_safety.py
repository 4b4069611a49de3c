"""No raw control or escape sequence from data reaches the terminal: tables, messages, logs and errors.

Hostile keys travel through the real commands; whatever the commands print (stdout and stderr) must hold none of
them raw, only their escaped spelling (``\\x1b``, ``\\u202e``...).
"""

from __future__ import annotations

import re

import pytest

from keysync.cli.display import safe
from tests.e2e.test_sandbox_support import sandbox

# ESC sequences (CSI colour, OSC window title, clear screen), C1 controls (NEL, the one-character CSI) and the
# bidirectional controls of "Trojan Source" (RLO, LRI...PDI).
ESC = "\x1b[31mRED\x1b[0m"
OSC = "\x1b]0;owned\x07"
CLEAR = "\x1b[2J"
NEL = "NEL\x85X"
CSI = "CSI\x9b31mX"
RLO = "RLO\u202eTXT"
ISOLATE = "LRI\u2066ISO\u2069"
HOSTILE = [ESC, OSC, CLEAR, NEL, CSI, RLO, ISOLATE]
# Everything that must never be printed raw (display.safe escapes exactly these).
UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
A = ["CUST-1", "CUST-2"]
# Normalization off: the hostile characters survive into normalized and master keys, the hardest case.
RAW_RULES = "normalize: {trim: false, uppercase: false, strip_non_alnum: false, collapse_delims: false}\n"


def assert_clean(result) -> None:
    for stream, text in (("stdout", result.stdout), ("stderr", result.stderr)):
        found = UNSAFE.search(text)
        assert found is None, f"raw {found.group()!r} on {stream}: {text!r}"


@pytest.fixture
def hostile(project, write_systems):
    """A store whose registry, audit trail and run history hold the hostile keys (bidi keys are accepted by the
    readers; the control characters are rejected rows, and reach the store only as escaped text)."""
    project.write_config(RAW_RULES)
    write_systems(A=A, B=[*A, *HOSTILE], C=A, D=A, E=A)
    return project


def test_safe_escapes_every_kind_of_terminal_control():
    for text in [*HOSTILE, "\udcff", "\u200e\u200f\u061c", "\x7f"]:
        assert UNSAFE.search(safe(text)) is None
    assert safe(RLO) == "RLO\\u202eTXT" and safe(ESC) == "\\x1b[31mRED\\x1b[0m" and safe(CSI) == "CSI\\x9b31mX"
    assert safe("tab\tand ünïcödé") == "tab\tand ünïcödé"  # printable text is left alone


def test_run_and_its_verbose_log(hostile):
    assert_clean(hostile.invoke("run"))
    assert_clean(hostile.invoke("run", "-v"))


def test_registry_list_shows_hostile_master_keys_escaped(hostile):
    hostile.invoke("run")
    assert_clean(hostile.invoke("registry", "list"))


@pytest.mark.parametrize("key", HOSTILE)
def test_registry_errors_quote_keys_escaped(hostile, key):
    hostile.invoke("run")
    # Control characters never become master keys (their rows are rejected): an error naming the key. Bidi keys
    # are master keys: approving works, and the message says so.
    assert_clean(hostile.invoke("registry", "approve", key, expect=None))
    assert_clean(hostile.invoke("registry", "deprecate", key, "--reason", CLEAR, expect=None))


def test_a_hostile_reason_is_escaped_wherever_it_shows(hostile):
    hostile.invoke("run")
    assert_clean(hostile.invoke("registry", "deprecate", RLO, "--reason", f"{ESC} {NEL} {ISOLATE}"))
    for args in (["registry", "list"], ["audit"], ["audit", "--type", "MasterKeysDeprecated"], ["history"]):
        assert_clean(hostile.invoke(*args))


@pytest.mark.parametrize("key", HOSTILE)
def test_audit_and_key_with_hostile_keys(hostile, key):
    hostile.invoke("run")
    assert_clean(hostile.invoke("audit", "--key", key))
    assert_clean(hostile.invoke("audit", "--run", key, expect=1))  # no such run: said, escaped
    assert_clean(hostile.invoke("key", key))


@pytest.fixture
def hostile_file_name(project, write_systems):
    """System D's export is missing, and its configured name holds an ESC sequence and a bidi control: the
    reasons that name it (messages, history, logs) carry them."""
    write_systems(A=A, B=A, C=A, E=A)
    sources = "".join(f"  {s}: {{type: csv, path: ./input/{s}.csv}}\n" for s in "ABCE")
    project.write_config(f'sources:\n{sources}  D: {{type: csv, path: "./input/\\e[31mD\\u202e.csv"}}\n')
    return project


def test_history_with_a_hostile_file_name(hostile_file_name):
    assert_clean(hostile_file_name.invoke("run"))
    assert_clean(hostile_file_name.invoke("history"))


def test_the_verbose_console_log_is_escaped(hostile_file_name):
    assert_clean(hostile_file_name.invoke("run", "-v"))


def test_sandbox_commands_with_hostile_keys(project):
    project.write_config(RAW_RULES)
    sandbox(project, "init", "--keys", "5")
    for key in (RLO, ISOLATE):
        assert_clean(sandbox(project, "add-key", key, "--systems", "B,C"))
    assert_clean(sandbox(project, "add-key", ESC, CSI, "--systems", "D", expect=None))
    for args in (["status"], ["history"], ["predict"]):
        assert_clean(sandbox(project, *args))
    assert_clean(sandbox(project, "remove-key", RLO, "--systems", "E", "--yes", expect=1))  # not there: an error
    assert_clean(sandbox(project, "modify-key", ISOLATE, "--systems", "B", "--to", NEL, expect=None))


@pytest.mark.parametrize("value", [ESC, CSI, RLO])
def test_usage_errors_quote_values_escaped(project, value):
    assert_clean(project.invoke("registry", "list", "--status", value, expect=2))
    assert_clean(project.invoke("audit", "--since", value, expect=2))
    assert_clean(sandbox(project, "add-key", "K", "--systems", value, expect=2))
    assert_clean(project.invoke(value, expect=2))  # no such command


def test_a_failed_runs_reason_with_brackets_prints_as_itself(project, write_systems, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # the reason on one line
    write_systems(B=A, C=A, D=A, E=A)
    sources = "".join(f"  {s}: {{type: csv, path: ./input/{s}.csv}}\n" for s in "BCDE")
    project.write_config(
        f'processing: {{retries: 0}}\nsources:\n  A: {{type: csv, path: "./input/[/x]/[bold]A.csv"}}\n{sources}'
    )
    project.invoke("run", expect=1)

    shown = project.invoke("history").stdout

    assert "input/[/x]/[bold]A.csv: file not found" in shown  # not read as rich markup (a closing tag crashed it)

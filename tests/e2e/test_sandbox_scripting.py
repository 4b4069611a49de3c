"""keysync sandbox shell and batch: the same commands, from a prompt or a file."""

from __future__ import annotations

from keysync.cli.sandbox_scripting import SandboxShell
from tests.e2e.test_sandbox_support import keys, sandbox, write


def test_batch_runs_every_line_skipping_comments(any_project):
    script = write(
        any_project.root / "setup.txt",
        "# a demo\n\ninit --keys 5\nadd-key 'A #1' X-2 --systems B   # a comment after the command\n"
        "keysync sandbox add-key Y --systems C\n",
    )
    result = sandbox(any_project, "batch", str(script))
    assert "Ran 3 command(s)" in result.stderr
    assert keys(any_project, "B")[5:] == ["A #1", "X-2"] and keys(any_project, "C")[5:] == ["Y"]


def test_batch_stops_at_the_first_failing_line_and_names_it(any_project):
    script = write(
        any_project.root / "s.txt", "init --keys 5\nremove-key NOPE --systems B --yes\nadd-key LATE --systems B\n"
    )
    result = sandbox(any_project, "batch", str(script), expect=1)
    assert "line 2 failed (exit 1): remove-key NOPE --systems B --yes" in result.stderr
    assert "LATE" not in keys(any_project, "B")
    result = sandbox(any_project, "batch", str(script), "--continue-on-error", expect=1)
    assert "LATE" in keys(any_project, "B")
    assert "1 line(s) of" in result.stderr and "failed: 2" in result.stderr


def test_batch_reports_usage_errors_and_bad_quoting_with_their_line(any_project):
    script = write(any_project.root / "s.txt", "init --keys 2\nadd-key X --systems Q\nadd-key 'open\nshell\n")
    result = sandbox(any_project, "batch", str(script), "--continue-on-error", expect=1)
    assert "line 2 failed (exit 2)" in result.stderr
    assert "line 3: cannot read it: No closing quotation" in result.stderr
    assert "shell cannot run here" in result.stderr and "line 4 failed (exit 2)" in result.stderr


def test_batch_from_standard_input(any_project):
    sandbox(any_project, "batch", "-", input="init --keys 3\nadd-key S --systems E\n")
    assert keys(any_project, "E")[-1] == "S"


def test_the_shell_runs_commands_until_exit(any_project):
    lines = "\n".join(
        [
            "init --keys 4",
            "help",
            "help add-key",
            "add-key Z --systems D",
            "nonsense",
            "status --json",
            "exit",
            "add-key NO --systems D",
        ]
    )
    result = sandbox(any_project, "shell", input=lines)
    assert keys(any_project, "D")[-1] == "Z" and "NO" not in keys(any_project, "D")
    assert "Commands:" in result.stdout and "add-key" in result.stdout  # help is click's own
    assert "Add keys to systems" in result.stdout
    assert "No such command 'nonsense'" in result.stderr  # an error does not end the shell
    assert '"hints"' in result.stdout


def test_the_shell_completes_command_names_and_options(any_project):
    shell = SandboxShell(any_project.config, at_terminal=False)
    assert shell.completenames("re") == ["redo", "remove-key", "reset"]
    assert "--systems" in shell.completedefault("--sy", "add-key X --sy", 10, 14)
    assert "shell" not in shell.completenames("sh")


def test_batch_lines_take_h_for_help_as_every_command_does(any_project):
    script = any_project.root / "help.ks"
    script.write_text("status -h\n", encoding="utf-8")
    result = sandbox(any_project, "batch", str(script))
    assert "Usage:" in result.stdout and "-h, --help" in result.stdout

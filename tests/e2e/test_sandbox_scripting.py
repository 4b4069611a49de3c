"""keysync sandbox shell and batch: the same commands, from a prompt or a file."""

from __future__ import annotations

from keysync.cli.sandbox_scripting import SandboxShell
from tests.e2e.test_sandbox_support import keys, sandbox, write


def test_batch_runs_every_line_skipping_comments(project):
    script = write(
        project.root / "setup.txt",
        "# a demo\n\ninit --keys 5\nadd-key 'A #1' X-2 --systems B   # a comment after the command\n"
        "keysync sandbox add-key Y --systems C\n",
    )
    result = sandbox(project, "batch", str(script))
    assert "Ran 3 command(s)" in result.stderr
    assert keys(project, "B")[5:] == ["A #1", "X-2"] and keys(project, "C")[5:] == ["Y"]


def test_batch_stops_at_the_first_failing_line_and_names_it(project):
    script = write(
        project.root / "s.txt", "init --keys 5\nremove-key NOPE --systems B --yes\nadd-key LATE --systems B\n"
    )
    result = sandbox(project, "batch", str(script), expect=1)
    assert "line 2 failed (exit 1): remove-key NOPE --systems B --yes" in result.stderr
    assert "LATE" not in keys(project, "B")
    result = sandbox(project, "batch", str(script), "--continue-on-error", expect=1)
    assert "LATE" in keys(project, "B")
    assert "1 line(s) of" in result.stderr and "failed: 2" in result.stderr


def test_batch_reports_usage_errors_and_bad_quoting_with_their_line(project):
    script = write(project.root / "s.txt", "init --keys 2\nadd-key X --systems Q\nadd-key 'open\nshell\n")
    result = sandbox(project, "batch", str(script), "--continue-on-error", expect=1)
    assert "line 2 failed (exit 2)" in result.stderr
    assert "line 3: cannot read it: No closing quotation" in result.stderr
    assert "shell cannot run here" in result.stderr and "line 4 failed (exit 2)" in result.stderr


def test_batch_from_standard_input(project):
    sandbox(project, "batch", "-", input="init --keys 3\nadd-key S --systems E\n")
    assert keys(project, "E")[-1] == "S"


def test_the_shell_runs_commands_until_exit(project):
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
    result = sandbox(project, "shell", input=lines)
    assert keys(project, "D")[-1] == "Z" and "NO" not in keys(project, "D")
    assert "Commands:" in result.stdout and "add-key" in result.stdout  # help is click's own
    assert "Add keys to systems" in result.stdout
    assert "No such command 'nonsense'" in result.stderr  # an error does not end the shell
    assert '"hints"' in result.stdout


def test_the_shell_completes_command_names_and_options(project):
    shell = SandboxShell(project.config, at_terminal=False)
    assert shell.completenames("re") == ["redo", "remove-key", "reset"]
    assert "--systems" in shell.completedefault("--sy", "add-key X --sy", 10, 14)
    assert "shell" not in shell.completenames("sh")

"""keysync sandbox shell | batch: the same sandbox commands, typed at a prompt or read from a file.

Both dispatch each line to the sandbox's own click group, so a line means exactly what it means after
``keysync sandbox`` on the command line (same options, same help, same checks, same exit codes).
"""

from __future__ import annotations

import cmd
import shlex
import sys
from pathlib import Path

import click

from keysync.cli.display import safe
from keysync.cli.options import config_option, message
from keysync.cli.sandbox_common import interactive

PROG = "keysync sandbox"


def split_line(line: str) -> list[str]:
    """A command line's words, shell-style: quotes group, '#' after a space starts a comment. ValueError if a
    quote is left open. A leading 'keysync sandbox' or 'sandbox' is dropped."""
    words = shlex.split(line, comments=True)
    for prefix in (["keysync", "sandbox"], ["sandbox"]):
        if words[: len(prefix)] == prefix:
            return words[len(prefix) :]
    return words


def dispatch(words: list[str], config_path: Path | None, *, refuse: tuple[str, ...] = ()) -> int:
    """Run one sandbox command (its words) in this process; return its exit code (0, 1, or 2 for usage)."""
    from keysync.cli.sandbox import sandbox_group  # the group imports this module

    if not words:
        return 0
    if words[0] in refuse:
        message(f"{words[0]} cannot run here")
        return 2
    wants_config = words[0] in sandbox_group.commands and not {"-h", "--help"} & set(words)  # groups take none
    if (
        wants_config
        and config_path is not None
        and not any(w in ("-c", "--config") or w.startswith("--config=") for w in words)
    ):
        # Before a "--", after which every word is an argument.
        at = words.index("--") if "--" in words else len(words)
        words = [*words[:at], "-c", str(config_path), *words[at:]]
    try:
        result = sandbox_group.main(words, prog_name=PROG, standalone_mode=False)
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.Abort:
        message("Aborted.")
        return 1
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 1
    return result if isinstance(result, int) else 0


class SandboxShell(cmd.Cmd):
    """A prompt for sandbox commands, with completion of command names and options (readline, at a terminal)."""

    intro = (
        "KeySync sandbox shell: type sandbox commands without 'keysync sandbox', e.g. add-key X-1 --systems B.\n"
        "help lists them, help COMMAND explains one, Tab completes, exit (or Ctrl-D) leaves."
    )
    prompt = "sandbox> "

    def __init__(self, config_path: Path | None, at_terminal: bool):
        super().__init__(stdin=sys.stdin, stdout=sys.stderr)  # prompts and help are messages: stderr
        self.config_path = config_path
        self.use_rawinput = at_terminal
        if not at_terminal:
            self.prompt = ""
            self.intro = ""
        self.last_exit = 0

    def _commands(self) -> list[str]:
        from keysync.cli.sandbox import sandbox_group

        return sorted(name for name in sandbox_group.commands if name != "shell")

    def default(self, line: str) -> bool:
        try:
            words = split_line(line)
        except ValueError as error:
            message(f"cannot read that line: {error}")
            self.last_exit = 2
            return False
        self.last_exit = dispatch(words, self.config_path, refuse=("shell",))
        return False

    def emptyline(self) -> bool:
        return False  # cmd.Cmd would repeat the last command

    def do_help(self, arg: str) -> None:
        self.default(f"{arg} --help" if arg.strip() else "--help")

    def do_exit(self, _arg: str) -> bool:
        return True

    do_quit = do_exit

    def do_EOF(self, _arg: str) -> bool:  # cmd.Cmd's name for the end of the input
        if self.use_rawinput:
            message("")
        return True

    def completenames(self, text: str, *_ignored: object) -> list[str]:
        return [name for name in [*self._commands(), "help", "exit"] if name.startswith(text)]

    def completedefault(self, text: str, line: str, _begin: int, _end: int) -> list[str]:
        from keysync.cli.sandbox import sandbox_group

        command = sandbox_group.commands.get(line.split()[0]) if line.split() else None
        if command is None:
            return []
        options = [opt for param in command.params for opt in param.opts if opt.startswith("-")]
        return [opt for opt in options if opt.startswith(text)]


@click.command("shell")
@config_option
def shell_command(config_path: Path | None) -> None:
    """An interactive prompt for the sandbox commands, with help and Tab completion (exit to leave).

    Example: keysync sandbox shell
    """
    shell = SandboxShell(config_path, interactive())
    try:
        shell.cmdloop()
    except KeyboardInterrupt:
        message("")


@click.command("batch")
@config_option
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--continue-on-error", is_flag=True, help="Run the remaining lines after a failing one.")
@click.pass_context
def batch_command(ctx: click.Context, config_path: Path | None, file: str, continue_on_error: bool) -> None:
    """Run sandbox commands from FILE ('-' = standard input), one a line, '#' starts a comment; stop at the first
    failing line and name it (exit 1), unless --continue-on-error.

    Example: keysync sandbox batch demo-setup.txt
    """
    try:
        data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as error:
        raise click.ClickException(f"cannot read {file}: {error.strerror or error}") from error
    failed, ran = [], 0
    for number, line in enumerate(data.decode("utf-8", "surrogateescape").splitlines(), 1):
        try:
            words = split_line(line)
        except ValueError as error:
            words, code = [], 2
            message(f"{file}: line {number}: cannot read it: {error}")
        else:
            if not words:
                continue
            ran += 1
            code = dispatch(words, config_path, refuse=("shell", "batch"))
        if code:
            failed.append(number)
            message(f"{file}: line {number} failed (exit {code}): {safe(line.strip())}")
            if not continue_on_error:
                ctx.exit(1)
    if failed:
        message(f"{len(failed)} line(s) of {file} failed: {', '.join(map(str, failed))}")
        ctx.exit(1)
    message(f"Ran {ran} command(s) from {file}.")

"""The command reference (docs/commands.md), rendered from the commands' own --help so it never drifts from them.

    python -m keysync.cli.reference --write     # rewrite docs/commands.md after changing a command
    python -m keysync.cli.reference --check     # exit 1 when docs/commands.md is stale

Like cog in sqlite-utils' docs: the file's hand-written introduction runs down to the MARKER line; everything after
it is generated. The help is rendered at a fixed width, so the text depends on the code alone, not on the terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click

from keysync.cli.main import cli

WIDTH = 100
DEFAULT_FILE = Path("docs/commands.md")
REGENERATE = "python -m keysync.cli.reference --write"
MARKER = (
    f"<!-- Everything below is generated from the commands' own --help by `{REGENERATE}`: "
    "change a command's docstring or options, then run it. -->"
)


class StaleReference(Exception):
    """The file's generated part is not what the commands' help gives now (or the file lacks the marker)."""


def _contexts(command: click.Command, parent: click.Context | None = None) -> Iterator[click.Context]:
    """A context per command and group, depth first, in the order --help lists them."""
    settings = {**command.context_settings, "terminal_width": WIDTH, "max_content_width": WIDTH, "color": False}
    ctx = click.Context(command, info_name=command.name if parent else "keysync", parent=parent, **settings)
    yield ctx
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from _contexts(sub, ctx)


def _depth(ctx: click.Context) -> int:
    return len(ctx.command_path.split()) - 1


def _anchor(ctx: click.Context) -> str:
    return ctx.command_path.replace(" ", "-")  # GitHub's anchor for a heading of plain words


def render(root: click.Command = cli) -> str:
    """The generated part: an index of every command, then each command's --help under a heading of its own."""
    contexts = list(_contexts(root))
    lines = ["", "## Index", ""]
    for ctx in contexts[1:]:
        indent = "  " * (_depth(ctx) - 1)
        summary = ctx.command.get_short_help_str(limit=WIDTH)
        lines.append(f"{indent}- [`{ctx.command_path}`](#{_anchor(ctx)}): {summary}")
    for ctx in contexts:
        level = "#" * min(2 + max(_depth(ctx) - 1, 0), 4)
        help_text = ctx.command.get_help(ctx).rstrip()
        lines += ["", f"{level} {ctx.command_path}", "", "```text", help_text, "```"]
    return "\n".join(lines) + "\n"


def regenerated(current: str, root: click.Command = cli) -> str:
    """The file with its hand-written introduction kept and everything after the marker rendered afresh."""
    introduction, found, _ = current.partition(MARKER)
    if not found:
        raise StaleReference(f"the line that ends the introduction is missing; it reads:\n{MARKER}")
    return introduction + MARKER + "\n" + render(root)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_FILE)
@click.option("--write", is_flag=True, help="Rewrite FILE's generated part.")
@click.option("--check", is_flag=True, help="Exit 1 when FILE's generated part is stale.")
def main(file: Path, write: bool, check: bool) -> None:
    """Render the command reference into FILE (default docs/commands.md); without --write or --check, print it."""
    try:
        current = file.read_text(encoding="utf-8")
        fresh = regenerated(current)
    except (OSError, StaleReference) as error:
        raise click.ClickException(f"{file}: {error}") from error
    if write:
        if fresh != current:
            file.write_text(fresh, encoding="utf-8")
            click.echo(f"Wrote {file}", err=True)
        else:
            click.echo(f"{file} is up to date", err=True)
    elif check:
        if fresh != current:
            click.echo(f"{file} is stale: run `{REGENERATE}`", err=True)
            sys.exit(1)
    else:
        click.echo(fresh, nl=False)


if __name__ == "__main__":
    main()

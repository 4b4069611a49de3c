"""keysync audit verify and keysync audit seal: is the event log still what it was when it was sealed?"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from keysync.application.bootstrap import build
from keysync.cli.display import safe
from keysync.cli.options import config_option, json_option, load, message, print_json, user_errors

if TYPE_CHECKING:
    from keysync.application.audit_chain import AuditTrail

DIGEST = re.compile(r"[0-9a-fA-F]{64}")
TAIL_NOTE = (
    "Events after the last seal cannot be verified until they are sealed, and a log cut short together with its "
    "last seals looks like a shorter log: record the last seal's digest elsewhere and check it later with --expect."
)


def _trail(config_path: Path | None) -> AuditTrail:
    from keysync.application.audit_chain import AuditTrail

    # `keysync audit -c FILE verify` works too: the group's -c is the fallback.
    parent = click.get_current_context().parent
    fallback = parent.params.get("config_path") if parent is not None else None
    return AuditTrail(build(load(config_path or fallback)))


def _expected(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not DIGEST.fullmatch(value.strip()):
        raise click.BadParameter("a seal's digest is 64 hexadecimal digits (see the last digest verify prints)")
    return value.strip().lower() if value is not None else None


@click.command("verify")
@config_option
@click.option("--expect", callback=_expected, metavar="DIGEST",
              help="A seal's digest recorded earlier: it must still be in the chain.")  # fmt: skip
@json_option
@user_errors
def verify_command(config_path: Path | None, expect: str | None, as_json: bool) -> None:
    """Recompute every seal of the audit chain from the event log and report the first broken link: an event
    changed, deleted, inserted or moved since it was sealed. Exits 1 when the log was tampered with.

    Example: keysync audit verify --expect 3f0c...e1 (a digest printed by an earlier verify)
    """
    from keysync.application.audit_chain import verdict

    report = _trail(config_path).verify(expect)
    if as_json:
        print_json(report.as_dict())
    else:
        # Lines, not a table: the digest must come out whole, to be copied.
        last, broken = report.last_seal, report.broken
        where = "none" if last is None else f"seal {last.number} at event {last.position}, covering {last.span}"
        lines = [
            f"events read: {report.events}",
            f"events verified: {report.verified}",
            f"seals verified: {report.seals}",
            f"last seal: {where}",
            f"last digest: {'' if last is None else last.digest}",
        ]
        if broken is None:
            lines.append(f"not sealed yet: {len(report.unsealed)} events{_span(report.unsealed)}")
        lines.append(f"broken link: {'none' if broken is None else f'{broken.kind}: {broken.describe()}'}")
        if report.expected is not None:
            lines.append(f"expected digest: {'in the chain' if report.expected_found else 'NOT in the chain'}")
        for line in lines:
            click.echo(safe(line))
    if report.ok:
        message(f"OK: {verdict(report)}.")
        if report.unsealed or report.expected is None:
            message(TAIL_NOTE)
        return
    message(f"The event log was {verdict(report)}." if report.broken else f"{verdict(report)}.")
    sys.exit(1)


@click.command("seal")
@config_option
@json_option
@user_errors
def seal_command(config_path: Path | None, as_json: bool) -> None:
    """Seal every event stored since the last seal into the audit chain (each keysync run seals too).

    Example: keysync audit seal && keysync audit verify
    """
    sealing = _trail(config_path).seal()
    if as_json:
        print_json(sealing.as_dict() if sealing is not None else {"seals": 0, "events": 0})
    elif sealing is None:
        message("Nothing to seal: every event but the last seal's own is sealed.")
    else:
        message(f"Sealed {sealing.events} events ({sealing.first_id}-{sealing.last_id}); the chain now has "
                f"{sealing.chain.seals} seals, the last with digest {sealing.chain.digest}.")  # fmt: skip


def _span(ids: tuple[int, ...]) -> str:
    return f" ({ids[0]}-{ids[-1]})" if ids else ""

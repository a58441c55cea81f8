"""``shipyard audit``: list, export the head of, and verify the audit log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shipyard.cli.context import Context
from shipyard.cli.options import JsonOption
from shipyard.cli.output import Output
from shipyard.core import audit
from shipyard.core.errors import AuditChainBroken

app = typer.Typer(help="The tamper-evident audit log: list, head, verify.", no_args_is_help=True)


@app.command("list")
def list_events(
    subject: Annotated[
        str | None,
        typer.Option(help="Only events about this subject; end with * for a prefix (release:*)."),
    ] = None,
    action: Annotated[str | None, typer.Option(help="Only events of this action.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest last.")] = 100,
    json_: JsonOption = False,
) -> None:
    """List audit events, oldest first."""
    out = Output(json_mode=json_)
    with Context().store.read() as conn:
        found = audit.events(conn, subject=subject, action=action, limit=limit, newest_first=True)
    found.reverse()
    if json_:
        out.json([event.as_json() for event in found])
        return
    if not found:
        out.line("no audit events" + (f" for {subject}" if subject else ""))
        return
    out.table(
        ["seq", "time", "actor", "action", "subject", "details"],
        [
            [e.seq, e.time[:19].replace("T", " "), e.actor, e.action, e.subject, _short(e.details)]
            for e in found
        ],
    )


@app.command("head")
def head(
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Also write the head as JSON to this file."),
    ] = None,
    json_: JsonOption = False,
) -> None:
    """Print the head of the chain (newest sequence number and hash) to keep elsewhere."""
    out = Output(json_mode=json_)
    with Context().store.read() as conn:
        current = audit.head(conn)
    value = current.as_json() if current else {"seq": 0, "hash": audit.GENESIS}
    if output is not None:
        output.write_text(audit.canonical_json(value) + "\n", encoding="utf-8")
    if json_:
        out.json(value)
        return
    out.line(f"seq  {value['seq']}")
    out.line(f"hash {value['hash']}")
    if output is not None:
        out.line(f"written to {output}")


@app.command("verify")
def verify(
    head_file: Annotated[
        Path | None,
        typer.Option("--head", help="An exported head; detects removal of the newest events."),
    ] = None,
    json_: JsonOption = False,
) -> None:
    """Check every event's hash and link; exit 1 naming the first bad event."""
    out = Output(json_mode=json_)
    expected = audit.ChainHead.load(head_file) if head_file is not None else None
    try:
        with Context().store.read() as conn:
            result = audit.verify(conn, expected)
    except AuditChainBroken as broken:
        if json_:
            out.json({"ok": False, "first_bad_seq": broken.seq, "problem": broken.message})
            raise typer.Exit(1) from None
        raise
    summary = {
        "ok": True,
        "events": result.events,
        "head": result.head.as_json() if result.head else None,
        "checked_against_head": expected.as_json() if expected else None,
    }
    if json_:
        out.json(summary)
        return
    against = f", consistent with the exported head at {expected.seq}" if expected else ""
    out.success(f"audit log verified: {result.events} events{against}")


def _short(details: str, width: int = 60) -> str:
    return details if len(details) <= width else details[: width - 1] + "…"

"""``shipyard demo``: the whole loop on this machine, offline, in a folder of its own.

It parses, calls ``orchestrator.demo`` and prints what that tells it: each step and command
with its output as it goes (on stderr with ``--json``, whose stdout is one summary document),
then where to look. Exit 0 when both releases ended as the demo shows, 1 otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shipyard.cli.app import EXIT_FAILED
from shipyard.cli.options import JsonOption
from shipyard.cli.output import Output
from shipyard.orchestrator.demo import DemoOutcome, DemoRequest, run_demo


def demo(
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            metavar="DIR",
            help="Run in this new or empty folder (default: a new temporary one).",
        ),
    ] = None,
    keep: Annotated[
        bool,
        typer.Option("--keep", help="Leave staging and production running afterwards."),
    ] = False,
    json_: JsonOption = False,
) -> None:
    """Show the whole loop in a few minutes, offline: a git repository around the example
    service, then a good release through a production canary and a bad one the canary rolls
    back by itself (incident, notification), under a steady load; DORA and the HTML report."""
    out = Output(json_mode=json_)

    def tell(line: str) -> None:
        if json_:
            out.stderr.write(f"{line}\n")
            out.stderr.flush()
        else:
            out.line(line)

    outcome = run_demo(DemoRequest(directory=directory, keep=keep), on_progress=tell)
    if json_:
        out.json(outcome.as_json())
    else:
        _report(out, outcome)
    if outcome.problems:
        raise typer.Exit(EXIT_FAILED)


def _report(out: Output, outcome: DemoOutcome) -> None:
    out.line("")
    for problem in outcome.problems:
        out.error(f"the demo did not go as it should: {problem}")
    good, bad = outcome.good, outcome.bad
    out.success(
        f"done in {outcome.seconds:.0f} s: {good.version} reached production through the "
        f"canary (deployment {good.deployment} {good.status}); {bad.version} was rolled "
        f"back by its analysis (deployment {bad.deployment} {bad.status}, incident "
        f"{outcome.incident}) and {len(outcome.notifications)} notification(s) were delivered"
    )
    out.line(f"  the report:   {outcome.report}")
    out.line(f"  the project:  {outcome.directory} (its state in {outcome.state_dir})")
    if outcome.kept:
        out.line(f"  still running: production at {outcome.production}, staging and the agent")
        out.line("  (the demo's webhook receiver ended with it: later notifications fail)")
        out.line(f"  stop it all:  cd {outcome.directory} && shipyard down")
    else:
        out.line("  nothing is left running ('shipyard down' stopped it)")
    out.line(
        f"  look around:  cd {outcome.directory} && shipyard releases list; "
        f"shipyard analysis show {bad.deployment}; shipyard audit list"
    )

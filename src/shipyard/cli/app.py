"""The ``shipyard`` command line: command groups, global options, errors turned into exit codes.

This is the one place where a ``ShipyardError`` becomes an exit code: 0 success, 1 the thing
checked failed, 2 a user's mistake, 3 waiting for a person. No traceback unless ``--debug``.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Annotated

import typer

from shipyard import __version__
from shipyard.cli.commands import audit, config, db, gc, hook, router, run, runs
from shipyard.cli.output import Output
from shipyard.core.errors import CheckFailed, ShipyardError, WaitingForPerson

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_WAITING = 3
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="shipyard",
    help="Shipyard: CI, gates, versioned signed releases, progressive delivery and "
    "monitoring, from commit to production.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"shipyard {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    debug: Annotated[
        bool, typer.Option("--debug", envvar="SHIPYARD_DEBUG", help="Show tracebacks for errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Shipyard: one tool from commit to production."""
    if debug:
        os.environ["SHIPYARD_DEBUG"] = "1"


app.command("init")(config.init)
app.command("validate")(config.validate)
app.command("run")(run.run)
app.command("logs")(runs.logs)
app.add_typer(runs.app, name="runs")
app.add_typer(hook.app, name="hook")
app.add_typer(router.app, name="router")
app.command("gc")(gc.gc)
app.add_typer(db.app, name="db")
app.add_typer(audit.app, name="audit")


def exit_code_for(error: ShipyardError) -> int:
    """The exit code DESIGN.md assigns to an error's kind."""
    if isinstance(error, WaitingForPerson):
        return EXIT_WAITING
    if isinstance(error, CheckFailed):
        return EXIT_FAILED
    return EXIT_USAGE


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``shipyard`` console script."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("SHIPYARD_DEBUG") == "1"
    out = Output(json_mode="--json" in args)
    try:
        app(args=args, prog_name="shipyard")  # standalone: exits through SystemExit
        code = EXIT_OK
    except ShipyardError as error:
        if debug:
            traceback.print_exc()
        code = exit_code_for(error)
        if out.json_mode:
            out.json(
                {
                    "error": {
                        "message": error.message,
                        "hint": error.hint,
                        "kind": type(error).__name__,
                    }
                }
            )
        out.error(error.message, error.hint)
    except KeyboardInterrupt:
        out.error("interrupted")
        code = EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - a bug: say so plainly, no bare traceback
        if debug:
            traceback.print_exc()
        out.error(
            f"internal error: {type(error).__name__}: {error}",
            "this is a bug in Shipyard; run again with --debug and report the traceback",
        )
        code = EXIT_FAILED
    sys.exit(code)

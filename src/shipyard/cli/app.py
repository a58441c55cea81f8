"""The ``shipyard`` command line: command groups, global options, errors turned into exit codes.

This is the one place where a ``ShipyardError`` becomes an exit code: 0 success, 1 the thing
checked failed, 2 a user's mistake, 3 waiting for a person. No traceback unless ``--debug``.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
import traceback
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from shipyard import __version__
from shipyard.cli.output import Output
from shipyard.core.errors import CheckFailed, ShipyardError, WaitingForPerson

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_WAITING = 3
EXIT_INTERRUPTED = 130

# Every command, in the order ``--help`` lists them: (module, attribute). A command's module is
# imported only when that command runs, so each command pays only for what it uses.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("shipyard.cli.commands.demo", "demo"),
    "init": ("shipyard.cli.commands.config", "init"),
    "validate": ("shipyard.cli.commands.config", "validate"),
    "run": ("shipyard.cli.commands.run", "run"),
    "logs": ("shipyard.cli.commands.runs", "logs"),
    "runs": ("shipyard.cli.commands.runs", "app"),
    "hook": ("shipyard.cli.commands.hook", "app"),
    "gc": ("shipyard.cli.commands.gc", "gc"),
    "version": ("shipyard.cli.commands.release", "version"),
    "changelog": ("shipyard.cli.commands.release", "changelog"),
    "release": ("shipyard.cli.commands.release", "release"),
    "releases": ("shipyard.cli.commands.release", "releases_app"),
    "verify": ("shipyard.cli.commands.release", "verify"),
    "keys": ("shipyard.cli.commands.keys", "app"),
    "scan": ("shipyard.cli.commands.scan", "scan"),
    "secrets": ("shipyard.cli.commands.secrets", "app"),
    "sbom": ("shipyard.cli.commands.sbom", "sbom"),
    "advisories": ("shipyard.cli.commands.advisories", "app"),
    "policy": ("shipyard.cli.commands.policy", "app"),
    "ship": ("shipyard.cli.commands.ship", "ship"),
    "deploy": ("shipyard.cli.commands.deploy", "deploy"),
    "promote": ("shipyard.cli.commands.promote", "promote"),
    "approve": ("shipyard.cli.commands.approve", "approve"),
    "rollback": ("shipyard.cli.commands.deploy", "rollback"),
    "status": ("shipyard.cli.commands.deploy", "status"),
    "deployments": ("shipyard.cli.commands.deploy", "deployments_app"),
    "service": ("shipyard.cli.commands.deploy", "service_app"),
    "env": ("shipyard.cli.commands.environments", "env_app"),
    "down": ("shipyard.cli.commands.environments", "down"),
    "router": ("shipyard.cli.commands.router", "app"),
    "analysis": ("shipyard.cli.commands.analysis", "app"),
    "incident": ("shipyard.cli.commands.incidents", "app"),
    "feedback": ("shipyard.cli.commands.feedback", "app"),
    "dora": ("shipyard.cli.commands.dora", "dora_command"),
    "report": ("shipyard.cli.commands.report", "report"),
    "notify": ("shipyard.cli.commands.notify", "app"),
    "agent": ("shipyard.cli.commands.agent", "app"),
    "audit": ("shipyard.cli.commands.audit", "app"),
    "db": ("shipyard.cli.commands.db", "app"),
}


class LazyCommands(TyperGroup):
    """The root group: commands are built from their modules on first use."""

    def list_commands(self, ctx: Any) -> list[str]:
        """Every command name, in the order of ``COMMANDS``."""
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        """Import the command's module and build it (None for an unknown name)."""
        if cmd_name not in COMMANDS:
            return None
        module, attribute = COMMANDS[cmd_name]
        target = getattr(importlib.import_module(module), attribute)
        if not isinstance(target, typer.Typer):
            single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
            single.command(cmd_name)(target)
            target = single
        command = typer.main.get_command(target)
        command.name = cmd_name
        _started()
        return command


app = typer.Typer(
    cls=LazyCommands,
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


def exit_code_for(error: ShipyardError) -> int:
    """The exit code DESIGN.md assigns to an error's kind."""
    if isinstance(error, WaitingForPerson):
        return EXIT_WAITING
    if isinstance(error, CheckFailed):
        return EXIT_FAILED
    return EXIT_USAGE


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``shipyard`` console script (``argv`` for a caller that is not it)."""
    global _starting
    if argv is None:
        # Start-up imports build a few hundred thousand objects that live as long as the
        # process (modules, classes, validators); the garbage collector would scan them again
        # and again while they are made, a tenth of a short command's time. It is back on, with
        # those objects set aside, before the command does its work (``_started``).
        _starting = True
        gc.disable()
    try:
        _main(sys.argv[1:] if argv is None else argv)
    finally:
        if argv is None:
            _before_exit()


_starting = False


def _started() -> None:
    """The command's modules are loaded: collect garbage again, never scanning what start-up
    built (``gc.freeze``). Only the process's own entry point turned it off."""
    global _starting
    if _starting:
        _starting = False
        gc.freeze()
        gc.enable()


def _before_exit() -> None:
    """Close the database connections while we know of them, then spare the interpreter its
    last garbage collection over every imported module (a tenth of a second of a short
    command): everything still alive goes with the process. Exit handlers still run."""
    store = sys.modules.get("shipyard.core.store.engine")  # loaded only if a store was used
    if store is not None:
        store.close_all()
    gc.freeze()


def _main(args: list[str]) -> None:
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

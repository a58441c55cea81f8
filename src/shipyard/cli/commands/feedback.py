"""``shipyard feedback``: what users said about the versions an environment serves.

It reads the recent feedback the environment's router keeps (a bounded ring, newest first,
gone when the router restarts) through its admin API. Complaint text is the users' data and
may hold anything: every character a terminal could act on is shown escaped.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from shipyard.cd.router.client import RecentFeedback, RouterClient
from shipyard.cd.router.errors import RouterStateError
from shipyard.cd.router.feedback import Feedback
from shipyard.cd.router.state import RouterFiles
from shipyard.cd.settings import DeploySettings, settings_for
from shipyard.cli.context import Context
from shipyard.cli.options import FileOption, JsonOption
from shipyard.cli.output import Output
from shipyard.core.config import ShipyardConfig, find_config, load_config

app = typer.Typer(help="Users' feedback posted through the routers: list it.", no_args_is_help=True)

_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


@app.callback()
def feedback() -> None:
    """Users' feedback: scores and complaints about the version each user was served."""


@app.command("list")
def list_feedback(
    env: Annotated[
        str | None, typer.Option("--env", "-e", metavar="ENV", help="Only this environment.")
    ] = None,
    file: FileOption = None,
    json_: JsonOption = False,
) -> None:
    """The recent feedback, newest first: of --env, or of every environment that takes it."""
    out = Output(json_mode=json_)
    ctx = Context()
    config = load_config((file or find_config(ctx.cwd, stop=ctx.state.repo_root)).resolve())
    found: list[tuple[str, Feedback]] = []
    for settings in _environments(config, env, out):
        recent = _recent(ctx, settings, out, asked=env is not None)
        if recent is None:
            continue
        found += [(settings.environment, item) for item in recent.feedback]
        if recent.received > len(recent.feedback):
            out.line(
                f"{settings.environment}: the last {len(recent.feedback)} of {recent.received} "
                "received since its router started"
            )
    found.sort(key=lambda pair: pair[1].at, reverse=True)
    if json_:
        out.json([_as_json(name, item) for name, item in found])
        return
    if not found:
        where = f" in {env}" if env else ""
        out.line(f"no feedback{where} yet")
        return
    out.table(
        ["env", "version", "time", "traffic", "score", "complaint"],
        [
            [
                name,
                item.version,
                _when(item.at),
                "pinned" if item.pinned else "weighted",
                "" if item.score is None else item.score,
                "" if item.complaint is None else printable(item.complaint),
            ]
            for name, item in found
        ],
    )


def printable(text: str) -> str:
    """``text`` with a backslash escape for each character that is not printable (controls,
    line breaks, direction overrides) and for the backslash itself, so it shows as it is."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(_escape(char) for char in text)


def _escape(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    if char.isprintable():
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _environments(config: ShipyardConfig, env: str | None, out: Output) -> list[DeploySettings]:
    """The environment asked for, or every environment whose feedback is on."""
    if env is not None:
        return [settings_for(config, env)]
    chosen = [settings_for(config, name) for name in config.environments]
    taking = [settings for settings in chosen if settings.feedback_path is not None]
    if not taking:
        out.warn(
            f"no environment of {config.project} takes feedback; turn it on with "
            "environments.<name>.feedback: {path: /.shipyard/feedback}"
        )
    return taking


def _recent(
    ctx: Context, settings: DeploySettings, out: Output, *, asked: bool
) -> RecentFeedback | None:
    """The feedback the environment's router keeps; None (with a warning) if it takes none or
    does not run, unless the environment was asked for by name and its router does not run."""
    name = settings.environment
    root = ctx.state.root
    if not RouterFiles.at(root, settings.router_key).address_path.exists():
        if asked:
            raise RouterStateError(
                f"the router of {name} is not running, so it keeps no feedback",
                hint=f"deploy a release to {name} (shipyard deploy VERSION --env {name})",
            )
        out.warn(f"the router of {name} is not running")
        return None
    recent = RouterClient.for_environment(root, settings.router_key).feedback()
    if recent.path is None:
        if settings.feedback_path is None:
            out.warn(
                f"{name} takes no feedback; turn it on with "
                f"environments.{name}.feedback: {{path: /.shipyard/feedback}}"
            )
        else:
            out.warn(
                f"the router of {name} was started before its feedback was turned on; "
                f"it takes none until it restarts"
            )
        return None
    return recent


def _as_json(env: str, item: Feedback) -> dict[str, Any]:
    return {"env": env, **item.as_json(), "at": datetime.fromtimestamp(item.at, UTC).isoformat()}


def _when(at: float) -> str:
    return datetime.fromtimestamp(at).astimezone().strftime("%Y-%m-%d %H:%M:%S")

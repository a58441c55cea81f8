"""``shipyard agent``: deliver the project's notifications, in the foreground or supervised.

``shipyard agent`` runs the consumer loop until SIGTERM or Ctrl-C (``--once``: what is due now);
``start``, ``stop`` and ``status`` run it as a program of the state directory's supervisor, as
the router is run, with the notifications' secrets in its owner-only environment file.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from shipyard.cli.context import Context
from shipyard.cli.options import FileOption, JsonOption
from shipyard.cli.output import Output
from shipyard.core.config import ShipyardConfig, find_config, load_config, parse_duration
from shipyard.core.errors import ArgumentError, ShipyardError, UserError
from shipyard.core.secrets import SecretStore, masker_for, secrets_file
from shipyard.monitor.agent import (
    DEFAULT_RETRY_DELAY,
    Agent,
    Attempt,
    agent_lock,
    agent_pid,
    subscriptions,
)

if TYPE_CHECKING:
    from shipyard.cd.supervisor import ProgramSpec

app = typer.Typer(
    help="The agent that delivers notifications: run it (--once: what is due now), or start, "
    "stop and show it under the state directory's supervisor.",
    invoke_without_command=True,
    add_completion=False,
)

_PASSED_ON = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "SHIPYARD_HOME")
_SECRET_SETTINGS = ("SHIPYARD_DATABASE_URL",)
_NOT_A_NAME = re.compile(r"[^a-z0-9_.-]+")


def _retry_delay(value: str | None) -> timedelta | None:
    if value is None:
        return None
    try:
        delay = parse_duration(value)
    except ValueError as error:  # pydantic's custom error is a ValueError
        raise typer.BadParameter(f"{value!r} is not a duration; write 5s or 1m") from error
    if delay <= timedelta(0):
        raise typer.BadParameter("the retry delay must be longer than 0s")
    return delay


@app.callback()
def run(
    ctx: typer.Context,
    once: Annotated[
        bool, typer.Option("--once", help="Deliver what is due now, then exit (1 if one failed).")
    ] = False,
    retry_delay: Annotated[
        timedelta | None,
        typer.Option(
            parser=_retry_delay,
            metavar="DURATION",
            help="The wait after a first failed delivery; it doubles with each failure.",
        ),
    ] = None,
    file: FileOption = None,
    json_: JsonOption = False,
) -> None:
    """Deliver the project's notifications until SIGTERM or Ctrl-C."""
    if ctx.invoked_subcommand is not None:
        return
    out = Output(json_mode=json_)
    context = Context()
    config, _ = _config(file, context)
    if not config.notifications:
        out.line(f"{config.project} has no notifications: there is nothing to deliver")
        return
    state = context.state.ensure()
    environ = dict(os.environ)
    store = SecretStore(environ=environ, secrets_file=secrets_file(state))
    subscribed = subscriptions(config.project, config.notifications, store.get)
    names = [n.secret for n in config.notifications if n.secret is not None]
    masker = masker_for(names, environ=environ, secrets_file=secrets_file(state))
    stream = not once
    agent = Agent(
        context.store,
        config.project,
        subscribed,
        retry_delay=retry_delay or DEFAULT_RETRY_DELAY,
        masker=masker,
        on_attempt=(lambda attempt: _show(out, attempt, json_lines=json_)) if stream else None,
    )
    stop = threading.Event()
    with agent_lock(state.root, config.project), _stopped_by_signals(stop):
        if once:
            attempts = agent.drain(stop=stop)
            _report(out, attempts, json_=json_)
            if any(attempt.outcome == "failed" for attempt in attempts):
                raise typer.Exit(1)
            return
        if not json_:
            out.line(
                f"agent of {config.project}: delivering to {len(subscribed)} "
                f"notification{'s' if len(subscribed) != 1 else ''} (pid {os.getpid()})"
            )
        agent.run(stop)
    if not json_:
        out.line(f"agent of {config.project} stopped")


@app.command("start")
def start(file: FileOption = None, json_: JsonOption = False) -> None:
    """Run the agent under the state directory's supervisor (again, if it runs: a restart)."""
    from shipyard.cd.supervisor import Supervisor

    out = Output(json_mode=json_)
    context = Context()
    config, path = _config(file, context)
    if not config.notifications:
        raise UserError(
            f"{config.project} has no notifications: an agent would have nothing to deliver",
            hint="add notifications: [{url: https://…, on: [deployment.rolled_back]}] to "
            f"{path.name}",
        )
    state = context.state.ensure()
    store = SecretStore(environ=dict(os.environ), secrets_file=secrets_file(state))
    subscriptions(config.project, config.notifications, store.get)  # a missing secret: exit 2
    supervisor = Supervisor.for_state(state)
    status = supervisor.add(_program(config, path, store))
    if json_:
        log = supervisor.log_path(status.name)
        out.json(_status_json(config.project, str(status.state), status.pid, log, path))
        return
    out.success(f"agent of {config.project} running (pid {status.pid})")
    out.line(f"its log: {supervisor.log_path(status.name)}")


@app.command("stop")
def stop(file: FileOption = None, json_: JsonOption = False) -> None:
    """Stop the supervised agent (it finishes the delivery in progress first)."""
    from shipyard.cd.supervisor import Supervisor

    out = Output(json_mode=json_)
    context = Context()
    config, _ = _config(file, context)
    supervisor = Supervisor.for_state(context.state.ensure())
    name = program_name(config.project)
    known = supervisor.is_running() and any(p.name == name for p in supervisor.list())
    if known:
        supervisor.remove(name)
    if json_:
        out.json({"project": config.project, "stopped": known})
        return
    out.line(
        f"agent of {config.project} stopped"
        if known
        else f"no supervised agent runs for {config.project}"
    )


@app.command("status")
def status(file: FileOption = None, json_: JsonOption = False) -> None:
    """Whether an agent serves the project: the supervised one, or one run by hand."""
    from shipyard.cd.supervisor import ProgramNotFound, Supervisor

    out = Output(json_mode=json_)
    context = Context()
    config, path = _config(file, context)
    state = context.state.ensure()
    supervisor = Supervisor.for_state(state)
    name = program_name(config.project)
    program = None
    if supervisor.is_running():
        try:
            program = supervisor.status(name)
        except ProgramNotFound:
            program = None
    pid = agent_pid(state.root, config.project)
    if json_:
        document = _status_json(
            config.project,
            None if program is None else str(program.state),
            None if program is None else program.pid,
            supervisor.log_path(name),
            path,
        )
        document["serving_pid"] = pid
        out.json(document)
        return
    if program is not None:
        out.line(f"supervised agent of {config.project}: {program.state}, pid {program.pid}")
        out.line(f"its log: {supervisor.log_path(name)}")
    else:
        out.line(f"no supervised agent runs for {config.project}")
    if pid is not None and (program is None or program.pid != pid):
        out.line(f"an agent run by hand serves {config.project}: pid {pid or 'unknown'}")
    if program is None and pid is None:
        out.line("start one with: shipyard agent start")


def ensure_agent(context: Context, config: ShipyardConfig, path: Path) -> str | None:
    """Start the supervised agent if the project has notifications and it is not running.

    What a deployment does before it changes anything, so that its events are delivered
    without anybody starting the agent by hand. Returns a warning when it cannot (a secret a
    notification names is missing, the supervisor cannot start): the deployment goes on.
    """
    if not config.notifications:
        return None
    from shipyard.cd.supervisor import Supervisor

    try:
        state = context.state.ensure()
        supervisor = Supervisor.for_state(state)
        name = program_name(config.project)
        if supervisor.is_running() and any(
            status.name == name and status.running for status in supervisor.list()
        ):
            return None
        store = SecretStore(environ=dict(os.environ), secrets_file=secrets_file(state))
        subscriptions(config.project, config.notifications, store.get)
        supervisor.ensure_running()
        supervisor.add(_program(config, path, store))
    except ShipyardError as error:
        return f"the agent that delivers notifications did not start: {error.message}"
    return None


def program_name(project: str) -> str:
    """The supervisor's name for the agent of ``project``."""
    return f"agent.{_NOT_A_NAME.sub('-', project.lower())}"[:64]


def _program(config: ShipyardConfig, path: Path, store: SecretStore) -> ProgramSpec:
    from shipyard.cd.supervisor import ProgramSpec

    names = sorted({n.secret for n in config.notifications if n.secret is not None})
    secret_env = {name: store.get(name).reveal() for name in names}
    secret_env |= {key: os.environ[key] for key in _SECRET_SETTINGS if os.environ.get(key)}
    longest = max(n.timeout for n in config.notifications)
    return ProgramSpec(
        name=program_name(config.project),
        argv=(sys.executable, "-m", "shipyard", "agent", "--file", str(path)),
        cwd=path.parent,
        env={key: os.environ[key] for key in _PASSED_ON if os.environ.get(key)},
        secret_env=secret_env,
        stop_signal=signal.SIGTERM,
        # Time for the delivery in progress to end before supervisord sends SIGKILL.
        stop_grace_s=int(longest.total_seconds()) + 10,
        autorestart=True,
        start_secs=1,
    )


def _status_json(
    project: str, state: str | None, pid: int | None, log: Path, path: Path
) -> dict[str, object]:
    return {
        "project": project,
        "program": program_name(project),
        "state": state,
        "pid": pid,
        "config": str(path),
        "log": str(log),
    }


def _config(file: Path | None, context: Context) -> tuple[ShipyardConfig, Path]:
    path = (file or find_config(context.cwd, stop=context.state.repo_root)).resolve()
    if not path.is_file():
        raise ArgumentError(f"{path} is not a file", hint="name shipyard.yaml with --file")
    return load_config(path), path


@contextmanager
def _stopped_by_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop``: the agent ends after the delivery in progress."""

    def handler(number: int, _frame: FrameType | None) -> None:
        stop.set()

    saved = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    for number in saved:
        signal.signal(number, handler)
    try:
        yield
    finally:
        for number, previous in saved.items():
            signal.signal(number, previous)


def _show(out: Output, attempt: Attempt, *, json_lines: bool) -> None:
    if json_lines:
        sys.stdout.write(json.dumps(attempt.as_json(), sort_keys=True) + "\n")
        sys.stdout.flush()
        return
    what = f"{attempt.event_type} (event {attempt.event_id}) to {attempt.target}"
    if attempt.outcome == "delivered":
        out.line(f"delivered {what}: {attempt.detail} [delivery {attempt.delivery}]")
    elif attempt.outcome == "skipped":
        out.line(f"skipped {what}: {attempt.detail}")
    else:
        due = attempt.next_attempt_at
        when = "" if due is None else f"; next attempt at {due:%Y-%m-%d %H:%M:%S} UTC"
        out.warn(f"failed {what}: {attempt.detail}{when}")


def _report(out: Output, attempts: list[Attempt], *, json_: bool) -> None:
    counts = {
        outcome: sum(1 for a in attempts if a.outcome == outcome)
        for outcome in ("delivered", "failed", "skipped")
    }
    if json_:
        out.json({**counts, "attempts": [a.as_json() for a in attempts]})
        return
    for attempt in attempts:
        _show(out, attempt, json_lines=False)
    out.line(
        f"{counts['delivered']} delivered, {counts['failed']} failed, {counts['skipped']} skipped"
    )

"""``shipyard incident``: list, show, open and resolve the incidents of a project's environments."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from shipyard.cd import deployments
from shipyard.cd.settings import settings_for
from shipyard.cli.context import Context
from shipyard.cli.live import format_seconds
from shipyard.cli.options import FileOption, JsonOption
from shipyard.cli.output import Output
from shipyard.core import incidents
from shipyard.core.config import ShipyardConfig, find_config, load_config
from shipyard.core.errors import ArgumentError
from shipyard.core.incidents import Incident, IncidentSource, IncidentStatus

app = typer.Typer(help="Incidents: list, show, open, resolve.", no_args_is_help=True)

IncidentArgument = Annotated[int, typer.Argument(metavar="ID", help="The incident's number.")]
STATUS_CHOICES = ("open", "restored", "resolved", "all")


@app.callback()
def incident() -> None:
    """Incidents: what failed in an environment, and when service came back."""


@app.command("list")
def list_incidents(
    env: Annotated[
        str | None, typer.Option("--env", "-e", metavar="ENV", help="Only this environment.")
    ] = None,
    status: Annotated[
        str, typer.Option(metavar="|".join(STATUS_CHOICES), help="Only incidents in this status.")
    ] = "all",
    file: FileOption = None,
    json_: JsonOption = False,
) -> None:
    """The project's incidents, newest first."""
    out = Output(json_mode=json_)
    if status not in STATUS_CHOICES:
        raise ArgumentError(
            f"{status!r} is not an incident status", hint=f"use one of {', '.join(STATUS_CHOICES)}"
        )
    ctx = Context()
    config = _config(file, ctx)
    with ctx.store.read() as conn:
        found = incidents.list_incidents(
            conn,
            project=config.project,
            environment=env,
            status=None if status == "all" else status,
        )
    if json_:
        out.json([i.as_json() for i in found])
        return
    if not found:
        where = f" in {env}" if env else ""
        which = "" if status == "all" else f" {status}"
        out.line(f"{config.project} has no{which} incidents{where}")
        return
    out.table(
        ["id", "env", "status", "title", "caused by", "opened", "restored after", "source"],
        [
            [
                i.id,
                i.environment,
                i.status,
                i.title,
                i.caused_by_version or "",
                _when(i.opened_at),
                _restore_time(i),
                i.source,
            ]
            for i in found
        ],
    )


@app.command("show")
def show(incident_id: IncidentArgument, json_: JsonOption = False) -> None:
    """One incident: what happened, what caused it, when service came back, how it was resolved."""
    out = Output(json_mode=json_)
    store = Context().store
    with store.read() as conn:
        found = incidents.get(conn, incident_id)
    if json_:
        out.json(found.as_json())
        return
    _print(out, found)


@app.command("open")
def open_incident(
    env: Annotated[
        str, typer.Option("--env", "-e", metavar="ENV", help="The environment that is affected.")
    ],
    title: Annotated[str, typer.Option(help="What is wrong, in a few words.")],
    version: Annotated[
        str | None,
        typer.Option(help="The release that caused it (default: what the environment runs now)."),
    ] = None,
    reason: Annotated[str | None, typer.Option(help="What happened (default: the title).")] = None,
    file: FileOption = None,
    json_: JsonOption = False,
) -> None:
    """Open an incident by hand."""
    out = Output(json_mode=json_)
    ctx = Context()
    config = _config(file, ctx)
    settings_for(config, env)  # an environment shipyard.yaml does not name: exit 2
    running = deployments.environment(ctx.store, config.project, env)
    caused_by = version if version is not None else running.active_version
    # The deployment is known only when the incident is about what runs now.
    deployment_id = running.active_deployment if caused_by == running.active_version else None
    with ctx.store.write() as conn:
        opened = incidents.open(
            conn,
            project=config.project,
            environment=env,
            title=title,
            reason=title if reason is None else reason,
            source=IncidentSource.MANUAL,
            actor=ctx.actor,
            caused_by_version=caused_by or None,
            deployment_id=deployment_id,
        )
    if json_:
        out.json(opened.as_json())
        return
    cause = f", caused by {opened.caused_by_version}" if opened.caused_by_version else ""
    out.success(f"opened incident {opened.id} in {env}{cause}: {opened.title}")
    out.line(
        f"resolve it with: shipyard incident resolve {opened.id} --reason 'what was done' "
        "[--restored-by VERSION]"
    )


@app.command("resolve")
def resolve(
    incident_id: IncidentArgument,
    reason: Annotated[str | None, typer.Option(help="What was done about it (required).")] = None,
    restored_by: Annotated[
        str | None,
        typer.Option(
            "--restored-by", metavar="VERSION", help="The release that restored the service."
        ),
    ] = None,
    json_: JsonOption = False,
) -> None:
    """Close an incident, saying what was done (and which release restored the service)."""
    out = Output(json_mode=json_)
    ctx = Context()
    now = datetime.now(UTC)
    with ctx.store.write() as conn:
        current = incidents.get(conn, incident_id)
        if (
            restored_by is not None
            and current.status is not IncidentStatus.RESOLVED  # resolve says when, and by whom
            and current.restored_by_version != restored_by
        ):
            incidents.restored(conn, incident_id, version=restored_by, actor=ctx.actor, at=now)
        # Without a reason, resolve refuses and says how to give one; nothing is changed.
        resolved = incidents.resolve(
            conn, incident_id, actor=ctx.actor, resolution=reason or "", at=now
        )
    if json_:
        out.json(resolved.as_json())
        return
    out.success(
        f"resolved incident {resolved.id} in {resolved.environment}; "
        f"service restored after {_restore_time(resolved)}"
    )


def _config(file: Path | None, ctx: Context) -> ShipyardConfig:
    # Not the deploy command's helper: importing that module would cost every call here the
    # start-up of the controller and the targets.
    return load_config((file or find_config(ctx.cwd, stop=ctx.state.repo_root)).resolve())


def _print(out: Output, found: Incident) -> None:
    out.line(f"incident {found.id}: {found.title} ({found.status})")
    rows: list[list[object]] = [
        ["project", found.project],
        ["environment", found.environment],
        ["source", found.source],
        ["caused by", found.caused_by_version or "unknown"],
        ["deployment", found.deployment_id or ""],
        ["opened", f"{_when(found.opened_at)} by {found.opened_by}"],
        ["reason", found.reason],
        ["restored", _restored(found)],
        ["resolved", _resolved(found)],
        ["resolution", found.resolution or ""],
    ]
    out.table(["", ""], rows)


def _restored(found: Incident) -> str:
    if found.restored_at is None:
        return "not yet"
    by = f" by {found.restored_by_version}" if found.restored_by_version else ""
    return f"{_when(found.restored_at)}{by}, after {_restore_time(found)}"


def _resolved(found: Incident) -> str:
    if found.resolved_at is None:
        return "not yet"
    return f"{_when(found.resolved_at)} by {found.resolved_by}"


def _restore_time(found: Incident) -> str:
    restore = found.time_to_restore
    return "" if restore is None else format_seconds(restore.total_seconds())


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")

"""``shipyard env stop ENV`` and ``shipyard down``: stop what this state directory runs.

Stopping is recorded first (the environment runs nothing; an audit event), then the processes
go. ``down`` also stops every router and the supervisor itself.
"""

from __future__ import annotations

from typing import Annotated

import typer

from shipyard.cd import deployments
from shipyard.cd.delivery import stop_environments
from shipyard.cd.settings import settings_for
from shipyard.cd.supervisor import Supervisor
from shipyard.cd.targets.local import LocalTarget, name_part
from shipyard.cli.commands.deploy import _config
from shipyard.cli.context import Context
from shipyard.cli.options import FileOption, JsonOption
from shipyard.cli.output import Output
from shipyard.core import audit

env_app = typer.Typer(help="Environments: stop one.", no_args_is_help=True)


@env_app.callback()
def env() -> None:
    """The environments of shipyard.yaml."""


@env_app.command("stop")
def stop(
    name: Annotated[str, typer.Argument(metavar="ENV", help="The environment (shipyard.yaml).")],
    file: FileOption = None,
    json_: JsonOption = False,
) -> None:
    """Stop an environment's instances and router; it runs nothing afterwards (audited)."""
    out = Output(json_mode=json_)
    ctx = Context()
    config, project_dir = _config(file, ctx)
    settings = settings_for(config, name, project_dir=project_dir)
    target = LocalTarget(ctx.state)
    stopped = stop_environments(
        ctx.store, target, actor=ctx.actor, project=config.project, environment=name
    )
    supervisor = target.supervisor
    router = name_part(f"router.{settings.router_key}")
    if supervisor.home.is_dir():
        supervisor.remove(router)
    versions = [v for s in stopped for v in (s.active_version, s.warm_version) if v]
    if json_:
        out.json(
            {
                "environment": name,
                "stopped_versions": versions,
                "router": router,
                "state": deployments.environment(ctx.store, config.project, name).as_json(),
            }
        )
        return
    what = ", ".join(versions) if versions else "no version"
    out.success(f"{name} stopped ({what} and its router)")


def down(json_: JsonOption = False) -> None:
    """Stop everything of this state directory: all environments, routers and the supervisor."""
    out = Output(json_mode=json_)
    ctx = Context()
    supervisor = Supervisor.for_state(ctx.state)
    stopped = stop_environments(ctx.store, LocalTarget(ctx.state), actor=ctx.actor)
    programs = [p.name for p in supervisor.list()] if supervisor.is_running() else []
    supervisor.shutdown()
    with ctx.store.write() as conn:
        audit.append(
            conn,
            actor=ctx.actor,
            action="state.down",
            subject=f"state:{ctx.state.root}",
            details={
                "environments": [f"{s.project}/{s.environment}" for s in stopped],
                "programs": programs,
            },
        )
    if json_:
        out.json(
            {
                "environments": [s.as_json() | {"project": s.project} for s in stopped],
                "programs_stopped": programs,
                "supervisor": "stopped",
            }
        )
        return
    out.success(
        f"stopped {len(stopped)} environment(s), {len(programs)} program(s) and the supervisor"
    )

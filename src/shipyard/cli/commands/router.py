"""``shipyard router``: run an environment's traffic router, and inspect or steer a running one.

An environment is named as in ``shipyard.yaml``; its router's files are those of
``<project>-<env>``, the name deployments start it under. Running replaces this process with
``python -m shipyard.cd.router`` so that the router never carries the CLI's imports (no ORM).
The other commands talk to the admin API through ``RouterClient``; changes are audited.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from shipyard.cd.router.client import RouterClient, RouteStatus
from shipyard.cd.router.errors import RouterStateError
from shipyard.cd.router.state import RouterFiles
from shipyard.cd.router.stats import STATUS_CLASSES, VersionStats
from shipyard.cd.settings import DeploySettings, settings_for
from shipyard.cli.context import Context
from shipyard.cli.options import FileOption, JsonOption
from shipyard.cli.output import Output
from shipyard.core import audit
from shipyard.core.config import find_config, load_config
from shipyard.core.errors import ArgumentError

app = typer.Typer(
    help="The traffic router of an environment: run it (--env, --port), or inspect and steer "
    "a running one.",
    invoke_without_command=True,
)

EnvOption = Annotated[str, typer.Option("--env", "-e", help="The environment's router.")]


@app.callback()
def run(
    ctx: typer.Context,
    env: Annotated[
        str | None, typer.Option("--env", "-e", help="The environment to route.")
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="The public port (the service's).")
    ] = None,
    host: Annotated[str, typer.Option(help="The public address.")] = "127.0.0.1",
    admin_port: Annotated[
        int, typer.Option(min=0, max=65535, help="The admin port on loopback (0: any free one).")
    ] = 0,
    drain_timeout: Annotated[
        float, typer.Option(min=0, help="Seconds to let requests finish on stop.")
    ] = 10.0,
    upstream_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds an upstream may stay silent (then 504).")
    ] = 60.0,
    file: FileOption = None,
) -> None:
    """Run the router of --env on --port in the foreground, until SIGTERM or Ctrl-C."""
    if ctx.invoked_subcommand is not None:
        return
    if env is None:
        raise ArgumentError(
            "running a router needs --env",
            hint="shipyard router --env staging --port 8080   (or: shipyard router --help)",
        )
    environment = _Environment.of(env, file)
    port = port if port is not None else environment.settings.router_port
    if port is None:
        raise ArgumentError(
            f"running the router of {env} needs --port (shipyard.yaml sets none)",
            hint=f"shipyard router --env {env} --port 8080, or set environments.{env}.router.port",
        )
    root = environment.context.state.ensure().root
    key = environment.settings.router_key
    RouterFiles.at(root, key)  # a bad name fails here, with the CLI's error output
    argv = [
        sys.executable,
        "-m",
        "shipyard.cd.router",
        "--env",
        key,
        "--port",
        str(port),
        "--host",
        host,
        "--admin-port",
        str(admin_port),
        "--state-dir",
        str(root),
        "--drain-timeout",
        str(drain_timeout),
        "--upstream-timeout",
        str(upstream_timeout),
    ]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)  # noqa: S606 - our own interpreter and module, no shell


@dataclass(frozen=True)
class _Environment:
    """An environment of shipyard.yaml, and where its router's files are."""

    context: Context
    settings: DeploySettings

    @classmethod
    def of(cls, env: str, file: Path | None) -> _Environment:
        """The environment ``env`` of the project's configuration; exit 2 if it has none."""
        context = Context()
        path = (file or find_config(context.cwd, stop=context.state.repo_root)).resolve()
        return cls(context, settings_for(load_config(path), env))

    def client(self) -> RouterClient:
        """The admin client of the environment's router (a clear error when none runs)."""
        root, env = self.context.state.root, self.settings.environment
        if not RouterFiles.at(root, self.settings.router_key).address_path.exists():
            raise RouterStateError(
                f"the router of {env} is not running",
                hint=f"deploy a release (shipyard deploy VERSION --env {env}), or start it "
                f"on its own: shipyard router --env {env} --port PORT",
            )
        return RouterClient.for_environment(root, self.settings.router_key)

    def record(self, action: str, details: Mapping[str, Any]) -> None:
        """An audit event of a change made to the router by hand."""
        with self.context.store.write() as conn:
            audit.append(
                conn,
                actor=self.context.actor,
                action=action,
                subject=f"environment:{self.settings.project}/{self.settings.environment}",
                details={"environment": self.settings.environment, **details},
            )


def _client(env: str, file: Path | None) -> RouterClient:
    return _Environment.of(env, file).client()


@app.command("status")
def status(env: EnvOption, file: FileOption = None, json_: JsonOption = False) -> None:
    """Show whether the router answers, its routes and each instance's state."""
    out = Output(json_mode=json_)
    client = _client(env, file)
    health = client.health()
    routes = client.routes()
    if json_:
        out.json(
            {
                "status": health.status,
                "pid": health.pid,
                "public": f"{health.public_host}:{health.public_port}",
                "admin": f"{client.host}:{client.port}",
                "uptime_seconds": health.uptime_seconds,
                "revision": routes.revision,
                "routes": routes.table.as_json(),
                "instances": [i.__dict__ for i in routes.instances],
            }
        )
        return
    out.line(
        f"router of {env}: {health.status}, pid {health.pid}, serving "
        f"{health.public_host}:{health.public_port}, admin {client.host}:{client.port}"
    )
    _print_routes(out, routes)


@app.command("weights")
def weights(
    env: EnvOption,
    assignments: Annotated[
        list[str], typer.Argument(help="VERSION=WEIGHT for each version to change.")
    ],
    expect_revision: Annotated[
        int | None, typer.Option(help="Only if the routes are still at this revision.")
    ] = None,
    file: FileOption = None,
    json_: JsonOption = False,
) -> None:
    """Change the weights (all must still add up to 100); an audited change."""
    out = Output(json_mode=json_)
    parsed: dict[str, int] = {}
    for item in assignments:
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise ArgumentError(f"{item!r} is not VERSION=WEIGHT", hint="e.g. blue=90 green=10")
        parsed[name.strip()] = int(value)
    environment = _Environment.of(env, file)
    client = environment.client()
    before = client.routes()
    # Changed only if nobody changed the routes since they were read, so the audit event
    # names the weights that were really replaced.
    revision = before.revision if expect_revision is None else expect_revision
    routes = client.set_weights(parsed, expect_revision=revision)
    environment.record(
        "router.weights_changed",
        {
            "old": dict(before.table.weights),
            "new": dict(routes.table.weights),
            "revision": routes.revision,
        },
    )
    if json_:
        out.json({"revision": routes.revision, "routes": routes.table.as_json()})
        return
    out.success(f"routes of {env} at revision {routes.revision}")
    _print_routes(out, routes)


@app.command("drain")
def drain(
    env: EnvOption,
    address: Annotated[str, typer.Argument(help="The instance, HOST:PORT.")],
    file: FileOption = None,
    json_: JsonOption = False,
) -> None:
    """Give an instance no new requests; those in flight finish (audited)."""
    _set_drained(env, address, file, json_, drained=True)


@app.command("undrain")
def undrain(
    env: EnvOption,
    address: Annotated[str, typer.Argument(help="The instance, HOST:PORT.")],
    file: FileOption = None,
    json_: JsonOption = False,
) -> None:
    """Put a drained instance back in service (audited)."""
    _set_drained(env, address, file, json_, drained=False)


def _set_drained(env: str, address: str, file: Path | None, json_: bool, *, drained: bool) -> None:
    out = Output(json_mode=json_)
    environment = _Environment.of(env, file)
    client = environment.client()
    routes = client.drain(address) if drained else client.undrain(address)
    environment.record(
        "router.drained" if drained else "router.undrained",
        {"instance": address, "revision": routes.revision},
    )
    if json_:
        out.json({"revision": routes.revision, "instances": [i.__dict__ for i in routes.instances]})
        return
    out.success(f"{address} {'drained' if drained else 'back in service'}")
    _print_routes(out, routes)


@app.command("stats")
def stats(
    env: EnvOption,
    reset: Annotated[
        bool, typer.Option("--reset", help="Also start a new window (prints the closed one).")
    ] = False,
    file: FileOption = None,
    json_: JsonOption = False,
) -> None:
    """Per-version requests, responses, upstream errors and latencies in the current window
    (weighted traffic; requests pinned with X-Shipyard-Version are counted apart, as pinned)."""
    out = Output(json_mode=json_)
    client = _client(env, file)
    result = client.reset_stats() if reset else client.stats()
    if json_:
        out.json(result.as_json())
        return
    if not result.versions:
        out.line(f"no requests recorded by the router of {env}")
    else:
        out.table(
            [
                "version",
                "window",
                "requests",
                "1xx",
                "2xx",
                "3xx",
                "4xx",
                "5xx",
                "upstream errors",
                "p50",
                "p95",
                "p99",
                "pinned",
            ],
            [_stats_row(s) for s in result.versions.values()],
        )
    if result.rejected or result.unrouted:
        out.line(f"rejected malformed: {result.rejected}, unrouted: {result.unrouted}")


def _stats_row(s: VersionStats) -> list[object]:
    return [
        s.version,
        f"{s.window_seconds:.0f}s",
        s.requests,
        *(s.responses.get(c, 0) for c in STATUS_CLASSES),
        s.upstream_error_count,
        *(_ms(s.percentile(q)) for q in (0.5, 0.95, 0.99)),
        "-" if s.pinned is None else s.pinned.requests,
    ]


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}ms"


def _print_routes(out: Output, routes: RouteStatus) -> None:
    table = routes.table
    if not table.versions:
        out.line(f"revision {routes.revision}: no versions routed (every request gets 503)")
        return
    sticky = f", sticky by {table.sticky.kind} {table.sticky.name}" if table.sticky else ""
    out.line(f"revision {routes.revision}{sticky}")
    out.table(
        ["version", "weight", "instance", "state", "in flight"],
        [
            [
                i.version,
                f"{table.weights.get(i.version, 0)}%",
                i.address,
                "drained" if i.drained else ("up" if i.available else "resting"),
                i.in_flight,
            ]
            for i in routes.instances
        ],
    )

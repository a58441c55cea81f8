"""``shipyard deploy``, ``rollback``, ``status``, ``deployments`` and ``service logs``."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from shipyard.cd import checks, deployments
from shipyard.cd.checks import DeployChecks
from shipyard.cd.controller import Controller, driver_alive
from shipyard.cd.delivery import (
    request_deploy,
    retire_expired,
    rollback_target,
    settings_of_version,
    warm_switch,
)
from shipyard.cd.reaper import ensure_reaper
from shipyard.cd.settings import DeploySettings, settings_for
from shipyard.cd.targets import InstanceRef, target_for
from shipyard.cd.targets.local import name_part
from shipyard.cli.commands.agent import ensure_agent
from shipyard.cli.context import Context
from shipyard.cli.options import FileOption, JsonOption
from shipyard.cli.output import Output
from shipyard.core.config import ShipyardConfig, find_config, load_config
from shipyard.core.config.delivery import Canary as CanaryOptions
from shipyard.core.errors import ArgumentError, ShipyardError, UserError
from shipyard.core.git import Git
from shipyard.core.process import spawn_detached

deployments_app = typer.Typer(
    help="Deployments: list, show, pause, resume, abort.", no_args_is_help=True
)
service_app = typer.Typer(help="The deployed service's processes: logs.", no_args_is_help=True)

EnvOption = Annotated[
    str, typer.Option("--env", "-e", metavar="ENV", help="The environment (from shipyard.yaml).")
]
WaitOption = Annotated[
    bool,
    typer.Option(
        "--wait/--no-wait", help="Drive the deployment here (default), or in the background."
    ),
]
OverrideOption = Annotated[
    list[str] | None,
    typer.Option(
        "--override",
        metavar="CHECK",
        help="Let this failed deploy check through (needs --reason; audited; never the "
        "signature check). May be given more than once.",
    ),
]
ReasonOption = Annotated[
    str | None,
    typer.Option("--reason", metavar="TEXT", help="Why the overridden checks may be let through."),
]


def _config_path(file: Path | None, ctx: Context) -> Path:
    return (file or find_config(ctx.cwd, stop=ctx.state.repo_root)).resolve()


def _config(file: Path | None, ctx: Context) -> tuple[ShipyardConfig, str]:
    path = _config_path(file, ctx)
    config = load_config(path)
    root = ctx.state.repo_root
    project_dir = ""
    if root is not None:
        relative = path.parent.relative_to(root.resolve()).as_posix()
        project_dir = "" if relative == "." else relative
    return config, project_dir


def overrides_of(override: list[str] | None, reason: str | None) -> dict[str, str]:
    """The checks ``--override`` lets through, each with the ``--reason``; mistakes are exit 2."""
    if override and not (reason or "").strip():
        raise ArgumentError(
            "--override needs --reason: an override is audited with why",
            hint='add --reason "why this may go out"',
        )
    if reason is not None and not override:
        raise ArgumentError(
            "--reason goes with --override", hint="drop --reason, or add --override"
        )
    return dict.fromkeys(override or (), reason or "")


def deploy_checks(
    ctx: Context, file: Path | None, config: ShipyardConfig, overrides: dict[str, str]
) -> DeployChecks:
    """What the deploy checks judge by: this configuration, its project folder, the repository."""
    root = ctx.state.repo_root
    return DeployChecks(
        config=config,
        project_dir=_config_path(file, ctx).parent,
        git=Git(root) if root is not None else None,
        overrides=overrides,
    )


def _environment(
    ctx: Context, file: Path | None, env: str
) -> tuple[ShipyardConfig, DeploySettings]:
    """The configuration and the settings of one of its environments."""
    config, project_dir = _config(file, ctx)
    return config, settings_for(config, env, project_dir=project_dir)


def _controller(ctx: Context, out: Output) -> Controller:
    return Controller(
        store=ctx.store,
        target_for=lambda chosen: target_for(ctx.state, chosen),
        actor=ctx.actor,
        on_event=lambda text: out.line(f"  {text}"),
        on_saved=lambda state: _reap_when_due(ctx, out, state),
    )


def _reap_when_due(ctx: Context, out: Output, state: deployments.EnvironmentState) -> None:
    """A version kept warm is stopped by the supervised reaper when its window ends."""
    if state.warm_until is None:
        return
    try:
        ensure_reaper(ctx.state)
    except ShipyardError as error:
        out.line(
            f"  warning: {state.warm_version} stays warm until a command stops it: {error.message}"
        )


def deploy(
    version: Annotated[str, typer.Argument(metavar="VERSION", help="A released version.")],
    env: EnvOption,
    wait: WaitOption = True,
    override: OverrideOption = None,
    reason: ReasonOption = None,
    file: FileOption = None,
    json_: JsonOption = False,
) -> None:
    """Deploy a release to an environment: recreate, blue-green, rolling or canary.

    The deploy checks run first (the signature, by a key the environment trusts, and every
    deploy gate): a failure is exit 1 with its findings. Where the environment asks for
    approvals, the deployment waits (exit 3) until 'shipyard approve' starts it.
    """
    out = Output(json_mode=json_)
    overrides = overrides_of(override, reason)
    ctx = Context()
    config, settings = _environment(ctx, file, env)
    retire_expired(
        ctx.store,
        target_for(ctx.state, settings),
        actor=ctx.actor,
        project=config.project,
        environment=env,
    )
    created = request_deploy(
        ctx.store,
        ctx.state,
        settings,
        version,
        actor=ctx.actor,
        checks_with=deploy_checks(ctx, file, config, overrides),
    )
    problem = ensure_agent(ctx, config, _config_path(file, ctx))
    if problem:
        out.warn(problem)
    _drive_or_detach(ctx, out, created, wait)


def rollback(
    env: EnvOption,
    to: Annotated[
        str | None, typer.Option("--to", metavar="VERSION", help="Go back to this release.")
    ] = None,
    wait: WaitOption = True,
    override: OverrideOption = None,
    reason: ReasonOption = None,
    file: FileOption = None,
    json_: JsonOption = False,
) -> None:
    """Go back to the previous version: at once while it is warm, else by deploying it.

    The deploy checks judge the older release as they would a new one.
    """
    out = Output(json_mode=json_)
    overrides = overrides_of(override, reason)
    ctx = Context()
    config, current = _environment(ctx, file, env)
    state, version = rollback_target(ctx.store, config.project, env, to)
    target = target_for(ctx.state, current)
    settings = settings_of_version(ctx.store, config.project, env, version) or current
    checks_with = deploy_checks(ctx, file, config, overrides)
    created = None
    if version == state.warm_version:
        created = warm_switch(
            ctx.store, ctx.state, target, state, settings, actor=ctx.actor, checks_with=checks_with
        )
    if created is None:
        created = request_deploy(
            ctx.store,
            ctx.state,
            settings,
            version,
            actor=ctx.actor,
            kind="rollback",
            checks_with=checks_with,
        )
    _drive_or_detach(ctx, out, created, wait)


def _drive_or_detach(
    ctx: Context, out: Output, created: deployments.Deployment, wait: bool
) -> None:
    if (
        created.status == deployments.DeploymentStatus.WAITING
        and created.requested_action != "abort"
    ):
        report_waiting(ctx, out, created)
        raise typer.Exit(3)
    if not wait:
        pid, log = start_driver(ctx, created)
        if out.json_mode:
            out.json({**created.as_json(), "driver_pid": pid, "driver_log": str(log)})
        else:
            out.success(
                f"deployment {created.id} of {created.version} to "
                f"{created.environment} started in the background (log: {log})"
            )
        return
    if not out.json_mode:
        out.line(
            f"deployment {created.id}: {created.version} to {created.environment} "
            f"({created.strategy})"
        )
    finished = _controller(ctx, out).drive(created.id)
    if out.json_mode:
        out.json(finished.as_json())
    else:
        out.success(f"deployment {finished.id} {finished.status}")


def start_driver(ctx: Context, deployment: deployments.Deployment) -> tuple[int, Path]:
    """Drive a deployment in a detached process; its pid and log file."""
    log = ctx.state.logs / "deployments" / f"{deployment.id}.log"
    pid = spawn_detached(
        [sys.executable, "-m", "shipyard", "deployments", "drive", str(deployment.id)],
        cwd=ctx.cwd,
        log_path=log,
    )
    return pid, log


def report_waiting(ctx: Context, out: Output, waiting: deployments.Deployment) -> None:
    """Say that a deployment waits for approvals, and who may give them."""
    tally = checks.approval_tally(ctx.store, waiting)
    if out.json_mode:
        out.json({**waiting.as_json(), "approvals": tally.as_json() if tally else None})
        return
    out.line(
        f"deployment {waiting.id}: {waiting.version} to {waiting.environment} "
        f"({waiting.strategy}) waits for approval"
    )
    if tally is not None:
        out.line(f"  needs {tally.rule.describe()}; has {tally.describe()}")
    out.line(
        f"  approvers run 'shipyard approve {waiting.id}'; it starts by itself once the "
        "approvals suffice"
    )


def status(
    env: Annotated[str | None, typer.Option("--env", "-e", metavar="ENV")] = None,
    file: FileOption = None,
    json_: JsonOption = False,
) -> None:
    """What each environment runs: versions, live weights, health, the step of a rollout in
    progress, since when, router address."""
    out = Output(json_mode=json_)
    ctx = Context()
    config, project_dir = _config(file, ctx)
    names = [env] if env else list(config.environments)
    report = []
    for name in names:
        settings = settings_for(config, name, project_dir=project_dir)
        target = target_for(ctx.state, settings)
        retire_expired(ctx.store, target, actor=ctx.actor, project=config.project, environment=name)
        state = deployments.environment(ctx.store, config.project, name)
        running = [
            d
            for d in deployments.for_environment(ctx.store, config.project, name, limit=5)
            if not d.finished
        ]
        weights: dict[str, int] = {}
        router_error: str | None = None
        # Asking starts a router that is not running: only where one was set up already.
        if state.active_version or any(d.progress.get("address") for d in running):
            try:
                weights = target.router(settings).current_weights()
            except ShipyardError as error:  # a router that is down is shown as such
                router_error = error.message
        healthy: dict[str, bool] = {}
        for key in ("active", "warm"):
            refs = [InstanceRef.from_json(i) for i in state.instances.get(key, [])]
            if refs:
                healthy[refs[0].version] = target.alive(refs, settings)
        for deployment in running:
            new = [InstanceRef.from_json(i) for i in deployment.progress.get("new", [])]
            if new and deployment.version not in healthy:
                healthy[deployment.version] = target.alive(new, settings)
        report.append(
            {
                **state.as_json(),
                "weights": weights,
                "router_error": router_error,
                "healthy": healthy,
                "versions": _served_versions(state, weights, healthy, running),
                "in_progress": [{**d.as_json(), "rollout": _rollout(d, weights)} for d in running],
            }
        )
    if json_:
        out.json(report)
        return
    for item in report:
        out.line(
            f"{item['environment']}: {item['active_version'] or 'nothing deployed'}"
            f"  (router {item['router'].get('address') or '-'})"
        )
        if item["router_error"]:
            out.line(f"  router: {item['router_error']}")
        for served in item["versions"]:
            weight = "   -" if served["weight"] is None else f"{served['weight']:>3}%"
            health = {True: "healthy", False: "unhealthy", None: ""}[served["healthy"]]
            out.line(f"  {served['version']:<20} {weight}  {health:<9}  {served['role']}")
        if item["warm_version"]:
            out.line(f"  warm until {item['warm_until']}: {item['warm_version']}")
        for running in item["in_progress"]:
            out.line(
                f"  deployment {running['id']} {running['status']}: {running['version']}"
                f" ({_rollout_text(running['strategy'], running['rollout'])})"
            )


def _served_versions(
    state: deployments.EnvironmentState,
    weights: Mapping[str, int],
    healthy: Mapping[str, bool],
    running: Sequence[deployments.Deployment],
) -> list[dict[str, Any]]:
    """Every version the environment serves or brings in: live weight (None if the router does
    not route it), health, and its role (active, warm, or the version being deployed)."""
    roles: dict[str, str] = {}
    for deployment in running:
        roles.setdefault(deployment.version, "deploying")
    if state.active_version:
        roles[state.active_version] = "active"
    if state.warm_version:
        roles.setdefault(state.warm_version, "warm")
    for version in weights:
        roles.setdefault(version, "routed")
    return [
        {
            "version": version,
            "weight": weights.get(version),
            "healthy": healthy.get(version),
            "role": roles[version],
        }
        for version in sorted(roles, key=lambda v: (-weights.get(v, -1), v))
    ]


def _rollout(deployment: deployments.Deployment, weights: Mapping[str, int]) -> dict[str, Any]:
    """How far a deployment in progress got: the last step it recorded, the new version's live
    weight, and for a canary the step it is in (``number`` of ``total``, its planned weight).

    Read defensively: progress recorded by another version of Shipyard may lack any of it.
    """
    progress = deployment.progress
    done = progress.get("steps")
    rollout: dict[str, Any] = {
        "phase": done[-1] if isinstance(done, list) and done else None,
        "weight": weights.get(deployment.version),
        "step": None,
    }
    if deployment.strategy == "canary":
        plan = _canary_plan(deployment)
        index = progress.get("step", 0)
        if plan and isinstance(index, int) and index >= 0:
            current = min(index, len(plan) - 1)
            rollout["step"] = {
                "index": index,
                "number": current + 1,
                "total": len(plan),
                "weight": plan[current][0],
                "finished": index >= len(plan),
            }
    return rollout


def _canary_plan(deployment: deployments.Deployment) -> list[tuple[int, object]]:
    """The canary steps recorded with ``deployment`` (the implied last one included); empty if
    they cannot be read."""
    recorded = deployment.settings.get("deploy")
    options = recorded.get("strategy_options") if isinstance(recorded, Mapping) else None
    if not isinstance(options, Mapping):
        return []
    try:
        return list(CanaryOptions.model_validate(dict(options)).plan)
    except ValidationError:
        return []


def _rollout_text(strategy: str, rollout: Mapping[str, Any]) -> str:
    parts = [strategy]
    step = rollout.get("step")
    if step is not None:
        if step["finished"]:
            parts.append(f"all {step['total']} steps done")
        else:
            parts.append(f"step {step['number']} of {step['total']} ({step['weight']}%)")
    elif rollout.get("phase"):
        parts.append(f"after {rollout['phase']}")
    if rollout.get("weight") is not None:
        parts.append(f"routed {rollout['weight']}%")
    return ", ".join(parts)


@deployments_app.command("list")
def list_deployments(
    env: Annotated[str | None, typer.Option("--env", "-e")] = None,
    file: FileOption = None,
    json_: JsonOption = False,
) -> None:
    """Deployments, newest first."""
    out = Output(json_mode=json_)
    ctx = Context()
    config, _ = _config(file, ctx)
    found = deployments.for_environment(ctx.store, config.project, env)
    if json_:
        out.json([d.as_json() for d in found])
        return
    out.table(
        ["id", "env", "version", "kind", "strategy", "status", "by", "message"],
        [
            [d.id, d.environment, d.version, d.kind, d.strategy, d.status, d.actor, d.message or ""]
            for d in found
        ],
    )


@deployments_app.command("show")
def show(
    deployment_id: Annotated[int, typer.Argument(metavar="ID")], json_: JsonOption = False
) -> None:
    """One deployment: status, progress, driver, deploy checks and approvals."""
    out = Output(json_mode=json_)
    store = Context().store
    found = deployments.get(store, deployment_id)
    tally = checks.approval_tally(store, found)
    shown = {**found.as_json(), "approvals": tally.as_json() if tally else None}
    if json_:
        out.json(shown)
        return
    out.table(["", ""], [[k, v] for k, v in shown.items()])


def _request(deployment_id: int, action: str, json_: bool) -> None:
    out = Output(json_mode=json_)
    ctx = Context()
    found = deployments.request(ctx.store, deployment_id, action, actor=ctx.actor)
    if action in ("resume", "abort") and not driver_alive(found):
        _drive_or_detach(ctx, out, found, wait=False)  # nobody drives it: start a driver
        return
    if json_:
        out.json(found.as_json())
    else:
        out.success(f"{action} requested for deployment {deployment_id}; its driver acts on it")


@deployments_app.command("pause")
def pause(
    deployment_id: Annotated[int, typer.Argument(metavar="ID")], json_: JsonOption = False
) -> None:
    """Ask the driver to pause after the current step."""
    _request(deployment_id, "pause", json_)


@deployments_app.command("resume")
def resume(
    deployment_id: Annotated[int, typer.Argument(metavar="ID")], json_: JsonOption = False
) -> None:
    """Continue a paused deployment, or one whose driver died, from its stored state."""
    _request(deployment_id, "resume", json_)


@deployments_app.command("abort")
def abort(
    deployment_id: Annotated[int, typer.Argument(metavar="ID")], json_: JsonOption = False
) -> None:
    """Ask the driver to stop and put the previous version back."""
    _request(deployment_id, "abort", json_)


@deployments_app.command("drive", hidden=True)
def drive(
    deployment_id: Annotated[int, typer.Argument(metavar="ID")], json_: JsonOption = False
) -> None:
    """Drive a deployment in this process (what --no-wait starts in the background)."""
    out = Output(json_mode=json_)
    ctx = Context()
    finished = _controller(ctx, out).drive(deployment_id)
    if json_:
        out.json(finished.as_json())


@service_app.callback()
def service() -> None:
    """The deployed service's processes."""


@service_app.command("logs")
def logs(
    env: EnvOption,
    version: Annotated[
        str | None, typer.Option(metavar="VERSION", help="Only the instances of this version.")
    ] = None,
    deployment: Annotated[
        int | None,
        typer.Option(metavar="ID", help="The instances a deployment started (also failed ones)."),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", help="Keep printing new lines until Ctrl-C.")
    ] = False,
    file: FileOption = None,
    json_: JsonOption = False,
) -> None:
    """The stdout and stderr of the service's instances, each line labelled with both.

    By default the instances the environment runs, and those of its last deployment if it did
    not succeed. Lines are printed in the order they are read; with --json, one object per line.
    """
    out = Output(json_mode=json_)
    ctx = Context()
    config, project_dir = _config(file, ctx)
    settings = settings_for(config, env, project_dir=project_dir)  # unknown env: exit 2
    refs = _instances_for_logs(ctx, config.project, env, deployment)
    if version:
        refs = [r for r in refs if r.version == version]
    if not refs:
        raise UserError(
            f"no instance of {env}{f' of version {version}' if version else ''} has logs",
            hint=f"deploy a release first: shipyard deploy VERSION --env {env}",
        )
    target = target_for(ctx.state, settings)
    masker = target.masker(settings.secrets)
    sources = [
        _LogSource(ref, stream, path)
        for ref in refs
        for stream, path in target.log_files(ref).items()
    ]
    collected: list[dict[str, str]] = []
    while True:
        for source in sources:
            for raw in source.read(final=not follow):
                line = masker.mask(raw)  # a service may print the secrets it was given
                item = {
                    "instance": source.ref.name,
                    "version": source.ref.version,
                    "stream": source.stream,
                    "line": line,
                }
                if json_ and follow:
                    out.stdout.write(json.dumps(item) + "\n")
                elif json_:
                    collected.append(item)
                else:
                    label = "out" if source.stream == "stdout" else "err"
                    out.stdout.write(f"[{source.ref.name} {label}] {line}\n")
        out.stdout.flush()
        if not follow:
            break
        time.sleep(0.2)
    if json_:
        out.json(collected)


def _instances_for_logs(
    ctx: Context, project: str, env: str, deployment_id: int | None
) -> list[InstanceRef]:
    """The instances of a deployment, or those running plus a last deployment's that failed."""
    if deployment_id is not None:
        chosen = deployments.get(ctx.store, deployment_id)
        if (chosen.project, chosen.environment) != (project, env):
            raise UserError(
                f"deployment {deployment_id} is of {chosen.project} {chosen.environment}, "
                f"not {env}",
                hint=f"list them with 'shipyard deployments list --env {env}'",
            )
        found = _started_by(chosen)
    else:
        state = deployments.environment(ctx.store, project, env)
        found = [
            InstanceRef.from_json(i)
            for key in ("active", "warm")
            for i in state.instances.get(key, [])
        ]
        latest = deployments.for_environment(ctx.store, project, env, limit=1)
        if latest and latest[0].status != "succeeded":
            found += _started_by(latest[0])
    unique: dict[str, InstanceRef] = {}
    for ref in found:
        unique.setdefault(ref.name, ref)
    return list(unique.values())


def _started_by(deployment: deployments.Deployment) -> list[InstanceRef]:
    recorded = [
        InstanceRef.from_json(i)
        for key in ("new", "restored")
        for i in deployment.progress.get(key, [])
    ]
    # Instances that failed to start were never recorded: the local target names them by
    # the deployment, so their logs are found all the same.
    count = int(deployment.settings.get("deploy", {}).get("instances", 1))
    named = [
        InstanceRef(
            name_part(f"{deployment.project}.{deployment.environment}.d{deployment.id}.{index}"),
            deployment.version,
            "127.0.0.1",
            0,
        )
        for index in range(count)
    ]
    return recorded + named


class _LogSource:
    """One stream of one instance: its log file, read from where the last read stopped."""

    def __init__(self, ref: InstanceRef, stream: str, path: Path) -> None:
        self.ref = ref
        self.stream = stream
        self.path = path
        self.offset = 0
        self.partial = b""

    def read(self, *, final: bool) -> list[str]:
        """The whole lines written since the last read (a last unfinished one when final)."""
        try:
            with self.path.open("rb") as handle:
                if os.fstat(handle.fileno()).st_size < self.offset:
                    self.offset, self.partial = 0, b""  # rotated: the new file from its start
                handle.seek(self.offset)
                data = handle.read()
                self.offset = handle.tell()
        except FileNotFoundError:
            return []
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        if final and self.partial:
            lines.append(self.partial)
            self.partial = b""
        return [line.decode(errors="replace").rstrip("\r") for line in lines]

"""``shipyard promote``: deploy a release to the next environments once it has soaked.

With ``--to ENV``, one environment: its ``promote_from`` rule is checked, then it is deployed
as ``shipyard deploy`` does (deploy checks, approvals). Without it, every environment in
promotion order, stopping at the first that is not ready, whose deployment fails, or that
waits for approvals (exit 3).
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from shipyard.cd import deployments
from shipyard.cd.delivery import request_deploy, retire_expired
from shipyard.cd.promotion import Soak, promotion_order, soak_for
from shipyard.cd.settings import settings_for
from shipyard.cd.targets import target_for
from shipyard.cli.commands.deploy import (
    OverrideOption,
    WaitOption,
    _config,
    _controller,
    deploy_checks,
    report_waiting,
)
from shipyard.cli.context import Context
from shipyard.cli.options import FileOption, JsonOption
from shipyard.cli.output import Output
from shipyard.core.errors import ArgumentError, CheckFailed
from shipyard.core.process import spawn_detached


def promote(
    version: Annotated[str, typer.Argument(metavar="VERSION", help="A released version.")],
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            metavar="ENV",
            help="Promote to this environment only (default: every environment in "
            "promote_from order, or the auto environments in order).",
        ),
    ] = None,
    wait: WaitOption = True,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Deploy to --to ENV although the soak has not passed (audited)."
        ),
    ] = False,
    override: OverrideOption = None,
    reason: Annotated[
        str | None,
        typer.Option(
            "--reason",
            metavar="TEXT",
            help="Why --force or --override is needed (required with them).",
        ),
    ] = None,
    file: FileOption = None,
    json_: JsonOption = False,
) -> None:
    """Promote a release: deploy it where its promote_from soak has passed, in order.

    Without --to, environments that run it already are passed over; the first whose soak has
    not passed, or whose deployment fails, stops the promotion (exit 1). With --no-wait, the
    next deployment starts in the background and the command ends; run it again to go on.
    """
    out = Output(json_mode=json_)
    if force and not (reason or "").strip():
        raise ArgumentError(
            "--force needs --reason: a forced promotion is audited with why",
            hint="add --reason 'hotfix for INC-42'",
        )
    if override and not (reason or "").strip():
        raise ArgumentError(
            "--override needs --reason: an override is audited with why",
            hint='add --reason "why this may go out"',
        )
    if reason is not None and not force and not override:
        raise ArgumentError(
            "--reason goes with --force or --override", hint="drop --reason, or add one of them"
        )
    if force and to is None:
        raise ArgumentError(
            "--force overrides the soak of one environment",
            hint="name it: --to ENV",
        )
    if override and to is None:
        raise ArgumentError(
            "--override lets a deploy check of one environment through", hint="name it: --to ENV"
        )
    overrides = dict.fromkeys(override or (), reason or "")
    ctx = Context()
    config, project_dir = _config(file, ctx)
    names = [to] if to is not None else promotion_order(config)
    steps: list[dict[str, Any]] = []
    stopped: str | None = None
    waiting: int | None = None
    for name in names:
        settings = settings_for(config, name, project_dir=project_dir)  # unknown env: exit 2
        if to is None:
            state = deployments.environment(ctx.store, config.project, name)
            if state.active_version == version:
                steps.append(_step(name, "already", f"{name} runs {version} already"))
                continue
            soak = soak_for(ctx.store, settings, version)
            if soak is not None and not soak.ready:
                steps.append(_step(name, "held", soak.describe(), soak=soak))
                stopped = soak.describe()
                break
        retire_expired(
            ctx.store,
            target_for(ctx.state, settings),
            actor=ctx.actor,
            project=config.project,
            environment=name,
        )
        created = request_deploy(
            ctx.store,
            ctx.state,
            settings,
            version,
            actor=ctx.actor,
            forced=reason if force else None,
            checks_with=deploy_checks(ctx, file, config, overrides),
        )
        promotion = created.settings.get("promotion") or {}
        if promotion.get("forced"):
            out.warn(f"{name}: soak overridden ({promotion['message']}); reason: {reason}")
        if created.status == deployments.DeploymentStatus.WAITING:
            if to is not None:
                report_waiting(ctx, out, created)
                raise typer.Exit(3)
            steps.append(
                _step(
                    name,
                    "waiting",
                    f"deployment {created.id} waits for approval (shipyard approve {created.id})",
                    deployment=created.as_json(),
                    promotion=promotion,
                )
            )
            waiting = created.id
            break
        if not wait:
            log = ctx.state.logs / "deployments" / f"{created.id}.log"
            pid = spawn_detached(
                [sys.executable, "-m", "shipyard", "deployments", "drive", str(created.id)],
                cwd=ctx.cwd,
                log_path=log,
            )
            steps.append(
                _step(
                    name,
                    "started",
                    f"deployment {created.id} started in the background (log: {log})",
                    deployment={**created.as_json(), "driver_pid": pid, "driver_log": str(log)},
                    promotion=promotion,
                )
            )
            break
        if not out.json_mode:
            out.line(f"deployment {created.id}: {version} to {name} ({created.strategy})")
        try:
            finished = _controller(ctx, out).drive(created.id)
        except CheckFailed as error:
            if to is not None:
                raise
            failed = deployments.get(ctx.store, created.id)
            steps.append(
                _step(
                    name, "failed", error.message, deployment=failed.as_json(), promotion=promotion
                )
            )
            stopped = error.message
            break
        steps.append(
            _step(
                name,
                finished.status,
                f"deployment {finished.id} {finished.status}",
                deployment=finished.as_json(),
                promotion=promotion,
            )
        )
    _report(out, version, steps, stopped)
    if stopped is not None:
        raise typer.Exit(1)
    if waiting is not None:
        raise typer.Exit(3)


def _step(
    environment: str,
    outcome: str,
    message: str,
    *,
    soak: Soak | None = None,
    deployment: dict[str, Any] | None = None,
    promotion: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One environment's part of a promotion, as reported."""
    return {
        "environment": environment,
        "outcome": outcome,
        "message": message,
        "deployment": deployment,
        "promotion": soak.as_json() if soak is not None else (promotion or None),
    }


def _report(out: Output, version: str, steps: list[dict[str, Any]], stopped: str | None) -> None:
    if out.json_mode:
        out.json({"version": version, "steps": steps, "complete": stopped is None})
        return
    for step in steps:
        out.line(f"  {step['environment']}: {step['message']}")
    reached = [s["environment"] for s in steps if s["outcome"] == "succeeded"]
    so_far = f" (promoted to {', '.join(reached)})" if reached else ""
    if stopped is not None:
        out.error(
            f"promotion of {version} stopped{so_far}: {stopped}",
            f"run 'shipyard promote {version}' again once that is resolved",
        )
    elif steps and steps[-1]["outcome"] == "waiting":
        out.line(
            f"{version} waits for approval in {steps[-1]['environment']}{so_far}; it is deployed "
            f"once approved; then run 'shipyard promote {version}' again to go on"
        )
    elif steps and steps[-1]["outcome"] == "started":
        out.success(
            f"{version} is being deployed to {steps[-1]['environment']} in the background"
            f"{so_far}; run 'shipyard promote {version}' again once it succeeded to go on"
        )
    else:
        out.success(
            f"promoted {version} to {', '.join(reached)}"
            if reached
            else f"{version} runs everywhere it is promoted to already"
        )

"""``shipyard approve``: approve a deployment that waits, and start it once approvals suffice.

The approver is whoever the command runs as (``SHIPYARD_USER``, else git's ``user.email``):
a self-declared name, unless the approval is signed (``--sign``) with a key listed for that
name in the repository's approvers folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from shipyard.cd import checks, deployments
from shipyard.cd.checks import (
    APPROVER_KEY_ENV,
    APPROVER_PASSPHRASE_ENV,
    DeployChecks,
    load_approver_key,
)
from shipyard.cd.controller import driver_alive
from shipyard.cli.commands.deploy import _config, deploy_checks, start_driver
from shipyard.cli.context import Context
from shipyard.cli.options import FileOption, JsonOption
from shipyard.cli.output import Output
from shipyard.core.approvals import AlreadyApproved
from shipyard.core.errors import ArgumentError, ShipyardError, UserError


def approve(
    deployment_id: Annotated[
        int, typer.Argument(metavar="DEPLOYMENT", help="The deployment's id (deployments list).")
    ],
    reason: Annotated[
        str | None, typer.Option("--reason", metavar="TEXT", help="Why it may go out.")
    ] = None,
    sign: Annotated[
        bool,
        typer.Option(
            "--sign",
            help="Sign the approval with your ed25519 key (see --key), so it can be trusted.",
        ),
    ] = False,
    key: Annotated[
        Path | None,
        typer.Option(
            "--key",
            metavar="FILE",
            envvar=APPROVER_KEY_ENV,
            help="Your private key for --sign: ed25519, PEM or OpenSSH; an encrypted one takes "
            f"its passphrase from {APPROVER_PASSPHRASE_ENV}.",
        ),
    ] = None,
    file: FileOption = None,
    json_: JsonOption = False,
) -> None:
    """Approve a deployment that waits for approval; once approvals suffice it starts by itself.

    An approval that would not count (the author's own where not_author is set, the
    releaser's where not_releaser is, a non-member of the groups, an unsigned one where
    signed approvals are required) is refused and not recorded. When this approval makes them
    suffice, the deploy checks run again and a driver starts in the background.
    """
    out = Output(json_mode=json_)
    if key is not None and not sign and os.environ.get(APPROVER_KEY_ENV) is None:
        raise ArgumentError("--key goes with --sign", hint="add --sign, or drop --key")
    ctx = Context()
    found = deployments.get(ctx.store, deployment_id)
    signer = None
    if sign:
        if key is None:
            raise ArgumentError(
                "--sign needs your private key",
                hint=f"name it with --key FILE or {APPROVER_KEY_ENV}",
            )
        signer = load_approver_key(key, os.environ.get(APPROVER_PASSPHRASE_ENV))
    approval = None
    try:
        approval, tally = checks.approve(
            ctx.store, found, approver=ctx.actor, reason=reason, key=signer
        )
    except AlreadyApproved:
        # Approved already: go on only to start a deployment whose start was interrupted.
        current = checks.approval_tally(ctx.store, found)
        if current is None or not _ready(found, current.suffices):
            raise
        tally = current
    now = deployments.get(ctx.store, deployment_id)
    started = None
    if _ready(now, tally.suffices):
        checks.recheck(ctx.store, ctx.state, _checks_here(ctx, file, now), now, actor=ctx.actor)
        started = start_driver(ctx, now)
    if json_:
        out.json(
            {
                "deployment": deployments.get(ctx.store, deployment_id).as_json(),
                "approval": approval.as_json() if approval else None,
                "approvals": tally.as_json(),
                "driver_pid": started[0] if started else None,
                "driver_log": str(started[1]) if started else None,
            }
        )
        return
    if approval is not None:
        signed = f", signed with key {approval.key_id[:16]}" if approval.key_id else ""
        out.success(f"{approval.approver} approved deployment {now.id}{signed}")
    out.line(f"  {tally.describe()} ({tally.rule.describe()})")
    if started is not None:
        out.success(
            f"deployment {now.id} of {now.version} to {now.environment} starts in the "
            f"background (log: {started[1]})"
        )
    elif tally.suffices:
        out.line(f"  deployment {now.id} is {now.status}")
    else:
        out.line(f"  deployment {now.id} waits for {tally.missing} more")


def _checks_here(
    ctx: Context, file: Path | None, deployment: deployments.Deployment
) -> DeployChecks:
    """The deploy checks of the project here, which must be the deployment's."""
    again = (
        f"the approvals are recorded; to start the deployment, run 'shipyard approve "
        f"{deployment.id}' again in {deployment.project}'s folder (or name its file with --file)"
    )
    try:
        config, _ = _config(file, ctx)
    except ShipyardError as error:
        raise UserError(
            f"deployment {deployment.id} cannot be started from here: {error.message}",
            hint=again,
        ) from error
    if config.project != deployment.project:
        raise UserError(
            f"deployment {deployment.id} is of {deployment.project}, but this configuration is "
            f"of {config.project}",
            hint=again,
        )
    return deploy_checks(ctx, file, config, {})


def _ready(deployment: deployments.Deployment, suffices: bool) -> bool:
    """Whether a deployment whose approvals suffice waits for somebody to start it."""
    return (
        suffices
        and deployment.status == deployments.DeploymentStatus.WAITING
        and not driver_alive(deployment)
    )

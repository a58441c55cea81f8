"""Asking for deployments and rollbacks: every check before anything starts.

A deployment is only of a published release of this project that passes the deploy checks
(its signature and every digest, by a key the environment trusts, and every deploy gate); the
environment's settings and approval rule are frozen into it, and it waits for approvals where
the environment asks for them. A rollback to the version kept warm moves traffic back at once;
otherwise the earlier release is deployed again with the configuration that went with it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from shipyard.cd import checks, deployments, promotion
from shipyard.cd.checks import DeployChecks
from shipyard.cd.deployments import Deployment, EnvironmentState
from shipyard.cd.settings import DeploySettings
from shipyard.cd.targets import InstanceRef, Target
from shipyard.core import audit
from shipyard.core.errors import ArgumentError, NotFoundError, UserError
from shipyard.core.state import StateDir
from shipyard.core.store import Store
from shipyard.release import publish, records


def request_deploy(
    store: Store,
    state: StateDir,
    settings: DeploySettings,
    version: str,
    *,
    actor: str,
    kind: str = "deploy",
    forced: str | None = None,
    checks_with: DeployChecks | None = None,
) -> Deployment:
    """Record a deployment of ``version`` once the deploy checks let it through.

    An environment with ``promote_from`` takes it only once it has soaked there, unless
    ``forced`` gives the reason for going ahead anyway (audited); a rollback to a version
    that ran here before needs no soak. ``checks_with`` carries the configuration the checks
    judge by (without it, only the signature is checked, against the whole keyring); where the
    environment asks for approvals, the deployment is recorded ``waiting``.
    """
    if forced is not None and not forced.strip():
        raise ArgumentError(
            "a forced promotion needs a reason", hint="say why: --reason 'hotfix for INC-42'"
        )
    record = _published_release(store, state, settings.project, version, actor=actor)
    soak = None
    if (
        kind != "rollback"
        or settings_of_version(store, settings.project, settings.environment, version) is None
    ):
        soak = promotion.soak_for(store, settings, version)
    override = soak is not None and not soak.ready
    if soak is not None and override and forced is None:
        raise promotion.refusal(soak)
    rule = checks.approval_rule(checks_with, settings, record)
    run = checks.run_checks(store, state, checks_with, settings, record, actor=actor, kind=kind)
    current = deployments.environment(store, settings.project, settings.environment)
    previous: dict[str, object] | None = None
    previous_bundle: str | None = None
    if current.active_deployment is not None:
        previous = dict(deployments.get(store, current.active_deployment).settings["deploy"])
        try:
            previous_bundle = records.get(
                store, settings.project, str(current.active_version)
            ).bundle
        except NotFoundError:
            previous_bundle = None
    created = deployments.create(
        store,
        project=settings.project,
        environment=settings.environment,
        version=version,
        kind=kind,
        strategy=settings.strategy,
        previous_version=current.active_version,
        settings={
            "deploy": settings.as_json(),
            "bundle": record.bundle,
            "previous": previous,
            "previous_bundle": previous_bundle,
            "promotion": {
                **soak.as_json(),
                "forced": forced if override else None,
            }
            if soak is not None
            else None,
            "checks": checks.summary(run),
            "approval": rule.as_json() if rule is not None else None,
        },
        actor=actor,
        on_busy=settings.on_busy,
        waiting=checks.waiting_message(rule) if rule is not None else None,
    )
    checks.record_checked(store, created, run, actor=actor)
    if soak is not None and override:
        with store.write() as conn:
            audit.append(
                conn,
                actor=actor,
                action="deployment.promotion_forced",
                subject=created.subject,
                details={**soak.as_json(), "reason": forced},
            )
    return created


def settings_of_version(
    store: Store, project: str, environment: str, version: str
) -> DeploySettings | None:
    """The settings the last successful deployment of ``version`` here went with."""
    for deployment in deployments.for_environment(store, project, environment, limit=500):
        if deployment.version == version and deployment.status == "succeeded":
            return DeploySettings.from_json(deployment.settings["deploy"])
    return None


def rollback_target(
    store: Store, project: str, environment: str, to: str | None
) -> tuple[EnvironmentState, str]:
    """The environment's state and the version a rollback goes back to."""
    state = deployments.environment(store, project, environment)
    if state.active_version is None:
        raise UserError(
            f"{environment} runs nothing yet, so there is nothing to roll back",
            hint=f"deploy a release first: shipyard deploy VERSION --env {environment}",
        )
    if to is not None:
        if to == state.active_version:
            raise UserError(f"{environment} runs {to} already")
        return state, to
    if state.warm_version:
        return state, state.warm_version
    for deployment in deployments.for_environment(store, project, environment, limit=500):
        if deployment.status == "succeeded" and deployment.version != state.active_version:
            return state, deployment.version
    raise UserError(
        f"{environment} has run no other version to roll back to", hint="name one with --to VERSION"
    )


def warm_switch(
    store: Store,
    state: StateDir,
    target: Target,
    env_state: EnvironmentState,
    settings: DeploySettings,
    *,
    actor: str,
    checks_with: DeployChecks | None = None,
) -> Deployment | None:
    """Ask for a rollback to the warm version (strategy ``switch``: traffic back at once).

    Returns the deployment, driven like any other, once the deploy checks let the warm version
    through (it waits where the environment asks for approvals); None if nothing is warm any
    more.
    """
    warm = [InstanceRef.from_json(i) for i in env_state.instances.get("warm", [])]
    expired = env_state.warm_until is not None and env_state.warm_until < datetime.now(UTC)
    if not env_state.warm_version or expired or not target.alive(warm, settings):
        return None
    version = env_state.warm_version
    record = _published_release(store, state, settings.project, version, actor=actor)
    rule = checks.approval_rule(checks_with, settings, record)
    run = checks.run_checks(
        store, state, checks_with, settings, record, actor=actor, kind="rollback"
    )
    created = deployments.create(
        store,
        project=settings.project,
        environment=settings.environment,
        version=env_state.warm_version,
        kind="rollback",
        strategy="switch",
        previous_version=env_state.active_version,
        settings={
            "deploy": settings.as_json(),
            "bundle": record.bundle,
            "previous": None,
            "checks": checks.summary(run),
            "approval": rule.as_json() if rule is not None else None,
        },
        actor=actor,
        on_busy="refuse",
        waiting=checks.waiting_message(rule) if rule is not None else None,
    )
    checks.record_checked(store, created, run, actor=actor)
    return created


def retire_expired(
    store: Store,
    target: Target,
    *,
    actor: str,
    project: str | None = None,
    environment: str | None = None,
) -> list[EnvironmentState]:
    """Stop the warm versions whose rollback window has passed (recorded and audited first).

    Returns the environments as they were; ``project`` and ``environment`` narrow the search.
    """
    retired = deployments.retire_warm(
        store, actor=actor, now=datetime.now(UTC), project=project, environment=environment
    )
    for state in retired:
        target.stop([InstanceRef.from_json(i) for i in state.instances.get("warm", [])])
    return retired


def stop_environments(
    store: Store,
    target: Target,
    *,
    actor: str,
    project: str | None = None,
    environment: str | None = None,
) -> list[EnvironmentState]:
    """Stop every instance of environments (recorded as running nothing, audited, first).

    Refused while a deployment of one of them is going on. Returns them as they were.
    """
    stopped = deployments.clear_environments(
        store, actor=actor, project=project, environment=environment
    )
    for state in stopped:
        target.stop(
            [
                InstanceRef.from_json(i)
                for key in ("active", "warm")
                for i in state.instances.get(key, [])
            ]
        )
    return stopped


def _published_release(
    store: Store, state: StateDir, project: str, version: str, *, actor: str
) -> records.ReleaseRecord:
    try:
        record = records.get(store, project, version)
    except NotFoundError as error:
        raise NotFoundError(
            f"{version} is not a release of {project}",
            hint="list the releases with 'shipyard releases list'",
        ) from error
    if record.status == records.PENDING:  # a crash interrupted it: finish (or fail) it first
        publish.reconcile_in(state, store, project, actor=actor)
        record = records.get(store, project, version)
    if record.status != records.PUBLISHED:
        raise UserError(
            f"{project} {version} is {record.status}, not published",
            hint="only a published release can be deployed",
        )
    return record

"""Deployments in the store: a checked state machine, requested actions and the driver's lease.

pending → progressing ⇄ paused → succeeded; or → aborted → rolled back; or failed. A deployment
whose environment asks for approvals is ``waiting`` (created so, or from pending) until they
suffice. Every transition is checked, and is an audit event and an outbox event in the same
transaction. Short-lived commands only record intent (pause, resume, abort); the lease holder
acts on it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, and_, or_, select, update

from shipyard.core import audit, outbox
from shipyard.core.errors import NotFoundError, UserError
from shipyard.core.store import Store
from shipyard.core.store.tables import deployments, environment_state


class DeploymentStatus(StrEnum):
    """Where a deployment is in its state machine; the values are what the store and JSON hold."""

    PENDING = "pending"
    WAITING = "waiting"
    PROGRESSING = "progressing"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    ABORTED = "aborted"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"


Status = DeploymentStatus

TRANSITIONS: dict[DeploymentStatus, frozenset[DeploymentStatus]] = {
    Status.PENDING: frozenset({Status.WAITING, Status.PROGRESSING, Status.ABORTED, Status.FAILED}),
    Status.WAITING: frozenset({Status.PROGRESSING, Status.ABORTED, Status.FAILED}),
    Status.PROGRESSING: frozenset({Status.PAUSED, Status.SUCCEEDED, Status.ABORTED, Status.FAILED}),
    Status.PAUSED: frozenset({Status.PROGRESSING, Status.ABORTED, Status.FAILED}),
    Status.ABORTED: frozenset({Status.ROLLED_BACK, Status.FAILED}),
}
FINAL = frozenset({Status.SUCCEEDED, Status.ROLLED_BACK, Status.FAILED})
ACTIONS = ("pause", "resume", "abort")


class DeploymentError(UserError):
    """A deployment request or action is not possible as asked."""


class IllegalTransition(DeploymentError):
    """A deployment cannot go from its status to the one asked."""


class EnvironmentBusy(DeploymentError):
    """Another deployment of the environment is going on and the environment refuses to queue."""


@dataclass(frozen=True)
class Deployment:
    """One deployment of a version to an environment, as recorded."""

    id: int
    project: str
    environment: str
    version: str
    kind: str
    strategy: str
    status: DeploymentStatus
    previous_version: str | None
    settings: Mapping[str, Any]
    progress: Mapping[str, Any]
    requested_action: str | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    actor: str
    message: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        """Whether the deployment reached a final status."""
        return self.status in FINAL

    @property
    def subject(self) -> str:
        """How audit and outbox events name this deployment."""
        return f"deployment:{self.id}"

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form (settings name secrets, never their values)."""
        return {
            "id": self.id,
            "project": self.project,
            "environment": self.environment,
            "version": self.version,
            "kind": self.kind,
            "strategy": self.strategy,
            "status": self.status.value,
            "previous_version": self.previous_version,
            "progress": dict(self.progress),
            "requested_action": self.requested_action,
            "driver": self.lease_owner,
            "actor": self.actor,
            "message": self.message,
            "checks": self.settings.get("checks"),
            "approval": self.settings.get("approval"),
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


@dataclass(frozen=True)
class EnvironmentState:
    """What an environment runs now, what is kept warm, and where its router is."""

    project: str
    environment: str
    active_version: str | None
    active_deployment: int | None
    warm_version: str | None
    warm_deployment: int | None
    warm_until: datetime | None
    instances: Mapping[str, Any]
    router: Mapping[str, Any]
    since: datetime | None

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "environment": self.environment,
            "active_version": self.active_version,
            "active_deployment": self.active_deployment,
            "warm_version": self.warm_version,
            "warm_deployment": self.warm_deployment,
            "warm_until": self.warm_until.isoformat() if self.warm_until else None,
            "instances": dict(self.instances),
            "router": dict(self.router),
            "since": self.since.isoformat() if self.since else None,
        }


def create(
    store: Store,
    *,
    project: str,
    environment: str,
    version: str,
    kind: str,
    strategy: str,
    previous_version: str | None,
    settings: Mapping[str, Any],
    actor: str,
    on_busy: str,
    waiting: str | None = None,
) -> Deployment:
    """Record a pending deployment; a busy environment queues, supersedes or refuses it.

    With ``waiting`` (why: the approvals it needs) it is recorded ``waiting`` instead, and that
    is announced as ``deployment.waiting`` too.
    """
    status = Status.PENDING if waiting is None else Status.WAITING
    now = datetime.now(UTC)
    with store.write() as conn:
        busy = _unfinished(conn, project, environment)
        if busy and on_busy == "refuse":
            raise EnvironmentBusy(
                f"{environment} is busy with deployment {busy[0].id} ({busy[0].status})",
                hint=f"wait for it, or abort it: shipyard deployments abort {busy[0].id}",
            )
        if busy and on_busy == "supersede":
            for other in busy:
                conn.execute(
                    update(deployments)
                    .where(deployments.c.id == other.id)
                    .values(requested_action="abort", updated_at=now)
                )
                audit.append(
                    conn,
                    actor=actor,
                    action="deployment.superseded",
                    subject=other.subject,
                    details={"version": version},
                )
        result = conn.execute(
            deployments.insert().values(
                project=project,
                environment=environment,
                version=version,
                kind=kind,
                strategy=strategy,
                status=status.value,
                previous_version=previous_version,
                message=waiting,
                settings=json.dumps(dict(settings), sort_keys=True),
                progress="{}",
                actor=actor,
                created_at=now,
                updated_at=now,
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        created = _get(conn, int(key[0]))
        details = {
            "project": project,
            "environment": environment,
            "version": version,
            "kind": kind,
            "strategy": strategy,
            "previous_version": previous_version,
            "queued_behind": [d.id for d in busy] if on_busy == "queue" else [],
            "status": status.value,
        }
        audit.append(
            conn, actor=actor, action="deployment.created", subject=created.subject, details=details
        )
        outbox.append(conn, "deployment.created", created.subject, details)
        if waiting is not None:
            waits = {
                "project": project,
                "environment": environment,
                "version": version,
                "message": waiting,
            }
            audit.append(
                conn,
                actor=actor,
                action="deployment.waiting",
                subject=created.subject,
                details=waits,
            )
            outbox.append(conn, "deployment.waiting", created.subject, waits)
        return created


def transition(
    store: Store,
    deployment_id: int,
    to: DeploymentStatus | str,
    *,
    actor: str,
    message: str | None = None,
) -> Deployment:
    """Move a deployment to ``to`` if that is legal; audited and announced."""
    to = DeploymentStatus(to)
    now = datetime.now(UTC)
    with store.write() as conn:
        current = _get(conn, deployment_id)
        if to not in TRANSITIONS.get(current.status, frozenset()):
            raise IllegalTransition(
                f"deployment {deployment_id} is {current.status}; it cannot become {to}"
            )
        values: dict[str, Any] = {"status": to.value, "updated_at": now}
        if message is not None:
            values["message"] = message
        if to in FINAL:
            values["finished_at"] = now
            values["lease_owner"] = None
            values["lease_expires_at"] = None
        conn.execute(update(deployments).where(deployments.c.id == deployment_id).values(**values))
        moved = _get(conn, deployment_id)
        details = {
            "from": current.status.value,
            "to": to.value,
            "project": current.project,
            "environment": current.environment,
            "version": current.version,
            "message": message,
        }
        audit.append(
            conn, actor=actor, action=f"deployment.{to}", subject=moved.subject, details=details
        )
        outbox.append(conn, f"deployment.{to}", moved.subject, details)
        return moved


def save_progress(store: Store, deployment_id: int, progress: Mapping[str, Any]) -> None:
    """Remember how far the strategy got, so another driver can carry on from there."""
    with store.write() as conn:
        conn.execute(
            update(deployments)
            .where(deployments.c.id == deployment_id)
            .values(
                progress=json.dumps(dict(progress), sort_keys=True), updated_at=datetime.now(UTC)
            )
        )


def request(store: Store, deployment_id: int, action: str, *, actor: str) -> Deployment:
    """Record that somebody asks the driver to pause, resume or abort."""
    if action not in ACTIONS:
        raise DeploymentError(f"{action!r} is not an action", hint="pause, resume or abort")
    with store.write() as conn:
        current = _get(conn, deployment_id)
        if current.finished:
            raise DeploymentError(f"deployment {deployment_id} is {current.status} already")
        if action == "resume" and current.status == Status.WAITING:
            raise DeploymentError(
                f"deployment {deployment_id} is waiting for approval"
                + (f": {current.message}" if current.message else ""),
                hint=f"it starts by itself once approved: shipyard approve {deployment_id}",
            )
        if action == "resume" and current.status not in (
            Status.PAUSED,
            Status.PROGRESSING,
            Status.PENDING,
        ):
            raise DeploymentError(f"deployment {deployment_id} is {current.status}")
        if current.requested_action == "abort" and action != "abort":
            raise DeploymentError(
                f"an abort of deployment {deployment_id} is under way", hint="wait for it to finish"
            )
        conn.execute(
            update(deployments)
            .where(deployments.c.id == deployment_id)
            .values(requested_action=action, updated_at=datetime.now(UTC))
        )
        audit.append(
            conn,
            actor=actor,
            action=f"deployment.{action}_requested",
            subject=current.subject,
            details={"status": current.status.value},
        )
        return _get(conn, deployment_id)


def take_request(store: Store, deployment_id: int) -> str | None:
    """The pending requested action, cleared as it is taken (the driver acts on it)."""
    with store.write() as conn:
        action = conn.execute(
            select(deployments.c.requested_action).where(deployments.c.id == deployment_id)
        ).scalar()
        if action:
            conn.execute(
                update(deployments)
                .where(deployments.c.id == deployment_id)
                .values(requested_action=None)
            )
        return str(action) if action else None


def acquire_lease(store: Store, deployment_id: int, owner: str, ttl: timedelta) -> bool:
    """Become the driver, unless another driver holds a lease that has not expired."""
    now = datetime.now(UTC)
    with store.write() as conn:
        result = conn.execute(
            update(deployments)
            .where(
                deployments.c.id == deployment_id,
                or_(
                    deployments.c.lease_owner.is_(None),
                    deployments.c.lease_owner == owner,
                    deployments.c.lease_expires_at < now,
                ),
            )
            .values(lease_owner=owner, lease_expires_at=now + ttl)
        )
        return result.rowcount == 1


def renew_lease(store: Store, deployment_id: int, owner: str, ttl: timedelta) -> bool:
    """Extend a lease ``owner`` still holds; False once it was broken or taken over.

    Unlike ``acquire_lease`` it never takes a free lease: a driver whose lease was broken
    must stop, not race the driver that is taking over.
    """
    now = datetime.now(UTC)
    with store.write() as conn:
        result = conn.execute(
            update(deployments)
            .where(deployments.c.id == deployment_id, deployments.c.lease_owner == owner)
            .values(lease_expires_at=now + ttl)
        )
        return result.rowcount == 1


def break_lease(store: Store, deployment_id: int, owner: str, *, actor: str) -> None:
    """Drop a lease whose holder is known to be dead (a process of this host that is gone)."""
    with store.write() as conn:
        result = conn.execute(
            update(deployments)
            .where(deployments.c.id == deployment_id, deployments.c.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None)
        )
        if result.rowcount:
            audit.append(
                conn,
                actor=actor,
                action="deployment.lease_broken",
                subject=f"deployment:{deployment_id}",
                details={"owner": owner},
            )


def release_lease(store: Store, deployment_id: int, owner: str) -> None:
    """Give the lease up (a finished driver, or one that stops on purpose)."""
    with store.write() as conn:
        conn.execute(
            update(deployments)
            .where(deployments.c.id == deployment_id, deployments.c.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None)
        )


def get(store: Store, deployment_id: int) -> Deployment:
    """The deployment with this id; NotFoundError when there is none."""
    with store.read() as conn:
        return _get(conn, deployment_id)


def for_environment(
    store: Store, project: str, environment: str | None = None, *, limit: int = 50
) -> list[Deployment]:
    """Deployments of a project (or one environment), newest first."""
    query = select(deployments).where(deployments.c.project == project)
    if environment is not None:
        query = query.where(deployments.c.environment == environment)
    with store.read() as conn:
        rows = conn.execute(query.order_by(deployments.c.id.desc()).limit(limit))
        return [_to_deployment(row) for row in rows]


def ahead_of(store: Store, deployment: Deployment) -> list[Deployment]:
    """Unfinished deployments of the same environment that were asked for earlier."""
    with store.read() as conn:
        return [
            d
            for d in _unfinished(conn, deployment.project, deployment.environment)
            if d.id < deployment.id
        ]


def environment(store: Store, project: str, name: str) -> EnvironmentState:
    """What an environment runs now (empty before its first deployment)."""
    with store.read() as conn:
        row = conn.execute(
            select(environment_state).where(
                environment_state.c.project == project, environment_state.c.environment == name
            )
        ).first()
    if row is None:
        return EnvironmentState(project, name, None, None, None, None, None, {}, {}, None)
    return _to_state(row)


def _to_state(row: Any) -> EnvironmentState:
    return EnvironmentState(
        project=row.project,
        environment=row.environment,
        active_version=row.active_version,
        active_deployment=row.active_deployment,
        warm_version=row.warm_version,
        warm_deployment=row.warm_deployment,
        warm_until=row.warm_until,
        instances=json.loads(row.instances),
        router=json.loads(row.router),
        since=row.since,
    )


def save_environment(store: Store, state: EnvironmentState) -> None:
    """Record what an environment runs now."""
    values = {
        "active_version": state.active_version,
        "active_deployment": state.active_deployment,
        "warm_version": state.warm_version,
        "warm_deployment": state.warm_deployment,
        "warm_until": state.warm_until,
        "instances": json.dumps(dict(state.instances)),
        "router": json.dumps(dict(state.router)),
        "since": state.since,
        "updated_at": datetime.now(UTC),
    }
    with store.write() as conn:
        updated = conn.execute(
            update(environment_state)
            .where(
                environment_state.c.project == state.project,
                environment_state.c.environment == state.environment,
            )
            .values(**values)
        )
        if updated.rowcount == 0:
            conn.execute(
                environment_state.insert().values(
                    project=state.project, environment=state.environment, **values
                )
            )


def retire_warm(
    store: Store,
    *,
    actor: str,
    now: datetime,
    project: str | None = None,
    environment: str | None = None,
) -> list[EnvironmentState]:
    """Forget the warm versions whose rollback window ended by ``now``; audited.

    Returns each environment as it was, so the caller stops its warm instances. An environment
    with a deployment going on is left to that deployment, which decides about its warm version.
    """
    query = select(environment_state).where(environment_state.c.warm_version.is_not(None))
    if project is not None:
        query = query.where(environment_state.c.project == project)
    if environment is not None:
        query = query.where(environment_state.c.environment == environment)
    retired = []
    with store.write() as conn:
        for row in conn.execute(query.with_for_update()).all():
            state = _to_state(row)
            if state.warm_until is None or state.warm_until > now:
                continue
            if _unfinished(conn, state.project, state.environment):
                continue
            conn.execute(
                update(environment_state)
                .where(
                    environment_state.c.project == state.project,
                    environment_state.c.environment == state.environment,
                )
                .values(
                    warm_version=None,
                    warm_deployment=None,
                    warm_until=None,
                    instances=json.dumps({**state.instances, "warm": []}),
                    updated_at=now,
                )
            )
            audit.append(
                conn,
                actor=actor,
                action="environment.warm_stopped",
                subject=environment_subject(state.project, state.environment),
                details={
                    "environment": state.environment,
                    "version": state.warm_version,
                    "warm_until": state.warm_until.isoformat(),
                    "instances": [i["name"] for i in state.instances.get("warm", [])],
                },
            )
            retired.append(state)
    return retired


def next_warm_expiry(store: Store) -> datetime | None:
    """When the next rollback window ends (None if no version is kept warm)."""
    with store.read() as conn:
        rows = conn.execute(
            select(environment_state.c.warm_until).where(
                environment_state.c.warm_version.is_not(None),
                environment_state.c.warm_until.is_not(None),
            )
        ).all()
    return min((row.warm_until for row in rows), default=None)


def clear_environments(
    store: Store, *, actor: str, project: str | None = None, environment: str | None = None
) -> list[EnvironmentState]:
    """Record that environments run nothing any more (they are being stopped); audited.

    Refused while a deployment of one of them is going on. Returns each that ran something,
    as it was.
    """
    query = select(environment_state)
    if project is not None:
        query = query.where(environment_state.c.project == project)
    if environment is not None:
        query = query.where(environment_state.c.environment == environment)
    cleared = []
    now = datetime.now(UTC)
    with store.write() as conn:
        states = [
            state
            for state in (_to_state(row) for row in conn.execute(query.with_for_update()).all())
            if state.active_version or state.warm_version or any(state.instances.values())
        ]
        for state in states:
            busy = _unfinished(conn, state.project, state.environment)
            if busy:
                raise EnvironmentBusy(
                    f"{state.environment} is busy with deployment {busy[0].id} "
                    f"({busy[0].status}); it is not stopped",
                    hint=f"wait for it, or abort it: shipyard deployments abort {busy[0].id}",
                )
        for state in states:
            conn.execute(
                update(environment_state)
                .where(
                    environment_state.c.project == state.project,
                    environment_state.c.environment == state.environment,
                )
                .values(
                    active_version=None,
                    active_deployment=None,
                    warm_version=None,
                    warm_deployment=None,
                    warm_until=None,
                    instances="{}",
                    router="{}",
                    since=now,
                    updated_at=now,
                )
            )
            audit.append(
                conn,
                actor=actor,
                action="environment.stopped",
                subject=environment_subject(state.project, state.environment),
                details={
                    "environment": state.environment,
                    "active_version": state.active_version,
                    "warm_version": state.warm_version,
                    "instances": [
                        i["name"]
                        for key in ("active", "warm")
                        for i in state.instances.get(key, [])
                    ],
                },
            )
            cleared.append(state)
    return cleared


def environment_subject(project: str, environment: str) -> str:
    """How audit events name an environment."""
    return f"environment:{project}/{environment}"


def _unfinished(conn: Connection, project: str, environment: str) -> list[Deployment]:
    rows = conn.execute(
        select(deployments)
        .where(
            and_(
                deployments.c.project == project,
                deployments.c.environment == environment,
                deployments.c.status.not_in([status.value for status in FINAL]),
            )
        )
        .order_by(deployments.c.id)
    )
    return [_to_deployment(row) for row in rows]


def _get(conn: Connection, deployment_id: int) -> Deployment:
    row = conn.execute(select(deployments).where(deployments.c.id == deployment_id)).first()
    if row is None:
        raise NotFoundError(
            f"there is no deployment {deployment_id}",
            hint="list them with 'shipyard deployments list'",
        )
    return _to_deployment(row)


def _to_deployment(row: Any) -> Deployment:
    return Deployment(
        id=int(row.id),
        project=row.project,
        environment=row.environment,
        version=row.version,
        kind=row.kind,
        strategy=row.strategy,
        status=DeploymentStatus(row.status),
        previous_version=row.previous_version,
        settings=json.loads(row.settings),
        progress=json.loads(row.progress),
        requested_action=row.requested_action,
        lease_owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
        actor=row.actor,
        message=row.message,
        created_at=row.created_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
    )

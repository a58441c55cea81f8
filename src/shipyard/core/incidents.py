"""Incidents: what failed in an environment, which release caused it, and when service came back.

The monitor pillar opens one when an analysis or a watch window rolls a deployment back; a
person opens and resolves them with ``shipyard incident``; DORA reads the time to restore.
This module stores and reads rows in the caller's transaction, each change audited and
announced in that same transaction; it decides nothing about deployments and masks nothing
(callers mask secrets before text gets here).

open → restored → resolved, or open → resolved (then restored_at is the moment it was resolved).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Select, select, update

from shipyard.core import audit, outbox
from shipyard.core.errors import ArgumentError, NotFoundError, UserError
from shipyard.core.store.tables import incidents

TITLE_LIMIT = 200
"""The longest title an incident may have, in characters (one line of a list)."""

_VERSION_LIMIT = 100  # the width of the version columns, as in releases and deployments


class IncidentStatus(StrEnum):
    """Where an incident stands; the values are what the store and JSON hold."""

    OPEN = "open"
    RESTORED = "restored"
    RESOLVED = "resolved"


class IncidentSource(StrEnum):
    """What opened an incident: a failed analysis, a failed watch window, or a person."""

    ANALYSIS = "analysis"
    WATCH = "watch"
    MANUAL = "manual"


class IncidentError(UserError):
    """An incident cannot be recorded or changed as asked."""


class AlreadyRestored(IncidentError):
    """Service was restored already: an incident's restoration is recorded once."""


class AlreadyResolved(IncidentError):
    """The incident was resolved already: it cannot change any more."""


@dataclass(frozen=True)
class Incident:
    """One incident of an environment, as recorded."""

    id: int
    project: str
    environment: str
    title: str
    status: IncidentStatus
    source: IncidentSource
    caused_by_version: str | None
    deployment_id: int | None
    restored_by_version: str | None
    opened_at: datetime
    restored_at: datetime | None
    resolved_at: datetime | None
    opened_by: str
    resolved_by: str | None
    reason: str
    resolution: str | None

    @property
    def subject(self) -> str:
        """How audit and outbox events name this incident."""
        return f"incident:{self.id}"

    @property
    def time_to_restore(self) -> timedelta | None:
        """From opening to restored service; None while service is not restored."""
        return None if self.restored_at is None else self.restored_at - self.opened_at

    def as_json(self) -> dict[str, Any]:
        """The incident as plain JSON values."""
        restore = self.time_to_restore
        return {
            "id": self.id,
            "project": self.project,
            "environment": self.environment,
            "title": self.title,
            "status": self.status.value,
            "source": self.source.value,
            "caused_by_version": self.caused_by_version,
            "deployment": self.deployment_id,
            "restored_by_version": self.restored_by_version,
            "opened_at": self.opened_at.isoformat(),
            "restored_at": _iso(self.restored_at),
            "resolved_at": _iso(self.resolved_at),
            "time_to_restore_s": None if restore is None else restore.total_seconds(),
            "opened_by": self.opened_by,
            "resolved_by": self.resolved_by,
            "reason": self.reason,
            "resolution": self.resolution,
        }


def open(  # shadows the builtin here only; callers write incidents.open(...)
    conn: Connection,
    *,
    project: str,
    environment: str,
    title: str,
    reason: str,
    source: IncidentSource | str,
    actor: str,
    caused_by_version: str | None = None,
    deployment_id: int | None = None,
    opened_at: datetime | None = None,
) -> Incident:
    """Record a new open incident in the caller's transaction; announced as ``incident.opened``."""
    title = title.strip()
    _check_title(title)
    if not reason.strip():
        raise IncidentError(
            "an incident needs a reason: what happened",
            hint="say what failed, for example 'error_rate 0.031 > max 0.01 at step 2'",
        )
    kind = _source(source)
    _check_version(caused_by_version, "the version that caused it")
    if not project or not environment or not actor:
        raise ValueError("an incident needs a project, an environment and an actor")
    row = {
        "project": project,
        "environment": environment,
        "title": title,
        "status": IncidentStatus.OPEN.value,
        "source": kind.value,
        "caused_by_version": caused_by_version,
        "deployment_id": deployment_id,
        "restored_by_version": None,
        "opened_at": _moment(opened_at),
        "restored_at": None,
        "resolved_at": None,
        "opened_by": actor,
        "resolved_by": None,
        "reason": reason,
        "resolution": None,
    }
    key = conn.execute(incidents.insert().values(**row)).inserted_primary_key
    assert key is not None
    opened = _to_incident({"id": int(key[0]), **row})
    _announce(
        conn,
        opened,
        "incident.opened",
        actor,
        {
            "project": project,
            "environment": environment,
            "title": title,
            "source": kind.value,
            "caused_by_version": caused_by_version,
            "deployment": deployment_id,
            "reason": reason,
        },
    )
    return opened


def restored(
    conn: Connection, incident_id: int, *, version: str, actor: str, at: datetime | None = None
) -> Incident:
    """Record that service is back, running ``version``; announced as ``incident.restored``."""
    if not version.strip():
        raise IncidentError(
            "say which version restored the service",
            hint="name the release that runs now, for example 1.4.2",
        )
    _check_version(version, "the version that restored it")
    current = _get(conn, incident_id, for_update=True)
    if current.restored_at is not None:
        by = f" by {current.restored_by_version}" if current.restored_by_version else ""
        raise AlreadyRestored(
            f"incident {incident_id} is {current.status}: service was restored{by} at "
            f"{_when(current.restored_at)} already",
            hint=f"look at it with 'shipyard incident show {incident_id}'",
        )
    moment = _moment(at)
    _not_before(moment, current.opened_at, "restored", "opened", incident_id)
    conn.execute(
        update(incidents)
        .where(incidents.c.id == incident_id)
        .values(
            status=IncidentStatus.RESTORED.value, restored_by_version=version, restored_at=moment
        )
    )
    changed = _get(conn, incident_id)
    _announce(
        conn,
        changed,
        "incident.restored",
        actor,
        {
            "environment": changed.environment,
            "version": version,
            "restored_at": moment.isoformat(),
            "time_to_restore_s": _seconds(changed.time_to_restore),
        },
    )
    return changed


def resolve(
    conn: Connection, incident_id: int, *, actor: str, resolution: str, at: datetime | None = None
) -> Incident:
    """Close an incident with what was done; announced as ``incident.resolved``.

    An incident whose restoration was never recorded counts as restored when it is resolved.
    """
    if not resolution.strip():
        raise IncidentError(
            f"incident {incident_id} is resolved with a reason: what was done about it",
            hint=(
                f"shipyard incident resolve {incident_id} "
                "--reason 'rolled back to 1.4.1; the fix ships in 1.4.2'"
            ),
        )
    current = _get(conn, incident_id, for_update=True)
    if current.status is IncidentStatus.RESOLVED:
        raise AlreadyResolved(
            f"incident {incident_id} was resolved already, by {current.resolved_by} at "
            f"{_when(current.resolved_at)}",
            hint=(
                f"its resolution: {current.resolution}; if the problem is back, open a new "
                "incident with 'shipyard incident open'"
            ),
        )
    moment = _moment(at)
    if current.restored_at is not None:
        _not_before(moment, current.restored_at, "resolved", "restored", incident_id)
    else:
        _not_before(moment, current.opened_at, "resolved", "opened", incident_id)
    conn.execute(
        update(incidents)
        .where(incidents.c.id == incident_id)
        .values(
            status=IncidentStatus.RESOLVED.value,
            resolved_at=moment,
            resolved_by=actor,
            resolution=resolution,
            restored_at=current.restored_at or moment,
        )
    )
    changed = _get(conn, incident_id)
    _announce(
        conn,
        changed,
        "incident.resolved",
        actor,
        {
            "environment": changed.environment,
            "resolution": resolution,
            "resolved_at": moment.isoformat(),
            "restored_at": _iso(changed.restored_at),
            "time_to_restore_s": _seconds(changed.time_to_restore),
        },
    )
    return changed


def get(conn: Connection, incident_id: int) -> Incident:
    """The incident with this id; NotFoundError when there is none."""
    return _get(conn, incident_id)


def list_incidents(
    conn: Connection,
    *,
    project: str | None = None,
    environment: str | None = None,
    status: IncidentStatus | str | None = None,
    since: datetime | None = None,
) -> list[Incident]:
    """Incidents, newest first, optionally of one project, environment, status, or opened since."""
    query = select(incidents)
    if project is not None:
        query = query.where(incidents.c.project == project)
    if environment is not None:
        query = query.where(incidents.c.environment == environment)
    if status is not None:
        query = query.where(incidents.c.status == _status(status).value)
    if since is not None:
        query = query.where(incidents.c.opened_at >= since)
    return _newest_first(conn, query)


def for_deployment(conn: Connection, deployment_id: int) -> list[Incident]:
    """The incidents a deployment caused, newest first."""
    return _newest_first(conn, select(incidents).where(incidents.c.deployment_id == deployment_id))


def _newest_first(conn: Connection, query: Select[Any]) -> list[Incident]:
    rows = conn.execute(query.order_by(incidents.c.opened_at.desc(), incidents.c.id.desc()))
    return [_to_incident(row._mapping) for row in rows]


def _get(conn: Connection, incident_id: int, *, for_update: bool = False) -> Incident:
    query = select(incidents).where(incidents.c.id == incident_id)
    if for_update:  # PostgreSQL: two people resolving at once are served one after the other
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise NotFoundError(
            f"there is no incident {incident_id}",
            hint="list them with 'shipyard incident list'",
        )
    return _to_incident(row._mapping)


def _announce(
    conn: Connection, incident: Incident, action: str, actor: str, details: Mapping[str, Any]
) -> None:
    audit.append(conn, actor=actor, action=action, subject=incident.subject, details=details)
    outbox.append(conn, action, incident.subject, incident.as_json())


def _check_title(title: str) -> None:
    if not title:
        raise IncidentError(
            "an incident needs a title", hint="say in a few words what is wrong for users"
        )
    if len(title) > TITLE_LIMIT:
        raise IncidentError(
            f"the incident's title is {len(title)} characters long; at most {TITLE_LIMIT} fit",
            hint="keep the title short and put the details in the reason",
        )
    if not title.isprintable():
        raise IncidentError(
            "the incident's title must be one line of text (no line breaks, tabs or control "
            "characters)",
            hint="put the details in the reason",
        )


def _check_version(version: str | None, what: str) -> None:
    if version is not None and len(version) > _VERSION_LIMIT:
        raise IncidentError(
            f"{what} is {len(version)} characters long; a version has at most {_VERSION_LIMIT}",
            hint="give a release's version, for example 1.4.2",
        )


def _source(value: IncidentSource | str) -> IncidentSource:
    try:
        return IncidentSource(value)
    except ValueError:
        known = ", ".join(source.value for source in IncidentSource)
        raise ValueError(f"incident source {value!r} is not one of {known}") from None


def _status(value: IncidentStatus | str) -> IncidentStatus:
    try:
        return IncidentStatus(value)
    except ValueError:
        known = ", ".join(status.value for status in IncidentStatus)
        raise ArgumentError(
            f"{value!r} is not an incident status", hint=f"use one of {known}"
        ) from None


def _not_before(moment: datetime, earlier: datetime, done: str, before: str, number: int) -> None:
    if moment < earlier:
        raise IncidentError(
            f"incident {number} cannot be {done} at {_when(moment)}: it was {before} later, "
            f"at {_when(earlier)}",
            hint=f"give a time after {_when(earlier)}",
        )


def _moment(value: datetime | None) -> datetime:
    moment = value or datetime.now(UTC)
    if moment.tzinfo is None:
        raise ValueError("naive datetime given for an incident; use datetime.now(UTC)")
    return moment.astimezone(UTC)


def _when(value: datetime | None) -> str:
    return "an unknown time" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def _to_incident(row: Mapping[Any, Any]) -> Incident:
    return Incident(
        id=int(row["id"]),
        project=row["project"],
        environment=row["environment"],
        title=row["title"],
        status=IncidentStatus(row["status"]),
        source=IncidentSource(row["source"]),
        caused_by_version=row["caused_by_version"],
        deployment_id=None if row["deployment_id"] is None else int(row["deployment_id"]),
        restored_by_version=row["restored_by_version"],
        opened_at=row["opened_at"],
        restored_at=row["restored_at"],
        resolved_at=row["resolved_at"],
        opened_by=row["opened_by"],
        resolved_by=row["resolved_by"],
        reason=row["reason"],
        resolution=row["resolution"],
    )

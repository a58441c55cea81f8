"""Release records in the store: pending, then published (or failed), never edited after.

A version is never reused: a record keeps its version whatever happens to its tag. Every
transition is an audit event and an outbox event in the same transaction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError

from shipyard.core import audit, outbox
from shipyard.core.errors import NotFoundError, UserError, excerpt
from shipyard.core.store import Store
from shipyard.core.store.tables import releases

PENDING, PUBLISHED, FAILED = "pending", "published", "failed"


class VersionTaken(UserError):
    """A release of this version exists already (versions are never reused)."""


@dataclass(frozen=True)
class ReleaseRecord:
    """One release: what it is, where its bytes are, who made it and when."""

    id: int
    project: str
    version: str
    tag: str
    commit: str
    status: str
    run_id: int | None
    gate_run_id: int | None
    bundle: str
    artifacts: Mapping[str, str]
    sbom: str | None
    envelope: str | None
    key_id: str | None
    changelog: str
    config_digest: str
    actor: str
    created_at: datetime
    published_at: datetime | None
    message: str | None
    gate_results: str | None
    config_path: str

    @property
    def subject(self) -> str:
        """How audit events and outbox events name this release."""
        return f"release:{self.project}@{self.version}"

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "project": self.project,
            "version": self.version,
            "tag": self.tag,
            "commit": self.commit,
            "status": self.status,
            "run": self.run_id,
            "gate_run": self.gate_run_id,
            "bundle": self.bundle,
            "artifacts": dict(self.artifacts),
            "sbom": self.sbom,
            "envelope": self.envelope,
            "key_id": self.key_id,
            "changelog": self.changelog,
            "actor": self.actor,
            "created_at": self.created_at.isoformat(),
            "published_at": self.published_at.isoformat() if self.published_at else None,
            "message": self.message,
            "gate_results": self.gate_results,
        }


def create_pending(
    store: Store,
    *,
    project: str,
    version: str,
    tag: str,
    commit: str,
    run_id: int | None,
    gate_run_id: int | None,
    bundle: str,
    artifacts: Mapping[str, str],
    sbom: str | None,
    envelope: str | None,
    key_id: str | None,
    changelog: str,
    config_digest: str,
    config_path: str,
    gate_results: str | None,
    actor: str,
) -> ReleaseRecord:
    """Record a release whose blobs are stored but whose tag is not made yet."""
    try:
        with store.write() as conn:
            result = conn.execute(
                releases.insert().values(
                    project=project,
                    version=version,
                    tag=tag,
                    commit_sha=commit,
                    status=PENDING,
                    run_id=run_id,
                    gate_run_id=gate_run_id,
                    bundle=bundle,
                    artifacts=json.dumps(dict(artifacts), sort_keys=True),
                    sbom=sbom,
                    envelope=envelope,
                    key_id=key_id,
                    changelog=changelog,
                    config_digest=config_digest,
                    config_path=config_path,
                    gate_results=gate_results,
                    actor=actor,
                    created_at=datetime.now(UTC),
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            record = _get(conn, int(key[0]))
            details = {
                "version": version,
                "commit": commit,
                "tag": tag,
                "bundle": bundle,
                "run": run_id,
                "envelope": envelope,
                "key_id": key_id,
            }
            audit.append(
                conn, actor=actor, action="release.created", subject=record.subject, details=details
            )
            if envelope:
                audit.append(
                    conn,
                    actor=actor,
                    action="release.signed",
                    subject=record.subject,
                    details={"envelope": envelope, "key_id": key_id},
                )
            return record
    except IntegrityError as error:
        raise VersionTaken(
            f"{project} {version} was released before; a version is never reused",
            hint="make a new commit that bumps the version, or use 'Release-As:'",
        ) from error


def publish(store: Store, record: ReleaseRecord, *, actor: str) -> ReleaseRecord:
    """Mark a pending release as published (its tag exists)."""
    with store.write() as conn:
        conn.execute(
            update(releases)
            .where(releases.c.id == record.id, releases.c.status == PENDING)
            .values(status=PUBLISHED, published_at=datetime.now(UTC))
        )
        published = _get(conn, record.id)
        details = {
            "project": record.project,
            "version": record.version,
            "tag": record.tag,
            "commit": record.commit,
        }
        audit.append(
            conn, actor=actor, action="release.published", subject=record.subject, details=details
        )
        outbox.append(conn, "release.published", record.subject, details)
        return published


def fail(store: Store, record: ReleaseRecord, *, actor: str, message: str) -> ReleaseRecord:
    """Mark a pending release as failed (it can never be published; its version stays used)."""
    with store.write() as conn:
        conn.execute(
            update(releases)
            .where(releases.c.id == record.id, releases.c.status == PENDING)
            .values(status=FAILED, message=message)
        )
        audit.append(
            conn,
            actor=actor,
            action="release.failed",
            subject=record.subject,
            details={"version": record.version, "reason": message},
        )
        return _get(conn, record.id)


def tag_recorded(store: Store, record: ReleaseRecord, *, actor: str) -> None:
    """Audit that the release's tag was created."""
    with store.write() as conn:
        audit.append(
            conn,
            actor=actor,
            action="tag.created",
            subject=record.subject,
            details={"tag": record.tag, "commit": record.commit},
        )


def get(store: Store, project: str, version: str) -> ReleaseRecord:
    """The release of a version; NotFoundError names it when there is none."""
    with store.read() as conn:
        row = conn.execute(
            select(releases).where(releases.c.project == project, releases.c.version == version)
        ).first()
    if row is None:
        raise NotFoundError(
            f"{project} has no release {excerpt(version, quote=False)}",
            hint="list releases with 'shipyard releases list'",
        )
    return _to_record(row)


def all_of(store: Store, project: str, *, status: str | None = None) -> list[ReleaseRecord]:
    """The releases of a project, newest first."""
    query = select(releases).where(releases.c.project == project)
    if status is not None:
        query = query.where(releases.c.status == status)
    with store.read() as conn:
        return [_to_record(row) for row in conn.execute(query.order_by(releases.c.id.desc()))]


def _get(conn: Connection, release_id: int) -> ReleaseRecord:
    row = conn.execute(select(releases).where(releases.c.id == release_id)).first()
    assert row is not None
    return _to_record(row)


def _to_record(row: Any) -> ReleaseRecord:
    return ReleaseRecord(
        id=int(row.id),
        project=row.project,
        version=row.version,
        tag=row.tag,
        commit=row.commit_sha,
        status=row.status,
        run_id=row.run_id,
        gate_run_id=row.gate_run_id,
        bundle=row.bundle,
        artifacts=json.loads(row.artifacts),
        sbom=row.sbom,
        envelope=row.envelope,
        key_id=row.key_id,
        changelog=row.changelog,
        config_digest=row.config_digest,
        actor=row.actor,
        created_at=row.created_at,
        published_at=row.published_at,
        message=row.message,
        gate_results=row.gate_results,
        config_path=row.config_path,
    )

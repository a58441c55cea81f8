"""Every table of the store, in one SQLAlchemy ``MetaData``.

Pillars reach these tables through small repository functions (``core/audit.py``,
``core/outbox.py`` …), never by importing each other. Schema changes go through a migration in
``migrations/versions/``; this module must describe the schema the newest migration produces.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SCHEMA_HEAD = "0013"
"""The newest migration; a test keeps it equal to the head of ``migrations/versions``."""

metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {value!r}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


audit_events = Table(
    "audit_events",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
    ),
    Column("time", String(40), nullable=False),
    Column("actor", String(320), nullable=False),
    Column("action", String(100), nullable=False),
    Column("subject", String(400), nullable=False),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)
Index("ix_audit_events_subject", audit_events.c.subject)

outbox_events = Table(
    "outbox_events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("type", String(100), nullable=False),
    Column("subject", String(400), nullable=False),
    Column("payload", Text, nullable=False),
)
Index("ix_outbox_events_type", outbox_events.c.type)

outbox_deliveries = Table(
    "outbox_deliveries",
    metadata,
    Column("consumer", String(200), primary_key=True),
    Column("event_id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime(), nullable=True),
    Column("delivered_at", UTCDateTime(), nullable=True),
    Column("last_error", Text, nullable=True),
)


runs = Table(
    "runs",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("project", String(64), nullable=False),
    Column("commit_sha", String(64), nullable=False),
    Column("ref", String(400), nullable=False),
    Column("branch", String(400), nullable=True),
    Column("tag", String(400), nullable=True),
    Column("event", String(40), nullable=False),
    Column("status", String(20), nullable=False),
    Column("actor", String(320), nullable=False),
    Column("workspace", String(20), nullable=False),
    Column("config_digest", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("cancel_requested_at", UTCDateTime(), nullable=True),
    Column("driver_pid", Integer, nullable=True),
    Column("driver_host", String(255), nullable=True),
    Column("message", Text, nullable=True),
    Column("rerun_of", BigInteger, nullable=True),
    Column("superseded_by", BigInteger, nullable=True),
)
Index("ix_runs_commit_sha", runs.c.commit_sha)
Index("ix_runs_status", runs.c.status)

run_jobs = Table(
    "run_jobs",
    metadata,
    Column("run_id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("job_id", String(400), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("name", String(64), nullable=False),
    Column("spec", Text, nullable=False),
    Column("status", String(20), nullable=False),
    Column("reason", Text, nullable=True),
    Column("allow_failure", Boolean, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("cache_key", String(64), nullable=True),
    Column("cached", Boolean, nullable=False, default=False),
    Column("flaky", Boolean, nullable=False, default=False),
    Column("outputs", Text, nullable=False, default="{}"),
    Column("artifacts", String(71), nullable=True),
)

job_attempts = Table(
    "job_attempts",
    metadata,
    Column("run_id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("job_id", String(400), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("status", String(20), nullable=False),
    Column("exit_code", Integer, nullable=True),
    Column("failure_kind", String(20), nullable=True),
    Column("message", Text, nullable=True),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("log_path", Text, nullable=False),
    Column("log_bytes", BigInteger, nullable=False),
    Column("log_lines", Integer, nullable=False),
    Column("log_index", Text, nullable=False),
)

cache_entries = Table(
    "cache_entries",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("job_name", String(64), nullable=False),
    Column("run_id", BigInteger, nullable=False),
    Column("job_id", String(400), nullable=False),
    Column("artifacts", String(71), nullable=True),
    Column("log", String(71), nullable=False),
    Column("outputs", Text, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_used_at", UTCDateTime(), nullable=False),
)
Index("ix_cache_entries_last_used_at", cache_entries.c.last_used_at)


gate_runs = Table(
    "gate_runs",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("subject", String(400), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("project", String(64), nullable=False),
    Column("release", String(100), nullable=True),
    Column("environment", String(100), nullable=True),
    Column("commit_sha", String(64), nullable=True),
    Column("actor", String(320), nullable=False),
    Column("status", String(20), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=False),
)
Index("ix_gate_runs_subject", gate_runs.c.subject)

gate_results = Table(
    "gate_results",
    metadata,
    Column("run_id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("gate", String(64), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("summary", Text, nullable=False),
    Column("duration_s", Float, nullable=False),
    Column("findings", Text, nullable=False),
    Column("overridden_by", String(320), nullable=True),
    Column("override_reason", Text, nullable=True),
    Column("overridden_at", UTCDateTime(), nullable=True),
)

releases = Table(
    "releases",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("project", String(64), nullable=False),
    Column("version", String(100), nullable=False),
    Column("tag", String(200), nullable=False),
    Column("commit_sha", String(64), nullable=False),
    Column("status", String(20), nullable=False),
    Column("run_id", BigInteger, nullable=True),
    Column("gate_run_id", BigInteger, nullable=True),
    Column("bundle", String(71), nullable=False),
    Column("artifacts", Text, nullable=False),
    Column("sbom", String(71), nullable=True),
    Column("envelope", String(71), nullable=True),
    Column("key_id", String(64), nullable=True),
    Column("changelog", Text, nullable=False),
    Column("config_digest", String(64), nullable=False),
    Column("actor", String(320), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("published_at", UTCDateTime(), nullable=True),
    Column("message", Text, nullable=True),
    Column("gate_results", String(71), nullable=True),
    Column("config_path", Text, nullable=False, default=""),
    UniqueConstraint("project", "version", name="uq_releases_project_version"),
)

deployments = Table(
    "deployments",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("project", String(64), nullable=False),
    Column("environment", String(64), nullable=False),
    Column("version", String(100), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("strategy", String(40), nullable=False),
    Column("status", String(20), nullable=False),
    Column("previous_version", String(100), nullable=True),
    Column("settings", Text, nullable=False),
    Column("progress", Text, nullable=False),
    Column("requested_action", String(20), nullable=True),
    Column("lease_owner", String(200), nullable=True),
    Column("lease_expires_at", UTCDateTime(), nullable=True),
    Column("actor", String(320), nullable=False),
    Column("message", Text, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
)
Index("ix_deployments_environment", deployments.c.project, deployments.c.environment)

environment_state = Table(
    "environment_state",
    metadata,
    Column("project", String(64), primary_key=True),
    Column("environment", String(64), primary_key=True),
    Column("active_version", String(100), nullable=True),
    Column("active_deployment", BigInteger, nullable=True),
    Column("warm_version", String(100), nullable=True),
    Column("warm_deployment", BigInteger, nullable=True),
    Column("warm_until", UTCDateTime(), nullable=True),
    Column("instances", Text, nullable=False),
    Column("router", Text, nullable=False),
    Column("since", UTCDateTime(), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
)

measurements = Table(
    "measurements",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("deployment_id", BigInteger, nullable=False),
    Column("environment", String(64), nullable=False),
    Column("phase", String(40), nullable=False),
    Column("metric", String(64), nullable=False),
    Column("version", String(100), nullable=False),
    Column("baseline_version", String(100), nullable=True),
    Column("value", Float, nullable=True),
    Column("baseline_value", Float, nullable=True),
    Column("threshold", Text, nullable=False),
    Column("verdict", String(20), nullable=False),
    Column("reason", Text, nullable=False),
    Column("measured_at", UTCDateTime(), nullable=False),
    Column("evidence", Text, nullable=True),
)
Index("ix_measurements_deployment_id", measurements.c.deployment_id)

incidents = Table(
    "incidents",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("project", String(64), nullable=False),
    Column("environment", String(64), nullable=False),
    Column("title", String(200), nullable=False),
    Column("status", String(20), nullable=False),
    Column("source", String(20), nullable=False),
    Column("caused_by_version", String(100), nullable=True),
    Column("deployment_id", BigInteger, nullable=True),
    Column("restored_by_version", String(100), nullable=True),
    Column("opened_at", UTCDateTime(), nullable=False),
    Column("restored_at", UTCDateTime(), nullable=True),
    Column("resolved_at", UTCDateTime(), nullable=True),
    Column("opened_by", String(320), nullable=False),
    Column("resolved_by", String(320), nullable=True),
    Column("reason", Text, nullable=False),
    Column("resolution", Text, nullable=True),
)
Index("ix_incidents_environment", incidents.c.project, incidents.c.environment)
Index("ix_incidents_deployment_id", incidents.c.deployment_id)

approvals = Table(
    "approvals",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("deployment_id", BigInteger, nullable=False),
    Column("approver", String(320), nullable=False),
    Column("reason", Text, nullable=True),
    Column("approved_at", UTCDateTime(), nullable=False),
    Column("statement", Text, nullable=True),
    Column("signature", Text, nullable=True),
    Column("key_id", String(64), nullable=True),
    UniqueConstraint("deployment_id", "approver", name="uq_approvals_deployment_id"),
)

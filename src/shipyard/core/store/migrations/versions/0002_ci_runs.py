"""CI runs: runs, their jobs, and every attempt of a job with where its log lives.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time(name: str, *, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("commit_sha", sa.String(64), nullable=False),
        sa.Column("ref", sa.String(400), nullable=False),
        sa.Column("branch", sa.String(400), nullable=True),
        sa.Column("tag", sa.String(400), nullable=True),
        sa.Column("event", sa.String(40), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("actor", sa.String(320), nullable=False),
        sa.Column("workspace", sa.String(20), nullable=False),
        sa.Column("config_digest", sa.String(64), nullable=False),
        _time("created_at", nullable=False),
        _time("started_at"),
        _time("finished_at"),
        _time("cancel_requested_at"),
        sa.Column("driver_pid", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    op.create_index("ix_runs_commit_sha", "runs", ["commit_sha"])
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_table(
        "run_jobs",
        sa.Column("run_id", _id(), nullable=False),
        sa.Column("job_id", sa.String(400), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("allow_failure", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _time("started_at"),
        _time("finished_at"),
        sa.PrimaryKeyConstraint("run_id", "job_id", name="pk_run_jobs"),
    )
    op.create_table(
        "job_attempts",
        sa.Column("run_id", _id(), nullable=False),
        sa.Column("job_id", sa.String(400), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("failure_kind", sa.String(20), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        _time("started_at", nullable=False),
        _time("finished_at"),
        sa.Column("log_path", sa.Text(), nullable=False),
        sa.Column("log_bytes", sa.BigInteger(), nullable=False),
        sa.Column("log_lines", sa.Integer(), nullable=False),
        sa.Column("log_index", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "job_id", "attempt", name="pk_job_attempts"),
    )


def downgrade() -> None:
    op.drop_table("job_attempts")
    op.drop_table("run_jobs")
    op.drop_index("ix_runs_status", "runs")
    op.drop_index("ix_runs_commit_sha", "runs")
    op.drop_table("runs")

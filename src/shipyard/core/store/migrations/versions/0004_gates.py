"""Gates: each run of release gates or deploy checks, and every gate's result and override.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time(name: str, *, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "gate_runs",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("subject", sa.String(400), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("release", sa.String(100), nullable=True),
        sa.Column("environment", sa.String(100), nullable=True),
        sa.Column("commit_sha", sa.String(64), nullable=True),
        sa.Column("actor", sa.String(320), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        _time("started_at", nullable=False),
        _time("finished_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_gate_runs"),
    )
    op.create_index("ix_gate_runs_subject", "gate_runs", ["subject"])
    op.create_table(
        "gate_results",
        sa.Column("run_id", _id(), nullable=False),
        sa.Column("gate", sa.String(64), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("findings", sa.Text(), nullable=False),
        sa.Column("overridden_by", sa.String(320), nullable=True),
        sa.Column("override_reason", sa.Text(), nullable=True),
        _time("overridden_at"),
        sa.PrimaryKeyConstraint("run_id", "gate", name="pk_gate_results"),
    )


def downgrade() -> None:
    op.drop_table("gate_results")
    op.drop_index("ix_gate_runs_subject", "gate_runs")
    op.drop_table("gate_runs")

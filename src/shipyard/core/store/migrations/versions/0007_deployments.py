"""Deployments (a state machine with a lease) and what each environment is running.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _time(name: str, *, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
            autoincrement=True,
        ),
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("version", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("strategy", sa.String(40), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("previous_version", sa.String(100), nullable=True),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.Column("progress", sa.Text(), nullable=False),
        sa.Column("requested_action", sa.String(20), nullable=True),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        _time("lease_expires_at"),
        sa.Column("actor", sa.String(320), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        _time("created_at", nullable=False),
        _time("updated_at", nullable=False),
        _time("finished_at"),
        sa.PrimaryKeyConstraint("id", name="pk_deployments"),
    )
    op.create_index("ix_deployments_environment", "deployments", ["project", "environment"])
    op.create_table(
        "environment_state",
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("active_version", sa.String(100), nullable=True),
        sa.Column("active_deployment", sa.BigInteger(), nullable=True),
        sa.Column("warm_version", sa.String(100), nullable=True),
        sa.Column("warm_deployment", sa.BigInteger(), nullable=True),
        _time("warm_until"),
        sa.Column("instances", sa.Text(), nullable=False),
        sa.Column("router", sa.Text(), nullable=False),
        _time("since"),
        _time("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("project", "environment", name="pk_environment_state"),
    )


def downgrade() -> None:
    op.drop_table("environment_state")
    op.drop_index("ix_deployments_environment", "deployments")
    op.drop_table("deployments")

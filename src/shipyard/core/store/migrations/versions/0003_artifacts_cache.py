"""Artifacts, job outputs, the job cache, re-runs and flaky jobs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run_jobs") as batch:
        batch.add_column(sa.Column("cache_key", sa.String(64), nullable=True))
        batch.add_column(
            sa.Column("cached", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("flaky", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("outputs", sa.Text(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("artifacts", sa.String(64), nullable=True))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("rerun_of", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("superseded_by", sa.BigInteger(), nullable=True))
    op.create_table(
        "cache_entries",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("job_name", sa.String(64), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.String(400), nullable=False),
        sa.Column("artifacts", sa.String(64), nullable=True),
        sa.Column("log", sa.String(64), nullable=False),
        sa.Column("outputs", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_cache_entries"),
    )
    op.create_index("ix_cache_entries_last_used_at", "cache_entries", ["last_used_at"])


def downgrade() -> None:
    op.drop_index("ix_cache_entries_last_used_at", "cache_entries")
    op.drop_table("cache_entries")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("superseded_by")
        batch.drop_column("rerun_of")
    with op.batch_alter_table("run_jobs") as batch:
        for column in ("artifacts", "outputs", "flaky", "cached", "cache_key"):
            batch.drop_column(column)

"""Releases: the immutable record of each version, its bundle, artifacts and signature.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "releases",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
            autoincrement=True,
        ),
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("version", sa.String(100), nullable=False),
        sa.Column("tag", sa.String(200), nullable=False),
        sa.Column("commit_sha", sa.String(64), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.Column("gate_run_id", sa.BigInteger(), nullable=True),
        sa.Column("bundle", sa.String(71), nullable=False),
        sa.Column("artifacts", sa.Text(), nullable=False),
        sa.Column("sbom", sa.String(71), nullable=True),
        sa.Column("envelope", sa.String(71), nullable=True),
        sa.Column("key_id", sa.String(64), nullable=True),
        sa.Column("changelog", sa.Text(), nullable=False),
        sa.Column("config_digest", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_releases"),
        sa.UniqueConstraint("project", "version", name="uq_releases_project_version"),
    )


def downgrade() -> None:
    op.drop_table("releases")

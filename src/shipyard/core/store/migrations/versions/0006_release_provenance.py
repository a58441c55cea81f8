"""Releases keep the digest of their gate results and the path of their configuration.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("releases") as batch:
        batch.add_column(sa.Column("gate_results", sa.String(71), nullable=True))
        batch.add_column(sa.Column("config_path", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("releases") as batch:
        batch.drop_column("config_path")
        batch.drop_column("gate_results")

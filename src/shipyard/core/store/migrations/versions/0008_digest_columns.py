"""Blob digests in the job cache and job records take their whole ``sha256:<hex>`` form.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_DIGEST_COLUMNS = {
    "run_jobs": ("artifacts",),
    "cache_entries": ("artifacts", "log"),
}


def upgrade() -> None:
    for table, columns in _DIGEST_COLUMNS.items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.alter_column(column, type_=sa.String(71), existing_type=sa.String(64))


def downgrade() -> None:
    # Entries that hold a whole digest cannot be narrowed; they are a cache, so drop them.
    op.execute(sa.text("DELETE FROM cache_entries"))
    op.execute(sa.text("UPDATE run_jobs SET artifacts = NULL WHERE LENGTH(artifacts) > 64"))
    for table, columns in _DIGEST_COLUMNS.items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.alter_column(column, type_=sa.String(64), existing_type=sa.String(71))

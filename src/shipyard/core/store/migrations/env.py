"""Alembic environment: runs migrations on the connection the store hands over.

Never opens a connection of its own and reads no ``alembic.ini``; ``core.store`` drives it.
"""

from __future__ import annotations

from alembic import context

from shipyard.core.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()

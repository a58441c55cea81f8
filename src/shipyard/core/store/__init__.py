"""The store: every table in one schema, one Alembic chain, SQLite or PostgreSQL.

``open_store`` is how commands get a ready store: it creates the state directory if needed and
runs pending migrations under a lock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shipyard.core.store.engine import Revision, Store, parse_url, safe_url

if TYPE_CHECKING:
    from shipyard.core.state import StateDir

__all__ = ["Revision", "Store", "open_store", "parse_url", "safe_url"]


def open_store(state: StateDir, *, migrate: bool = True) -> Store:
    """The store of a state directory, migrated to the newest schema unless told otherwise."""
    state.ensure()
    store = Store(state.database_url(), lock_path=state.root / "migrate.lock")
    if migrate:
        store.ensure_schema()
    return store

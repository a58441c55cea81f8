"""The store: one synchronous SQLAlchemy engine over SQLite or PostgreSQL, and its migrations.

Writes are short transactions; on SQLite they begin with ``BEGIN IMMEDIATE`` so that writers
queue on the busy timeout instead of failing with "database is locked". Migrations run on first
use under a lock (a file lock for SQLite, an advisory lock for PostgreSQL). This module knows
no table but the ones Alembic keeps; repository functions live beside the domain they serve.
"""

from __future__ import annotations

import fcntl
import weakref
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError as SAArgumentError
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import QueuePool, StaticPool

from shipyard.core.errors import StoreError
from shipyard.core.store.tables import SCHEMA_HEAD

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_S = 60.0
_WRITE = "shipyard_write"
_MIGRATION_LOCK_KEY = zlib.crc32(b"shipyard.migrations")


@dataclass(frozen=True)
class Revision:
    """Where the schema stands: the applied revision and the newest one this code knows."""

    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        """Whether no migration is pending."""
        return self.current == self.head


def safe_url(url: URL | str) -> str:
    """The URL as text with any password hidden, fit for messages and logs."""
    parsed = make_url(url) if isinstance(url, str) else url
    return parsed.render_as_string(hide_password=True)


def parse_url(raw: str) -> URL:
    """Parse and check a database URL; only SQLite and PostgreSQL (psycopg 3) are supported."""
    try:
        url = make_url(raw)
    except SAArgumentError as exc:
        raise StoreError(
            "SHIPYARD_DATABASE_URL is not a database URL",
            hint="use postgresql+psycopg://USER@HOST:5432/DB or sqlite:///PATH",
        ) from exc
    backend = url.get_backend_name()
    if backend == "postgresql":
        if url.drivername != "postgresql+psycopg":
            url = url.set(drivername="postgresql+psycopg")
        return url
    if backend == "sqlite":
        return url
    raise StoreError(
        f"unsupported database {backend!r} in {safe_url(url)}",
        hint="use postgresql+psycopg://USER@HOST:5432/DB or sqlite:///PATH",
    )


class Store:
    """The database behind one state directory: transactions and migrations."""

    def __init__(self, url: URL | str, *, lock_path: Path | None = None) -> None:
        self.url = parse_url(url) if isinstance(url, str) else url
        self._lock_path = lock_path
        self.engine = self._create_engine()
        _ENGINES.add(self.engine)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def _create_engine(self) -> Engine:
        if self.url.get_backend_name() == "sqlite":
            database = self.url.database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            # A small pool: opening a SQLite connection (and its PRAGMAs) costs more than
            # most of the short transactions it would serve. In-memory databases need one.
            memory = not database or database == ":memory:"
            engine = create_engine(
                self.url,
                poolclass=StaticPool if memory else QueuePool,
                connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False},
                **({} if memory else {"pool_size": 4, "max_overflow": 8}),
            )
            event.listen(engine, "connect", _sqlite_on_connect)
            event.listen(engine, "begin", _sqlite_on_begin)
            return engine
        return create_engine(
            self.url,
            pool_pre_ping=True,
            pool_size=2,
            max_overflow=4,
            connect_args={"connect_timeout": 10},
        )

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction; commits on success, rolls back on any error."""
        with self._connect(write=True) as conn, conn.begin():
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only view in one transaction."""
        with self._connect(write=False) as conn, conn.begin():
            yield conn

    @contextmanager
    def _connect(self, *, write: bool) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                if write:
                    conn = conn.execution_options(**{_WRITE: True})
                yield conn
        except DBAPIError as exc:
            if exc.connection_invalidated or isinstance(exc, OperationalError):
                raise StoreError(
                    f"database {safe_url(self.url)}: {_first_line(exc.orig)}",
                    hint=_hint_for(self.url),
                ) from exc
            raise

    def revision(self) -> Revision:
        """The applied and the newest schema revision."""
        with self._connect(write=False) as conn:
            current = _applied_revision(conn)
        return Revision(current=current, head=SCHEMA_HEAD)

    def ensure_schema(self) -> Revision:
        """Run pending migrations under a lock so that concurrent first uses do not race."""
        before = self.revision()
        if before.up_to_date:
            return before
        if before.current is not None and not _known_revision(before.current):
            raise StoreError(
                f"the database is at schema revision {before.current}, "
                "which this version of Shipyard does not know",
                hint="upgrade Shipyard, or point SHIPYARD_DATABASE_URL at another database",
            )
        with self._migration_lock():
            return self._upgrade()

    def upgrade(self) -> tuple[Revision, Revision]:
        """Run pending migrations explicitly; returns the revisions before and after."""
        before = self.revision()
        with self._migration_lock():
            after = self._upgrade()
        return before, after

    def _upgrade(self) -> Revision:
        from alembic import command
        from alembic.config import Config as AlembicConfig
        from alembic.util.exc import CommandError

        try:
            with self.engine.connect() as conn:
                config = AlembicConfig()
                config.set_main_option("script_location", str(MIGRATIONS))
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
                conn.commit()
        except (SQLAlchemyError, CommandError) as exc:
            raise StoreError(
                f"migrating {safe_url(self.url)} failed: {_first_line(exc)}",
                hint="nothing was changed by the failed step; fix the cause and run "
                "'shipyard db upgrade'",
            ) from exc
        return self.revision()

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        if self.dialect == "postgresql":
            with self.engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK_KEY})
                    conn.commit()
            return
        lock_path = self._lock_path or _sqlite_lock_path(self.url)
        if lock_path is None:
            yield
            return
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with lock_path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()
"""The engines of every store made in this process and not yet collected (an engine lives in
reference cycles, so it outlives its store until a garbage collection)."""


def close_all() -> None:
    """Close the pooled connections of every store of this process (at its exit)."""
    for engine in list(_ENGINES):
        engine.dispose()


def _script_directory() -> ScriptDirectory:
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config)


def script_head() -> str | None:
    """The newest revision among the packaged migration scripts."""
    return _script_directory().get_current_head()


def _applied_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    value = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return None if value is None else str(value)


def _known_revision(revision: str) -> bool:
    from alembic.util.exc import CommandError

    try:
        return _script_directory().get_revision(revision) is not None
    except CommandError:
        return False


def _sqlite_lock_path(url: URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:":
        return None
    return Path(database + ".migrate.lock")


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control from the sqlite3 module so that we can say BEGIN IMMEDIATE.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get(_WRITE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _first_line(exc: object) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _hint_for(url: URL) -> str:
    if url.get_backend_name() == "postgresql":
        return "check that PostgreSQL is running and SHIPYARD_DATABASE_URL is right"
    return "check that the state directory is writable and not on a network filesystem"

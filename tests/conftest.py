"""Fixtures shared by the whole suite: real git repositories and real databases."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import hypothesis
import pytest
import sqlalchemy as sa

from support import git

# Property tests assert behaviour, never timings: a loaded machine is slow, not wrong.
hypothesis.settings.register_profile("shipyard", deadline=None)
hypothesis.settings.load_profile("shipyard")

POSTGRES_URL = os.environ.get(
    "SHIPYARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ada Author",
    "GIT_AUTHOR_EMAIL": "ada@example.com",
    "GIT_COMMITTER_NAME": "Ada Author",
    "GIT_COMMITTER_EMAIL": "ada@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never see the developer's Shipyard settings or global git configuration."""
    for name in (
        "SHIPYARD_HOME",
        "SHIPYARD_DATABASE_URL",
        "SHIPYARD_USER",
        "SHIPYARD_BLOBS",
        "SHIPYARD_DEBUG",
        "CI",
    ):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one commit on ``main``."""
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "ada@example.com")
    git(path, "config", "user.name", "Ada Author")
    (path / "README.md").write_text("hello\n")
    git(path, "add", "README.md")
    git(path, "commit", "-q", "-m", "chore: initial commit")
    return path


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@contextmanager
def fresh_postgres_database(template: str | None = None) -> Iterator[str]:
    """A new PostgreSQL database (dropped afterwards, connections and all); its URL. Empty, or
    a copy of the database named ``template`` (which nobody may be connected to)."""
    name = f"shipyard_test_{uuid.uuid4().hex[:12]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"{copy}'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.fail(f"PostgreSQL at {POSTGRES_URL} is not reachable: {exc}")
    url = sa.engine.make_url(POSTGRES_URL).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def migrated_postgres() -> Iterator[str]:
    """The name of a PostgreSQL database migrated once per test process, the template of the
    databases ``backends`` tests get: their schema without running every migration again (the
    migrations themselves are tested on empty databases, tests/core/test_store.py)."""
    from shipyard.core.store import Store

    with fresh_postgres_database() as url:
        store = Store(url)
        store.ensure_schema()
        store.dispose()  # a template database must have no one connected to it
        yield str(sa.engine.make_url(url).database)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Long end-to-end tests (marked ``slow``) run first: parallel workers then share out the
    short ones at the end instead of one worker starting a minute-long test last."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``backends`` run once per store backend (see ``store_backend``)."""
    if metafunc.definition.get_closest_marker("backends") is not None:
        metafunc.parametrize("store_backend", BACKENDS, indirect=True)


@pytest.fixture(autouse=True)
def store_backend(
    request: pytest.FixtureRequest, _isolated_environment: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The backend Shipyard's commands use: SQLite in the state directory, or, for a test
    marked ``backends``, also a fresh PostgreSQL database (with the schema) through
    SHIPYARD_DATABASE_URL."""
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        yield backend
        return
    template = request.getfixturevalue("migrated_postgres")
    with fresh_postgres_database(template) as url:
        monkeypatch.setenv("SHIPYARD_DATABASE_URL", url)
        yield backend
        monkeypatch.delenv("SHIPYARD_DATABASE_URL")
        _close_stores()


def _close_stores() -> None:
    from shipyard.core.store.engine import close_all

    close_all()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database on each backend: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state' / 'shipyard.db'}"
        return
    with fresh_postgres_database() as url:
        yield url

"""The audit chain: appends, verification, tampering of every kind, concurrent writers."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import BACKENDS, POSTGRES_URL, fresh_postgres_database
from shipyard.core import audit
from shipyard.core.errors import AuditChainBroken
from shipyard.core.store import Store


class _Migrated:
    """One database per backend migrated once for the module; each test gets a copy of it
    (a file copy, or a PostgreSQL database made from it as a template): a fresh database with
    the schema, without running every migration again."""

    def __init__(self, folder: Path, stack: ExitStack) -> None:
        self._folder = folder
        self._stack = stack
        self._urls: dict[str, str] = {}

    def template(self, backend: str) -> str:
        if backend not in self._urls:
            if backend == "sqlite":
                url = f"sqlite:///{self._folder / 'template.db'}"
            else:
                url = self._stack.enter_context(fresh_postgres_database())
            store = Store(url)
            store.ensure_schema()
            store.dispose()  # a template database must have no one connected to it
            self._urls[backend] = url
        return self._urls[backend]


@pytest.fixture(scope="module")
def _migrated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Migrated]:
    with ExitStack() as stack:
        yield _Migrated(tmp_path_factory.mktemp("audit-template"), stack)


@pytest.fixture(params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, _migrated: _Migrated
) -> Iterator[str]:
    """A fresh database with the schema, on each backend."""
    template = _migrated.template(request.param)
    if request.param == "sqlite":
        path = tmp_path / "state" / "shipyard.db"
        path.parent.mkdir(parents=True)
        shutil.copyfile(sa.engine.make_url(template).database or "", path)
        yield f"sqlite:///{path}"
        return
    name = f"shipyard_test_{uuid.uuid4().hex[:12]}"
    source = sa.engine.make_url(template).database
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{source}"'))
        yield sa.engine.make_url(template).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = Store(database_url)
    assert store.ensure_schema().up_to_date  # already: a copy of the migrated template
    yield store
    store.dispose()


def _fill(store: Store, count: int) -> None:
    for i in range(1, count + 1):
        with store.write() as conn:
            audit.append(
                conn,
                actor="ada@example.com",
                action="thing.changed",
                subject=f"thing:{i % 3}",
                details={"n": i, "note": "é ✓"},
            )


def _unguard(store: Store) -> None:
    """Drop the append-only triggers, as somebody with direct database access could."""
    with store.write() as conn:
        if store.dialect == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER audit_events_no_update")
            conn.exec_driver_sql("DROP TRIGGER audit_events_no_delete")
        else:
            conn.exec_driver_sql("DROP TRIGGER audit_events_append_only ON audit_events")


def _verify(store: Store, head: audit.ChainHead | None = None) -> audit.Verification:
    with store.read() as conn:
        return audit.verify(conn, head)


def test_an_untouched_log_verifies(store: Store) -> None:
    _fill(store, 10)
    result = _verify(store)
    assert result.events == 10
    assert result.head is not None and result.head.seq == 10
    with store.read() as conn:
        assert audit.head(conn) == result.head
        events = audit.events(conn)
    assert [e.seq for e in events] == list(range(1, 11))
    assert events[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))
    assert events[3].details_dict() == {"n": 4, "note": "é ✓"}


def test_an_empty_log_verifies(store: Store) -> None:
    assert _verify(store).events == 0


def test_events_filter_by_subject_and_prefix(store: Store) -> None:
    _fill(store, 9)
    with store.read() as conn:
        assert [e.seq for e in audit.events(conn, subject="thing:1")] == [1, 4, 7]
        assert len(audit.events(conn, subject="thing:*")) == 9
        assert audit.events(conn, subject="thing_*") == []


def test_the_database_refuses_updates_and_deletes(store: Store) -> None:
    _fill(store, 2)
    with pytest.raises(sa.exc.DBAPIError), store.write() as conn:
        conn.execute(sa.text("UPDATE audit_events SET actor = 'mallory' WHERE seq = 1"))
    with pytest.raises(sa.exc.DBAPIError), store.write() as conn:
        conn.execute(sa.text("DELETE FROM audit_events WHERE seq = 2"))
    assert _verify(store).events == 2


@pytest.mark.parametrize(
    "column, value",
    [
        ("actor", "mallory@example.com"),
        ("details", '{"n":5,"note":"forged"}'),
        ("time", "2020-01-01T00:00:00.000000+00:00"),
        ("action", "thing.approved"),
    ],
)
def test_an_edited_field_is_named(store: Store, column: str, value: str) -> None:
    _fill(store, 8)
    _unguard(store)
    with store.write() as conn:
        conn.execute(sa.text(f"UPDATE audit_events SET {column} = :v WHERE seq = 5"), {"v": value})
    with pytest.raises(AuditChainBroken, match="event 5 ") as caught:
        _verify(store)
    assert caught.value.seq == 5


def test_an_edited_event_with_recomputed_hash_breaks_the_next_link(store: Store) -> None:
    _fill(store, 8)
    _unguard(store)
    with store.read() as conn:
        fifth = audit.events(conn, after=4, limit=1)[0]
    forged_hash = audit.event_hash(
        5, fifth.time, "mallory", fifth.action, fifth.subject, fifth.details, fifth.prev_hash
    )
    with store.write() as conn:
        conn.execute(
            sa.text("UPDATE audit_events SET actor='mallory', hash=:h WHERE seq=5"),
            {"h": forged_hash},
        )
    with pytest.raises(AuditChainBroken) as caught:
        _verify(store)
    assert caught.value.seq == 6


def test_a_deleted_row_is_named(store: Store) -> None:
    _fill(store, 8)
    _unguard(store)
    with store.write() as conn:
        conn.execute(sa.text("DELETE FROM audit_events WHERE seq = 4"))
    with pytest.raises(AuditChainBroken, match="event 4 is missing") as caught:
        _verify(store)
    assert caught.value.seq == 4


def test_deleting_the_newest_rows_is_caught_by_an_exported_head(store: Store) -> None:
    _fill(store, 8)
    with store.read() as conn:
        exported = audit.head(conn)
    assert exported is not None
    assert _verify(store, exported).events == 8
    _unguard(store)
    with store.write() as conn:
        conn.execute(sa.text("DELETE FROM audit_events WHERE seq >= 7"))
    assert _verify(store).events == 6  # without the head, truncation is invisible
    with pytest.raises(AuditChainBroken, match=r"7\.\.8 are missing") as caught:
        _verify(store, exported)
    assert caught.value.seq == 7


def test_a_rewritten_log_does_not_match_the_exported_head(store: Store) -> None:
    _fill(store, 3)
    with store.read() as conn:
        exported = audit.head(conn)
    assert exported is not None
    forged = audit.ChainHead(seq=exported.seq, hash="f" * 64)
    with pytest.raises(AuditChainBroken, match="differs from the exported head"):
        _verify(store, forged)


def test_swapped_rows_are_named(store: Store) -> None:
    _fill(store, 8)
    _unguard(store)
    with store.write() as conn:
        conn.execute(sa.text("UPDATE audit_events SET seq = -3 WHERE seq = 3"))
        conn.execute(sa.text("UPDATE audit_events SET seq = 3 WHERE seq = 4"))
        conn.execute(sa.text("UPDATE audit_events SET seq = 4 WHERE seq = -3"))
    with pytest.raises(AuditChainBroken) as caught:
        _verify(store)
    assert caught.value.seq == 3


def test_a_forged_row_appended_is_named(store: Store) -> None:
    _fill(store, 5)
    with store.write() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO audit_events"
                " (seq, time, actor, action, subject, details, prev_hash, hash)"
                " VALUES (6, '2026-01-01T00:00:00.000000+00:00', 'mallory', 'release.approved',"
                " 'release:1.0.0', '{}', :prev, :hash)"
            ),
            {"prev": "a" * 64, "hash": "b" * 64},
        )
    with pytest.raises(AuditChainBroken) as caught:
        _verify(store)
    assert caught.value.seq == 6


def test_a_forged_row_inserted_in_the_middle_is_caught(store: Store) -> None:
    _fill(store, 6)
    _unguard(store)
    with store.read() as conn:
        third = audit.events(conn, after=2, limit=1)[0]
    with store.write() as conn:
        for seq in range(6, 3, -1):
            conn.execute(
                sa.text("UPDATE audit_events SET seq = seq + 1 WHERE seq = :s"), {"s": seq}
            )
        time = "2026-01-01T00:00:00.000000+00:00"
        forged = audit.event_hash(
            4, time, "mallory", "release.approved", "release:1.0.0", "{}", third.hash
        )
        conn.execute(
            sa.text(
                "INSERT INTO audit_events"
                " (seq, time, actor, action, subject, details, prev_hash, hash)"
                " VALUES (4, :t, 'mallory', 'release.approved', 'release:1.0.0', '{}', :p, :h)"
            ),
            {"t": time, "p": third.hash, "h": forged},
        )
    with pytest.raises(AuditChainBroken) as caught:
        _verify(store)
    assert caught.value.seq == 5


APPENDER = """
import sys
from shipyard.core import audit
from shipyard.core.store import Store

store = Store(sys.argv[1])
with store.read() as conn:
    audit.head(conn)
print("ready", flush=True)
sys.stdin.readline()  # all four start appending together
for i in range(int(sys.argv[3])):
    with store.write() as conn:
        audit.append(conn, actor=f"writer-{sys.argv[2]}", action="thing.changed",
                     subject=f"thing:{sys.argv[2]}", details={"i": i})
"""


def test_four_processes_appending_leave_one_chain(store: Store, tmp_path: Path) -> None:
    # Started together, 100 appends each overlap throughout: without the chain's lock three
    # of four PostgreSQL writers already fail at 50 each, on a duplicate sequence number.
    url = store.url.render_as_string(hide_password=False)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, url, str(n), "100"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    for proc in procs:
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert ready == "ready\n", ready + proc.communicate(timeout=600)[1]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    result = _verify(store)
    assert result.events == 400
    with store.read() as conn:
        for writer in range(4):
            assert len(audit.events(conn, subject=f"thing:{writer}")) == 100

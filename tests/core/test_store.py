"""The store on both backends: migrations on first use, under a lock, and write transactions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from shipyard.core.errors import StoreError
from shipyard.core.store import Store, parse_url, safe_url
from shipyard.core.store.engine import script_head
from shipyard.core.store.tables import SCHEMA_HEAD


def test_the_schema_head_constant_matches_the_migration_scripts() -> None:
    assert script_head() == SCHEMA_HEAD


def test_first_use_migrates_to_head(database_url: str) -> None:
    store = Store(database_url)
    before = store.revision()
    assert before.current is None
    after = store.ensure_schema()
    assert after.up_to_date
    assert after.current == after.head
    names = set(sa.inspect(store.engine).get_table_names())
    assert {"audit_events", "outbox_events", "outbox_deliveries"} <= names
    store.dispose()


def test_upgrade_twice_changes_nothing(database_url: str) -> None:
    store = Store(database_url)
    first_before, first_after = store.upgrade()
    second_before, second_after = store.upgrade()
    assert first_before.current is None
    assert second_before.current == second_after.current == first_after.current
    store.dispose()


def test_concurrent_first_use_migrates_once(database_url: str, tmp_path: Path) -> None:
    script = (
        "import sys\nfrom shipyard.core.store import Store\nStore(sys.argv[1]).ensure_schema()\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, database_url], stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    assert Store(database_url).revision().up_to_date


def test_a_failed_write_leaves_nothing(database_url: str) -> None:
    store = Store(database_url)
    store.ensure_schema()
    from shipyard.core import outbox

    with pytest.raises(RuntimeError), store.write() as conn:
        outbox.append(conn, "test.happened", "thing:1")
        raise RuntimeError("boom")
    with store.read() as conn:
        assert outbox.read(conn) == []
    store.dispose()


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.ensure_schema()
    with store.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000


def test_unknown_future_revision_is_refused(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.ensure_schema()
    with store.write() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'zz99'"))
    with pytest.raises(StoreError, match="does not know"):
        store.ensure_schema()


@pytest.mark.parametrize("raw", ["mysql://u@h/db", "not a url"])
def test_unsupported_urls_are_refused(raw: str) -> None:
    with pytest.raises(StoreError):
        parse_url(raw)


def test_passwords_never_appear_in_rendered_urls() -> None:
    assert "s3cret-value" not in safe_url("postgresql+psycopg://u:s3cret-value@h/db")


def test_unreachable_postgres_is_a_clear_error() -> None:
    store = Store("postgresql+psycopg://postgres:hunter22@127.0.0.1:1/nothing")
    with pytest.raises(StoreError) as caught:
        store.revision()
    assert "127.0.0.1:1" in str(caught.value)
    assert "hunter22" not in str(caught.value)


DIGEST = "sha256:" + "ab" * 32


def _cache_entry(key: str) -> dict[str, object]:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return {
        "key": key,
        "job_name": "build",
        "run_id": 1,
        "job_id": "build",
        "artifacts": DIGEST,
        "log": DIGEST,
        "outputs": "{}",
        "size_bytes": 10,
        "created_at": now,
        "last_used_at": now,
    }


def test_blob_digests_fit_the_cache_and_job_columns(database_url: str) -> None:
    from shipyard.core.store.tables import cache_entries, run_jobs

    store = Store(database_url)
    store.ensure_schema()
    job = {"run_id": 1, "job_id": "build", "position": 0, "name": "build", "spec": "{}"}
    job |= {"status": "succeeded", "allow_failure": False, "attempts": 1, "artifacts": DIGEST}
    with store.write() as conn:
        conn.execute(sa.insert(cache_entries).values(**_cache_entry("f" * 64)))
        conn.execute(sa.insert(run_jobs).values(**job))
    with store.read() as conn:
        entry = conn.execute(sa.select(cache_entries)).one()
        stored_job = conn.execute(sa.select(run_jobs)).one()
    assert (entry.artifacts, entry.log, stored_job.artifacts) == (DIGEST, DIGEST, DIGEST)
    store.dispose()


def test_widening_the_digest_columns_keeps_existing_cache_entries(database_url: str) -> None:
    from alembic import command
    from alembic.config import Config as AlembicConfig

    from shipyard.core.store.engine import MIGRATIONS

    store = Store(database_url)
    with store.engine.connect() as conn:
        config = AlembicConfig()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = conn
        command.upgrade(config, "0007")
        conn.commit()
    short = _cache_entry("e" * 64) | {"artifacts": None, "log": "a" * 64}
    with store.write() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO cache_entries VALUES (:key, :job_name, :run_id, "
                ":job_id, :artifacts, :log, :outputs, :size_bytes, :created_at, "
                ":last_used_at)"
            ),
            short,
        )
    assert store.ensure_schema().up_to_date
    with store.read() as conn:
        rows = conn.execute(sa.text("SELECT key, artifacts, log FROM cache_entries")).all()
    assert [tuple(row) for row in rows] == [("e" * 64, None, "a" * 64)]
    store.dispose()

"""The outbox: events appended with their change, delivered per consumer, retried with backoff."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from shipyard.core import audit, outbox
from shipyard.core.store import Store


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = Store(database_url)
    store.ensure_schema()
    yield store
    store.dispose()


def test_events_are_read_in_order_and_by_type(store: Store) -> None:
    with store.write() as conn:
        first = outbox.append(conn, "deployment.started", "deployment:1", {"env": "staging"})
        outbox.append(conn, "gate.failed", "release:1.0.0", {"gate": "secrets"})
        outbox.append(conn, "deployment.rolled_back", "deployment:1")
    with store.read() as conn:
        everything = outbox.read(conn)
        deployments = outbox.read(conn, types=["deployment.*"])
        after_first = outbox.read(conn, after=first)
    assert [e.type for e in everything] == [
        "deployment.started",
        "gate.failed",
        "deployment.rolled_back",
    ]
    assert everything[0].payload == {"env": "staging"}
    assert [e.type for e in deployments] == ["deployment.started", "deployment.rolled_back"]
    assert len(after_first) == 2


def test_an_event_and_its_audit_record_commit_together(store: Store) -> None:
    with pytest.raises(RuntimeError), store.write() as conn:
        outbox.append(conn, "release.published", "release:1.0.0")
        audit.append(conn, actor="ada", action="release.published", subject="release:1.0.0")
        raise RuntimeError("crash before commit")
    with store.read() as conn:
        assert outbox.read(conn) == []
        assert audit.events(conn) == []


def test_delivery_is_per_consumer_and_failures_back_off(store: Store) -> None:
    with store.write() as conn:
        event_id = outbox.append(conn, "deployment.rolled_back", "deployment:7")
    with store.write() as conn:
        assert [e.id for e in outbox.pending(conn, "slack")] == [event_id]
        due = outbox.mark_failed(
            conn, "slack", event_id, "HTTP 503", base_delay=timedelta(seconds=30)
        )
        outbox.mark_delivered(conn, "dora", event_id)
    with store.read() as conn:
        assert outbox.pending(conn, "slack") == []
        assert outbox.pending(conn, "dora") == []
        later = outbox.pending(conn, "slack", now=due + timedelta(seconds=1))
        assert [e.id for e in later] == [event_id]
    with store.write() as conn:
        second_due = outbox.mark_failed(
            conn, "slack", event_id, "HTTP 503", base_delay=timedelta(seconds=30)
        )
    assert second_due - datetime.now(UTC) > timedelta(seconds=50)
    with store.write() as conn:
        outbox.mark_delivered(conn, "slack", event_id)
    with store.read() as conn:
        assert outbox.pending(conn, "slack", now=datetime.now(UTC) + timedelta(days=1)) == []


def test_malformed_event_types_are_refused(store: Store) -> None:
    with store.write() as conn, pytest.raises(ValueError, match="must look like"):
        outbox.append(conn, "Deployment Started", "deployment:1")

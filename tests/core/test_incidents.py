"""Incidents: opened, restored and resolved in the caller's transaction, each change audited and
announced there too, read back by environment, status and deployment, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shipyard.core import audit, incidents, outbox
from shipyard.core.errors import NotFoundError, UserError
from shipyard.core.incidents import Incident, IncidentSource, IncidentStatus
from shipyard.core.store import Store

START = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)
BOT = "shipyard-agent"
ADA = "ada@example.com"


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = Store(database_url)
    store.ensure_schema()
    yield store
    store.dispose()


def _open(store: Store, **changes: Any) -> Incident:
    values: dict[str, Any] = {
        "project": "shop",
        "environment": "production",
        "title": "Checkout errors after 1.4.0",
        "reason": "error_rate 0.031 > max 0.01 at step 2 (10%)",
        "source": IncidentSource.ANALYSIS,
        "actor": BOT,
        "caused_by_version": "1.4.0",
        "deployment_id": 7,
        "opened_at": START,
    }
    values.update(changes)
    with store.write() as conn:
        return incidents.open(conn, **values)


def _stored(store: Store, incident_id: int) -> Incident:
    with store.read() as conn:
        return incidents.get(conn, incident_id)


def _events(store: Store, incident_id: int) -> tuple[list[str], list[outbox.OutboxEvent]]:
    with store.read() as conn:
        audited = [e.action for e in audit.events(conn, subject=f"incident:{incident_id}")]
        announced = [
            e
            for e in outbox.read(conn, types=["incident.*"])
            if e.subject == f"incident:{incident_id}"
        ]
    return audited, announced


def test_an_opened_incident_is_stored_audited_and_announced(store: Store) -> None:
    opened = _open(store)
    assert opened == _stored(store, opened.id)
    assert opened.status is IncidentStatus.OPEN
    assert (opened.project, opened.environment, opened.source) == (
        "shop",
        "production",
        IncidentSource.ANALYSIS,
    )
    assert (opened.caused_by_version, opened.deployment_id, opened.opened_by) == ("1.4.0", 7, BOT)
    assert opened.opened_at == START
    assert (opened.restored_at, opened.resolved_at, opened.time_to_restore) == (None, None, None)
    audited, announced = _events(store, opened.id)
    assert audited == ["incident.opened"]
    [event] = announced
    assert event.type == "incident.opened"
    assert event.payload == opened.as_json()
    assert event.payload["reason"] == "error_rate 0.031 > max 0.01 at step 2 (10%)"
    with store.read() as conn:
        [entry] = audit.events(conn, subject=f"incident:{opened.id}")
    assert entry.actor == BOT
    assert entry.details_dict()["title"] == "Checkout errors after 1.4.0"


def test_a_transaction_that_fails_leaves_no_incident_no_audit_entry_and_no_event(
    store: Store,
) -> None:
    with pytest.raises(RuntimeError, match="the caller's next step failed"), store.write() as conn:
        incidents.open(
            conn,
            project="shop",
            environment="production",
            title="Checkout errors",
            reason="error_rate too high",
            source="watch",
            actor=BOT,
        )
        raise RuntimeError("the caller's next step failed")
    with store.read() as conn:
        assert incidents.list_incidents(conn) == []
        assert audit.events(conn) == []
        assert outbox.read(conn) == []


def test_restored_records_the_release_and_the_time_service_came_back(store: Store) -> None:
    opened = _open(store)
    with store.write() as conn:
        back = incidents.restored(
            conn, opened.id, version="1.3.2", actor=BOT, at=START + timedelta(minutes=4)
        )
    assert back == _stored(store, opened.id)
    assert back.status is IncidentStatus.RESTORED
    assert (back.restored_by_version, back.restored_at) == ("1.3.2", START + timedelta(minutes=4))
    assert back.time_to_restore == timedelta(minutes=4)
    assert back.as_json()["time_to_restore_s"] == 240.0
    audited, announced = _events(store, opened.id)
    assert audited == ["incident.opened", "incident.restored"]
    assert announced[-1].type == "incident.restored"
    assert announced[-1].payload["restored_by_version"] == "1.3.2"


def test_restoring_twice_is_refused_and_keeps_the_first_restoration(store: Store) -> None:
    opened = _open(store)
    with store.write() as conn:
        incidents.restored(conn, opened.id, version="1.3.2", actor=BOT, at=START.replace(minute=4))
    with pytest.raises(incidents.AlreadyRestored) as caught, store.write() as conn:
        incidents.restored(conn, opened.id, version="1.3.3", actor=ADA)
    assert str(caught.value).startswith(
        f"incident {opened.id} is restored: service was restored by 1.3.2 at "
        "2025-06-02 09:04:00 UTC already"
    )
    assert _stored(store, opened.id).restored_by_version == "1.3.2"
    assert _events(store, opened.id)[0] == ["incident.opened", "incident.restored"]


def test_resolving_an_incident_never_restored_counts_it_restored_then(store: Store) -> None:
    opened = _open(store)
    later = START + timedelta(hours=1, minutes=30)
    with store.write() as conn:
        closed = incidents.resolve(
            conn, opened.id, actor=ADA, resolution="rolled back by hand; fixed in 1.4.1", at=later
        )
    assert closed == _stored(store, opened.id)
    assert closed.status is IncidentStatus.RESOLVED
    assert (closed.resolved_at, closed.restored_at, closed.resolved_by) == (later, later, ADA)
    assert closed.restored_by_version is None
    assert closed.resolution == "rolled back by hand; fixed in 1.4.1"
    assert closed.time_to_restore == timedelta(hours=1, minutes=30)
    audited, announced = _events(store, opened.id)
    assert audited == ["incident.opened", "incident.resolved"]
    assert announced[-1].payload["status"] == "resolved"


def test_resolving_a_restored_incident_keeps_when_service_came_back(store: Store) -> None:
    opened = _open(store)
    with store.write() as conn:
        incidents.restored(conn, opened.id, version="1.3.2", actor=BOT, at=START.replace(minute=2))
        closed = incidents.resolve(conn, opened.id, actor=ADA, resolution="fixed in 1.4.1")
    assert closed.restored_at == START.replace(minute=2)
    assert closed.restored_by_version == "1.3.2"
    assert closed.resolved_at is not None
    assert closed.resolved_at > closed.restored_at


def test_resolving_twice_says_when_and_by_whom_it_was_resolved(store: Store) -> None:
    opened = _open(store)
    with store.write() as conn:
        incidents.resolve(conn, opened.id, actor=ADA, resolution="fixed", at=START.replace(hour=10))
    with pytest.raises(incidents.AlreadyResolved) as caught, store.write() as conn:
        incidents.resolve(conn, opened.id, actor="bob@example.com", resolution="fixed again")
    assert isinstance(caught.value, UserError)
    assert caught.value.message == (
        f"incident {opened.id} was resolved already, by {ADA} at 2025-06-02 10:00:00 UTC"
    )
    assert caught.value.hint == (
        "its resolution: fixed; if the problem is back, open a new incident with "
        "'shipyard incident open'"
    )
    assert _stored(store, opened.id).resolution == "fixed"
    with pytest.raises(incidents.AlreadyRestored), store.write() as conn:
        incidents.restored(conn, opened.id, version="1.4.1", actor=BOT)


@pytest.mark.parametrize("action", ["get", "restored", "resolve"])
def test_an_unknown_incident_is_not_found_with_a_hint(store: Store, action: str) -> None:
    with pytest.raises(NotFoundError) as caught, store.write() as conn:
        if action == "get":
            incidents.get(conn, 42)
        elif action == "restored":
            incidents.restored(conn, 42, version="1.0.0", actor=BOT)
        else:
            incidents.resolve(conn, 42, actor=ADA, resolution="done")
    assert caught.value.message == "there is no incident 42"
    assert caught.value.hint == "list them with 'shipyard incident list'"


def test_incidents_are_listed_newest_first_and_filtered(store: Store) -> None:
    old = _open(store, opened_at=START, deployment_id=7)
    staging = _open(store, environment="staging", opened_at=START + timedelta(hours=1))
    other = _open(store, project="billing", opened_at=START + timedelta(hours=2))
    newest = _open(
        store,
        opened_at=START + timedelta(hours=3),
        deployment_id=None,
        caused_by_version=None,
        source="manual",
    )
    with store.write() as conn:
        incidents.restored(conn, old.id, version="1.3.2", actor=BOT, at=START.replace(minute=5))
    with store.read() as conn:

        def ids(**filters: Any) -> list[int]:
            return [i.id for i in incidents.list_incidents(conn, **filters)]

        assert ids() == [newest.id, other.id, staging.id, old.id]
        assert ids(project="shop") == [newest.id, staging.id, old.id]
        assert ids(project="shop", environment="production") == [newest.id, old.id]
        assert ids(status="open") == [newest.id, other.id, staging.id]
        assert ids(status=IncidentStatus.RESTORED) == [old.id]
        assert ids(status="resolved") == []
        assert ids(since=START + timedelta(hours=1)) == [newest.id, other.id, staging.id]
        assert [i.id for i in incidents.for_deployment(conn, 7)] == [other.id, staging.id, old.id]
        assert incidents.for_deployment(conn, 8) == []
        with pytest.raises(UserError, match="'closed' is not an incident status") as caught:
            incidents.list_incidents(conn, status="closed")
    assert caught.value.hint == "use one of open, restored, resolved"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"title": "  "}, "an incident needs a title"),
        ({"title": "x" * 201}, "the incident's title is 201 characters long; at most 200 fit"),
        ({"title": "first line\nsecond line"}, "the incident's title must be one line of text"),
        ({"reason": ""}, "an incident needs a reason: what happened"),
        ({"caused_by_version": "1" * 101}, "the version that caused it is 101 characters long"),
    ],
)
def test_a_malformed_incident_is_refused_and_nothing_is_stored(
    store: Store, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(incidents.IncidentError) as caught:
        _open(store, **changes)
    assert caught.value.message.startswith(message)
    assert caught.value.hint
    with store.read() as conn:
        assert incidents.list_incidents(conn) == []
        assert audit.events(conn) == []


def test_an_unknown_source_is_a_programming_error(store: Store) -> None:
    with pytest.raises(ValueError, match="incident source 'pager' is not one of analysis, watch"):
        _open(store, source="pager")


def test_times_that_run_backwards_and_empty_answers_are_refused(store: Store) -> None:
    opened = _open(store)
    with pytest.raises(incidents.IncidentError) as early, store.write() as conn:
        incidents.restored(
            conn, opened.id, version="1.3.2", actor=BOT, at=START - timedelta(minutes=1)
        )
    assert early.value.message == (
        f"incident {opened.id} cannot be restored at 2025-06-02 08:59:00 UTC: it was opened "
        "later, at 2025-06-02 09:00:00 UTC"
    )
    with pytest.raises(incidents.IncidentError, match="say which version"), store.write() as conn:
        incidents.restored(conn, opened.id, version=" ", actor=BOT)
    with pytest.raises(incidents.IncidentError) as empty, store.write() as conn:
        incidents.resolve(conn, opened.id, actor=ADA, resolution="")
    assert empty.value.message == (
        f"incident {opened.id} is resolved with a reason: what was done about it"
    )
    assert _stored(store, opened.id) == opened

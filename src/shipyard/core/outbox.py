"""The event outbox: typed events every pillar appends in the same transaction as its change.

Consumers (notifiers, DORA) read the outbox and record their own deliveries, so an event is
delivered to each consumer at least once and a failed delivery is retried with backoff. This
module stores and hands out events; it never sends anything itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, or_, select

from shipyard.core.store.tables import outbox_deliveries, outbox_events

_TYPE = re.compile(r"^[a-z][a-z_]*(\.[a-z][a-z_]*)+$")
_MAX_BACKOFF = timedelta(hours=1)


@dataclass(frozen=True)
class OutboxEvent:
    """One durable event: its type (``deployment.rolled_back``), subject and payload."""

    id: int
    created_at: datetime
    type: str
    subject: str
    payload: Mapping[str, Any]


def append(
    conn: Connection, type: str, subject: str, payload: Mapping[str, Any] | None = None
) -> int:
    """Append an event in the caller's transaction; returns its id."""
    if not _TYPE.match(type):
        raise ValueError(f"event type {type!r} must look like 'noun.verb_past'")
    result = conn.execute(
        outbox_events.insert().values(
            created_at=datetime.now(UTC),
            type=type,
            subject=subject,
            payload=json.dumps(dict(payload or {}), sort_keys=True, ensure_ascii=False),
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def read(
    conn: Connection, *, after: int = 0, types: Sequence[str] | None = None, limit: int = 500
) -> list[OutboxEvent]:
    """Events after an id, oldest first, optionally of some types (``prefix.*`` allowed)."""
    query = select(outbox_events).where(outbox_events.c.id > after)
    if types:
        query = query.where(or_(*(_type_clause(t) for t in types)))
    rows = conn.execute(query.order_by(outbox_events.c.id).limit(limit))
    return [_to_event(row) for row in rows]


def pending(
    conn: Connection,
    consumer: str,
    *,
    types: Sequence[str] | None = None,
    limit: int = 100,
    now: datetime | None = None,
) -> list[OutboxEvent]:
    """Events not yet delivered to ``consumer`` whose next attempt is due."""
    moment = now or datetime.now(UTC)
    joined = outbox_events.outerjoin(
        outbox_deliveries,
        and_(
            outbox_deliveries.c.event_id == outbox_events.c.id,
            outbox_deliveries.c.consumer == consumer,
        ),
    )
    query = (
        select(outbox_events)
        .select_from(joined)
        .where(
            outbox_deliveries.c.delivered_at.is_(None),
            or_(
                outbox_deliveries.c.next_attempt_at.is_(None),
                outbox_deliveries.c.next_attempt_at <= moment,
            ),
        )
    )
    if types:
        query = query.where(or_(*(_type_clause(t) for t in types)))
    rows = conn.execute(query.order_by(outbox_events.c.id).limit(limit))
    return [_to_event(row) for row in rows]


def mark_delivered(conn: Connection, consumer: str, event_id: int) -> None:
    """Record that ``consumer`` has handled the event."""
    _upsert(
        conn,
        consumer,
        event_id,
        delivered_at=datetime.now(UTC),
        last_error=None,
        next_attempt_at=None,
    )


def mark_failed(
    conn: Connection,
    consumer: str,
    event_id: int,
    error: str,
    *,
    base_delay: timedelta = timedelta(seconds=5),
) -> datetime:
    """Record a failed delivery; returns when the next attempt is due (exponential backoff)."""
    row = conn.execute(
        select(outbox_deliveries.c.attempts).where(
            outbox_deliveries.c.consumer == consumer,
            outbox_deliveries.c.event_id == event_id,
        )
    ).first()
    attempts = (int(row.attempts) if row else 0) + 1
    delay = min(base_delay * (1 << min(attempts - 1, 20)), _MAX_BACKOFF)
    due = datetime.now(UTC) + delay
    _upsert(
        conn,
        consumer,
        event_id,
        delivered_at=None,
        last_error=error[:2000],
        next_attempt_at=due,
        attempts=attempts,
    )
    return due


def _upsert(
    conn: Connection, consumer: str, event_id: int, *, attempts: int | None = None, **values: Any
) -> None:
    # Imported here: the dialect modules cost start-up time every command would pay.
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    row = {"consumer": consumer, "event_id": event_id, "attempts": attempts or 0, **values}
    statement = dialect.insert(outbox_deliveries).values(**row)
    update = dict(values)
    if attempts is not None:
        update["attempts"] = attempts
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["consumer", "event_id"],
            set_=update,
        )
    )


def _type_clause(pattern: str) -> Any:
    if pattern.endswith(".*"):
        return outbox_events.c.type.startswith(pattern[:-1], autoescape=True)
    return outbox_events.c.type == pattern


def _to_event(row: Any) -> OutboxEvent:
    return OutboxEvent(
        id=int(row.id),
        created_at=row.created_at,
        type=str(row.type),
        subject=str(row.subject),
        payload=json.loads(row.payload),
    )

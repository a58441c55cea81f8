"""The audit log: an append-only, hash-chained record of every state-changing action.

Each event carries a gapless sequence number and the hash of its predecessor, and is appended
in the same transaction as the change it records. Nothing here updates or deletes an event;
``verify`` finds the first event that was edited, removed, inserted or reordered, and an
exported head makes removal of the newest events detectable too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select, text

from shipyard.core.errors import AuditChainBroken, UserError
from shipyard.core.store.tables import audit_events

GENESIS = "0" * 64
_BATCH = 1000
_POSTGRES_CHAIN_LOCK = 0x5348_4950  # serialises appends; the key is arbitrary but fixed


@dataclass(frozen=True)
class AuditEvent:
    """One recorded action: who did what to which subject, when, chained by hash."""

    seq: int
    time: str
    actor: str
    action: str
    subject: str
    details: str
    prev_hash: str
    hash: str

    def details_dict(self) -> dict[str, Any]:
        """The details as a mapping (they are stored as canonical JSON)."""
        value = json.loads(self.details)
        return value if isinstance(value, dict) else {"value": value}

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form, details expanded."""
        return {
            "seq": self.seq,
            "time": self.time,
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "details": self.details_dict(),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True)
class ChainHead:
    """The newest event's sequence number and hash, exportable to detect truncation."""

    seq: int
    hash: str

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {"seq": self.seq, "hash": self.hash}

    @classmethod
    def load(cls, path: Path) -> ChainHead:
        """Read a head exported by ``shipyard audit head --json``."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            seq, digest = raw["seq"], raw["hash"]
        except OSError as exc:
            raise UserError(f"cannot read the audit head {path}: {exc.strerror}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(
                f"{path} is not an exported audit head",
                hint="export one with 'shipyard audit head --json > FILE'",
            ) from exc
        if not isinstance(seq, int) or not isinstance(digest, str) or len(digest) != 64:
            raise UserError(f"{path}: 'seq' must be an integer and 'hash' 64 hex digits")
        return cls(seq=seq, hash=digest)


@dataclass(frozen=True)
class Verification:
    """What ``verify`` checked: how many events, and the head it ended on."""

    events: int
    head: ChainHead | None


def canonical_json(value: Any) -> str:
    """The one JSON form used for hashing: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def event_hash(
    seq: int, time: str, actor: str, action: str, subject: str, details: str, prev_hash: str
) -> str:
    """The hash of an event: SHA-256 over the canonical JSON of all its fields."""
    body = canonical_json(
        {
            "seq": seq,
            "time": time,
            "actor": actor,
            "action": action,
            "subject": subject,
            "details": details,
            "prev_hash": prev_hash,
        }
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def append(
    conn: Connection,
    *,
    actor: str,
    action: str,
    subject: str,
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append an event in the caller's write transaction and return it."""
    if not action or not subject or not actor:
        raise ValueError("an audit event needs an actor, an action and a subject")
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _POSTGRES_CHAIN_LOCK})
    last = conn.execute(
        select(audit_events.c.seq, audit_events.c.hash).order_by(audit_events.c.seq.desc()).limit(1)
    ).first()
    seq = 1 if last is None else int(last.seq) + 1
    prev = GENESIS if last is None else str(last.hash)
    time = datetime.now(UTC).isoformat(timespec="microseconds")
    details_text = canonical_json(dict(details or {}))
    digest = event_hash(seq, time, actor, action, subject, details_text, prev)
    conn.execute(
        audit_events.insert().values(
            seq=seq,
            time=time,
            actor=actor,
            action=action,
            subject=subject,
            details=details_text,
            prev_hash=prev,
            hash=digest,
        )
    )
    return AuditEvent(seq, time, actor, action, subject, details_text, prev, digest)


def events(
    conn: Connection,
    *,
    subject: str | None = None,
    action: str | None = None,
    after: int = 0,
    limit: int | None = None,
    newest_first: bool = False,
) -> list[AuditEvent]:
    """Events in sequence order, optionally filtered by subject (or a ``prefix*``) and action."""
    query = select(audit_events).where(audit_events.c.seq > after)
    if subject is not None:
        if subject.endswith("*"):
            query = query.where(audit_events.c.subject.startswith(subject[:-1], autoescape=True))
        else:
            query = query.where(audit_events.c.subject == subject)
    if action is not None:
        query = query.where(audit_events.c.action == action)
    order = audit_events.c.seq.desc() if newest_first else audit_events.c.seq
    query = query.order_by(order)
    if limit is not None:
        query = query.limit(limit)
    return [_row_to_event(row) for row in conn.execute(query)]


def head(conn: Connection) -> ChainHead | None:
    """The newest event's sequence number and hash, or None for an empty log."""
    row = conn.execute(
        select(audit_events.c.seq, audit_events.c.hash).order_by(audit_events.c.seq.desc()).limit(1)
    ).first()
    return None if row is None else ChainHead(seq=int(row.seq), hash=str(row.hash))


def verify(conn: Connection, expected_head: ChainHead | None = None) -> Verification:
    """Walk the whole chain; raise ``AuditChainBroken`` naming the first bad event."""
    prev_hash = GENESIS
    expected_seq = 1
    count = 0
    seen_at_head: str | None = None
    for event in _stream(conn):
        if event.seq != expected_seq:
            raise AuditChainBroken(
                f"event {expected_seq} is missing: the log jumps from "
                f"{expected_seq - 1} to {event.seq}",
                seq=expected_seq,
            )
        if event.prev_hash != prev_hash:
            raise AuditChainBroken(
                f"event {event.seq} does not follow event {event.seq - 1}: its previous-hash "
                "does not match (an event was removed, inserted or reordered here)",
                seq=event.seq,
            )
        recomputed = event_hash(
            event.seq,
            event.time,
            event.actor,
            event.action,
            event.subject,
            event.details,
            event.prev_hash,
        )
        if recomputed != event.hash:
            raise AuditChainBroken(
                f"event {event.seq} ({event.action} {event.subject}) was altered: "
                "its content does not match its hash",
                seq=event.seq,
            )
        if expected_head is not None and event.seq == expected_head.seq:
            seen_at_head = event.hash
        prev_hash = event.hash
        expected_seq += 1
        count += 1
    last = ChainHead(seq=expected_seq - 1, hash=prev_hash) if count else None
    if expected_head is not None:
        have = last.seq if last else 0
        if have < expected_head.seq:
            raise AuditChainBroken(
                f"events {have + 1}..{expected_head.seq} are missing: the exported head is at "
                f"{expected_head.seq} but the log ends at {have}",
                seq=have + 1,
            )
        if seen_at_head != expected_head.hash:
            raise AuditChainBroken(
                f"event {expected_head.seq} differs from the exported head: the log was "
                "rewritten up to that point",
                seq=expected_head.seq,
            )
    return Verification(events=count, head=last)


def _stream(conn: Connection) -> Iterator[AuditEvent]:
    after = 0
    while True:
        batch = conn.execute(
            select(audit_events)
            .where(audit_events.c.seq > after)
            .order_by(audit_events.c.seq)
            .limit(_BATCH)
        ).all()
        if not batch:
            return
        for row in batch:
            yield _row_to_event(row)
        after = int(batch[-1].seq)


def _row_to_event(row: Any) -> AuditEvent:
    return AuditEvent(
        seq=int(row.seq),
        time=str(row.time),
        actor=str(row.actor),
        action=str(row.action),
        subject=str(row.subject),
        details=str(row.details),
        prev_hash=str(row.prev_hash),
        hash=str(row.hash),
    )

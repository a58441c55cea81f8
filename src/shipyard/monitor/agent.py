"""The agent: the long-running consumer of the outbox that sends a project's notifications.

Each notification is a consumer of its own. The agent reads the events it wants and has not
yet delivered, sends each, and only then records the delivery: killed between the two, it sends
the event again on its next start, with the same delivery key, which is how a receiver tells a
repeat from a new event. A failed send is recorded with exponential backoff, and that
notification waits until then while the others go on. It writes nothing but deliveries, and one
agent at a time serves a project (a lock file under the state directory).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, and_, func, or_, select

from shipyard.core import outbox
from shipyard.core.config.notifications import Notification
from shipyard.core.errors import UserError
from shipyard.core.outbox import OutboxEvent
from shipyard.core.secrets import Masker
from shipyard.core.store import Store
from shipyard.core.store.tables import outbox_deliveries, outbox_events
from shipyard.monitor.notify import DeliveryFailed, Notice, Notifier, SecretLookup, notifier_for

DEFAULT_RETRY_DELAY = timedelta(seconds=5)
"""The wait after a first failed delivery; it doubles with each failure, up to an hour."""

DEFAULT_POLL_SECONDS = 1.0
"""How often a running agent looks for new events when it has nothing to do."""

_BATCH = 100
_LONGEST_ERROR = 2000

Outcome = Literal["delivered", "failed", "skipped"]


class AgentBusy(UserError):
    """Another agent serves this project already."""


@dataclass(frozen=True)
class Subscription:
    """One notification as the agent serves it: its consumer name, its events, its notifier."""

    consumer: str
    events: tuple[str, ...]
    notifier: Notifier
    max_age: timedelta = timedelta(days=1)

    @property
    def types(self) -> tuple[str, ...] | None:
        """The event types to ask the outbox for (None: every type)."""
        return None if "*" in self.events else self.events


@dataclass(frozen=True)
class Attempt:
    """What became of one event for one notification."""

    consumer: str
    target: str
    event_id: int
    event_type: str
    delivery: str
    outcome: Outcome
    detail: str
    next_attempt_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        """The attempt as plain JSON values."""
        return {
            "consumer": self.consumer,
            "target": self.target,
            "event": self.event_id,
            "type": self.event_type,
            "delivery": self.delivery,
            "outcome": self.outcome,
            "detail": self.detail,
            "next_attempt_at": (
                None if self.next_attempt_at is None else self.next_attempt_at.isoformat()
            ),
        }


def consumer_name(project: str, notification: Notification) -> str:
    """The outbox consumer of a notification: the project and where it sends (so reordering
    the list, or changing ``on``, keeps what was delivered)."""
    return f"notify:{project}:{notification.identity}"


def delivery_key(project: str, event: OutboxEvent, consumer: str) -> str:
    """The idempotency key of one event for one notification: the event's number, then a
    digest that tells this event and receiver from any other project's or state directory's."""
    moment = f"{event.created_at.timestamp():.6f}"
    digest = hashlib.sha256(f"{project}|{event.id}|{moment}|{consumer}".encode()).hexdigest()
    return f"{event.id}-{digest[:16]}"


def subscriptions(
    project: str, notifications: Sequence[Notification], secret: SecretLookup
) -> list[Subscription]:
    """The subscription of each configured notification, its notifier built with its secret."""
    return [
        Subscription(
            consumer=consumer_name(project, notification),
            events=tuple(notification.on),
            notifier=notifier_for(notification, secret),
            max_age=notification.max_age,
        )
        for notification in notifications
    ]


class Agent:
    """Delivers a project's events to its notifications, from the store's outbox."""

    def __init__(
        self,
        store: Store,
        project: str,
        subscriptions: Sequence[Subscription],
        *,
        retry_delay: timedelta = DEFAULT_RETRY_DELAY,
        masker: Masker | None = None,
        on_attempt: Callable[[Attempt], None] | None = None,
    ) -> None:
        self._store = store
        self._project = project
        self._subscriptions = tuple(subscriptions)
        self._retry_delay = retry_delay
        self._masker = masker
        self._on_attempt = on_attempt
        self._waiting_until: dict[str, datetime] = {}

    def run_once(self, *, stop: threading.Event | None = None) -> list[Attempt]:
        """One pass: for each notification, the events due now, each sent and then recorded.

        A failure ends that notification's pass (its receiver is likely down): it waits until
        the failed event is due again, and the other notifications go on.
        """
        attempts: list[Attempt] = []
        for subscription in self._subscriptions:
            if stop is not None and stop.is_set():
                break
            waiting = self._waiting_until.get(subscription.consumer)
            if waiting is not None and waiting > datetime.now(UTC):
                continue
            self._waiting_until.pop(subscription.consumer, None)
            attempts += self._serve(subscription, stop)
        return attempts

    def drain(self, *, stop: threading.Event | None = None) -> list[Attempt]:
        """Passes until nothing is due: every event due now is delivered, skipped or failed."""
        attempts: list[Attempt] = []
        while not (stop is not None and stop.is_set()):
            done = self.run_once(stop=stop)
            if not done:
                break
            attempts += done
        return attempts

    def run(self, stop: threading.Event, *, poll_seconds: float = DEFAULT_POLL_SECONDS) -> None:
        """Deliver until ``stop`` is set, looking for new events every ``poll_seconds``.

        The send in progress when ``stop`` is set is finished and recorded first.
        """
        while not stop.is_set():
            if not self.run_once(stop=stop):
                stop.wait(poll_seconds)

    def _serve(self, subscription: Subscription, stop: threading.Event | None) -> list[Attempt]:
        with self._store.read() as conn:
            events = outbox.pending(
                conn, subscription.consumer, types=subscription.types, limit=_BATCH
            )
        attempts: list[Attempt] = []
        for event in events:
            if stop is not None and stop.is_set():
                break
            attempt = self._deliver(subscription, event)
            attempts.append(attempt)
            if self._on_attempt is not None:
                self._on_attempt(attempt)
            if attempt.outcome == "failed":
                assert attempt.next_attempt_at is not None
                self._waiting_until[subscription.consumer] = attempt.next_attempt_at
                break
        return attempts

    def _deliver(self, subscription: Subscription, event: OutboxEvent) -> Attempt:
        consumer = subscription.consumer
        key = delivery_key(self._project, event, consumer)

        def attempt(outcome: Outcome, detail: str, due: datetime | None = None) -> Attempt:
            target = subscription.notifier.target
            return Attempt(consumer, target, event.id, event.type, key, outcome, detail, due)

        skipped = self._reason_to_skip(subscription, event)
        if skipped is not None:
            with self._store.write() as conn:
                outbox.mark_delivered(conn, consumer, event.id)
            return attempt("skipped", skipped)
        notice = Notice(
            event_id=event.id,
            type=event.type,
            subject=event.subject,
            created_at=event.created_at,
            project=self._project,
            delivery=key,
            payload=event.payload,
        )
        try:
            answer = subscription.notifier.send(notice)
        except DeliveryFailed as error:
            reason = error.message
        except Exception as error:  # noqa: BLE001 - a notifier's bug must not stop the others
            reason = f"the {subscription.notifier.kind} notifier failed: {error!r}"
        else:
            with self._store.write() as conn:
                outbox.mark_delivered(conn, consumer, event.id)
            return attempt("delivered", self._mask(answer))
        reason = self._mask(reason)[:_LONGEST_ERROR]
        with self._store.write() as conn:
            due = outbox.mark_failed(conn, consumer, event.id, reason, base_delay=self._retry_delay)
        return attempt("failed", reason, due)

    def _reason_to_skip(self, subscription: Subscription, event: OutboxEvent) -> str | None:
        owner = _project_of(event)
        if owner is not None and owner != self._project:
            return f"an event of project {owner}, not {self._project}"
        age = datetime.now(UTC) - event.created_at
        if age > subscription.max_age:
            return f"older than max_age ({_shown_age(subscription.max_age)}): not sent"
        return None

    def _mask(self, text: str) -> str:
        return text if self._masker is None else self._masker.mask(text)


def _project_of(event: OutboxEvent) -> str | None:
    """The project an event names, when it names one (incidents do; releases in the subject)."""
    named = event.payload.get("project")
    if isinstance(named, str) and named:
        return named
    if event.subject.startswith("release:") and "@" in event.subject:
        return event.subject.removeprefix("release:").rpartition("@")[0]
    return None


def _shown_age(age: timedelta) -> str:
    seconds = int(age.total_seconds())
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class DeliveryCounts:
    """How a notification's deliveries stand: delivered, never tried, failing, and the last
    failure's reason and when it is tried again."""

    consumer: str
    delivered: int
    pending: int
    failing: int
    last_error: str | None
    next_attempt_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        """The counts as plain JSON values."""
        return {
            "consumer": self.consumer,
            "delivered": self.delivered,
            "pending": self.pending,
            "failing": self.failing,
            "last_error": self.last_error,
            "next_attempt_at": (
                None if self.next_attempt_at is None else self.next_attempt_at.isoformat()
            ),
        }


def delivery_counts(conn: Connection, consumer: str, events: Sequence[str]) -> DeliveryCounts:
    """The counts of one consumer over the events it wants (``*`` and ``family.*`` allowed)."""
    mine = and_(
        outbox_deliveries.c.event_id == outbox_events.c.id,
        outbox_deliveries.c.consumer == consumer,
    )
    wanted = _types_clause(events)
    joined = outbox_events.outerjoin(outbox_deliveries, mine)
    undelivered = conn.execute(
        select(func.count())
        .select_from(joined)
        .where(wanted, outbox_deliveries.c.delivered_at.is_(None))
    ).scalar_one()
    delivered = conn.execute(
        select(func.count())
        .select_from(outbox_deliveries)
        .where(
            outbox_deliveries.c.consumer == consumer,
            outbox_deliveries.c.delivered_at.is_not(None),
        )
    ).scalar_one()
    failing_rows = conn.execute(
        select(outbox_deliveries.c.last_error, outbox_deliveries.c.next_attempt_at)
        .where(
            outbox_deliveries.c.consumer == consumer,
            outbox_deliveries.c.delivered_at.is_(None),
            outbox_deliveries.c.attempts > 0,
        )
        .order_by(outbox_deliveries.c.next_attempt_at.desc())
    ).all()
    last = failing_rows[0] if failing_rows else None
    return DeliveryCounts(
        consumer=consumer,
        delivered=int(delivered),
        pending=max(0, int(undelivered) - len(failing_rows)),
        failing=len(failing_rows),
        last_error=None if last is None else last.last_error,
        next_attempt_at=None if last is None else last.next_attempt_at,
    )


def _types_clause(patterns: Sequence[str]) -> Any:
    if "*" in patterns:
        return outbox_events.c.id.is_not(None)
    return or_(
        *(
            outbox_events.c.type.startswith(pattern[:-1], autoescape=True)
            if pattern.endswith(".*")
            else outbox_events.c.type == pattern
            for pattern in patterns
        )
    )


def lock_path(state_root: Path, project: str) -> Path:
    """The lock file the agent of ``project`` holds while it runs."""
    return state_root / "agent" / f"{project}.lock"


@contextlib.contextmanager
def agent_lock(state_root: Path, project: str, *, wait_seconds: float = 2.0) -> Iterator[None]:
    """Hold the project's agent lock; ``AgentBusy`` when another agent holds it still after
    ``wait_seconds`` (a moment, so a status check that peeks at it never turns an agent away).

    The lock dies with its process, so an agent killed with SIGKILL leaves nothing to clean.
    """
    path = lock_path(state_root, project)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait_seconds
        while not _try_lock(descriptor, fcntl.LOCK_EX):
            if time.monotonic() >= deadline:
                holder = _holder_pid(descriptor)
                raise AgentBusy(
                    f"another agent serves project {project} already"
                    + (f" (pid {holder})" if holder is not None else ""),
                    hint="see it with 'shipyard agent status'; stop it with 'shipyard agent stop' "
                    "before running one by hand",
                )
            time.sleep(0.05)
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(descriptor)


def agent_pid(state_root: Path, project: str) -> int | None:
    """The pid of the agent that serves ``project`` now (0 if it wrote none yet), or None when
    no agent does."""
    path = lock_path(state_root, project)
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        if _try_lock(descriptor, fcntl.LOCK_SH):
            fcntl.flock(descriptor, fcntl.LOCK_UN)
            return None
        return _holder_pid(descriptor) or 0
    finally:
        os.close(descriptor)


def _try_lock(descriptor: int, kind: int) -> bool:
    try:
        fcntl.flock(descriptor, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder_pid(descriptor: int) -> int | None:
    text = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None

"""The agent's consumer loop on a real store: deliver then record, retry with backoff, skip,
one agent per project. Receivers are the fake notifier (or small notifiers of the interface)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.test_notify_receivers import wait_until
from shipyard.core import outbox
from shipyard.core import state as state_dir
from shipyard.core.secrets import Masker
from shipyard.core.store import Store, open_store
from shipyard.monitor.agent import (
    Agent,
    AgentBusy,
    Subscription,
    agent_lock,
    agent_pid,
    delivery_counts,
)
from shipyard.monitor.notify import FakeNotifier, Notice, Notifier

pytestmark = pytest.mark.backends


@pytest.fixture
def store(repo: Path) -> Iterator[Store]:
    opened = open_store(state_dir.locate(repo))
    try:
        yield opened
    finally:
        opened.dispose()


def append(store: Store, type: str, subject: str = "deployment:1", **payload: Any) -> int:
    with store.write() as conn:
        return outbox.append(conn, type, subject, payload)


def subscribe(notifier: Notifier, *events: str, name: str = "a", **kw: Any) -> Subscription:
    return Subscription(consumer=f"notify:shop:{name}", events=events, notifier=notifier, **kw)


def counts(store: Store, subscription: Subscription) -> dict[str, Any]:
    with store.read() as conn:
        return delivery_counts(conn, subscription.consumer, subscription.events).as_json()


def test_each_wanted_event_is_delivered_once_in_order_then_recorded(store: Store) -> None:
    first = append(store, "deployment.rolled_back", version="1.4.0")
    append(store, "deployment.created")
    third = append(store, "incident.opened", "incident:1", project="shop", title="down")
    fake = FakeNotifier()
    subscription = subscribe(fake, "deployment.rolled_back", "incident.*")
    agent = Agent(store, "shop", [subscription])

    attempts = agent.drain()

    assert [(a.event_id, a.outcome) for a in attempts] == [
        (first, "delivered"),
        (third, "delivered"),
    ]
    assert [(n.event_id, n.type, n.project) for n in fake.sent] == [
        (first, "deployment.rolled_back", "shop"),
        (third, "incident.opened", "shop"),
    ]
    assert fake.sent[0].payload == {"version": "1.4.0"}
    assert agent.drain() == []
    assert Agent(store, "shop", [subscription]).drain() == []  # recorded, not remembered
    assert counts(store, subscription) | {"next_attempt_at": None} == {
        "consumer": "notify:shop:a",
        "delivered": 2,
        "pending": 0,
        "failing": 0,
        "last_error": None,
        "next_attempt_at": None,
    }


def test_a_failing_receiver_waits_with_backoff_while_the_others_go_on(store: Store) -> None:
    event = append(store, "deployment.rolled_back")
    append(store, "deployment.failed")
    down, up = FakeNotifier("fake://down"), FakeNotifier("fake://up")
    down.down = True
    failing = subscribe(down, "deployment.*", name="down")
    working = subscribe(up, "deployment.*", name="up")
    agent = Agent(store, "shop", [failing, working], retry_delay=timedelta(milliseconds=200))

    attempts = agent.run_once()

    assert [(a.target, a.outcome) for a in attempts] == [
        ("fake://down", "failed"),
        ("fake://up", "delivered"),
        ("fake://up", "delivered"),
    ]
    assert len(down.attempts) == 1  # one failure ends its pass: the receiver is likely down
    failed = attempts[0]
    assert failed.next_attempt_at is not None and failed.next_attempt_at > datetime.now(UTC)
    status = counts(store, failing)
    assert (status["delivered"], status["pending"], status["failing"]) == (0, 1, 1)
    assert status["last_error"] == "fake://down is down"
    assert agent.run_once() == []  # not due yet: nobody is asked

    down.down = False
    wait_until(lambda: datetime.now(UTC) >= failed.next_attempt_at, what="the next attempt")
    retried = agent.drain()
    assert [(a.event_id, a.outcome) for a in retried] == [
        (event, "delivered"),
        (event + 1, "delivered"),
    ]
    assert down.attempts[0].delivery == down.sent[0].delivery  # the same key on the retry
    assert counts(store, failing)["failing"] == 0


class _KilledAfterSending(Notifier):
    """Delivers, then its process 'dies' before the agent can record it (as kill -9 would)."""

    kind = "crash"
    target = "fake://crash"

    def __init__(self) -> None:
        self.sent: list[Notice] = []

    def send(self, notice: Notice) -> str:
        self.sent.append(notice)
        raise KeyboardInterrupt  # not an error the agent handles: it ends the run


def test_an_event_sent_but_not_recorded_is_sent_again_with_the_same_key(store: Store) -> None:
    append(store, "deployment.rolled_back")
    crashing = _KilledAfterSending()
    with pytest.raises(KeyboardInterrupt):
        Agent(store, "shop", [subscribe(crashing, "*")]).drain()
    fake = FakeNotifier()
    Agent(store, "shop", [subscribe(fake, "*")]).drain()
    assert [n.delivery for n in fake.sent] == [crashing.sent[0].delivery]
    assert Agent(store, "shop", [subscribe(fake, "*")]).drain() == []


def test_the_delivery_key_differs_per_receiver_and_event(store: Store) -> None:
    append(store, "deployment.rolled_back")
    append(store, "deployment.rolled_back")
    one, two = FakeNotifier(), FakeNotifier()
    Agent(store, "shop", [subscribe(one, "*", name="one"), subscribe(two, "*", name="two")]).drain()
    keys = {n.delivery for n in one.sent} | {n.delivery for n in two.sent}
    assert len(keys) == 4
    assert all(key.startswith(f"{n.event_id}-") for n in one.sent for key in [n.delivery])


def test_old_events_and_other_projects_events_are_skipped_and_recorded(store: Store) -> None:
    append(store, "incident.opened", "incident:1", project="billing")
    append(store, "release.published", "release:billing@1.0.0", version="1.0.0")
    fake = FakeNotifier()
    attempts = Agent(store, "shop", [subscribe(fake, "*")]).drain()
    assert [(a.outcome, a.detail) for a in attempts] == [
        ("skipped", "an event of project billing, not shop"),
        ("skipped", "an event of project billing, not shop"),
    ]
    append(store, "deployment.rolled_back")
    stale = subscribe(fake, "*", max_age=timedelta(microseconds=1))
    (old,) = Agent(store, "shop", [stale]).drain()
    assert (old.outcome, old.detail) == ("skipped", "older than max_age (0s): not sent")
    assert fake.sent == []
    assert Agent(store, "shop", [subscribe(fake, "*")]).drain() == []


class _Broken(Notifier):
    kind = "broken"
    target = "fake://broken"

    def send(self, notice: Notice) -> str:
        raise RuntimeError("a bug in a notifier")


def test_a_notifier_that_breaks_is_a_failed_delivery_not_a_dead_agent(store: Store) -> None:
    append(store, "deployment.rolled_back")
    fake = FakeNotifier()
    attempts = Agent(
        store, "shop", [subscribe(_Broken(), "*", name="broken"), subscribe(fake, "*")]
    ).run_once()
    assert [a.outcome for a in attempts] == ["failed", "delivered"]
    assert "RuntimeError('a bug in a notifier')" in attempts[0].detail


def test_a_failure_that_quotes_a_secret_is_stored_masked(store: Store) -> None:
    append(store, "deployment.rolled_back")
    fake = FakeNotifier("fake://hunter2-secret-value")
    fake.down = True
    subscription = subscribe(fake, "*")
    (attempt,) = Agent(
        store, "shop", [subscription], masker=Masker(["hunter2-secret-value"])
    ).run_once()
    assert attempt.detail == "fake://*** is down"
    assert counts(store, subscription)["last_error"] == "fake://*** is down"


def test_a_stop_ends_the_loop_after_the_delivery_in_progress(store: Store) -> None:
    append(store, "deployment.rolled_back")
    append(store, "deployment.failed")
    stop = threading.Event()

    class StopsWhileSending(FakeNotifier):
        def send(self, notice: Notice) -> str:
            stop.set()  # as SIGTERM would, in the middle of a delivery
            return super().send(notice)

    fake = StopsWhileSending()
    subscription = subscribe(fake, "*")
    Agent(store, "shop", [subscription]).run(stop, poll_seconds=0.01)
    assert len(fake.sent) == 1
    assert counts(store, subscription)["delivered"] == 1  # finished and recorded


def test_one_agent_serves_a_project_at_a_time(tmp_path: Path) -> None:
    assert agent_pid(tmp_path, "shop") is None
    with agent_lock(tmp_path, "shop"):
        assert agent_pid(tmp_path, "shop") is not None
        busy = pytest.raises(AgentBusy, match=r"another agent serves project shop already \(pid")
        with busy, agent_lock(tmp_path, "shop", wait_seconds=0.1):
            pass
        with agent_lock(tmp_path, "billing", wait_seconds=0.1):
            pass
    assert agent_pid(tmp_path, "shop") is None


def test_another_projects_deployment_events_name_it_and_are_not_sent(store: Store) -> None:
    from shipyard.cd import deployments

    asked = deployments.create(
        store,
        project="billing",
        environment="production",
        version="2.0.0",
        kind="deploy",
        strategy="canary",
        previous_version=None,
        settings={},
        actor="ops@example.com",
        on_busy="queue",
    )
    deployments.transition(store, asked.id, "progressing", actor="ops@example.com")
    fake = FakeNotifier()
    attempts = Agent(store, "shop", [subscribe(fake, "deployment.*")]).drain()
    assert [a.outcome for a in attempts] == ["skipped", "skipped"]
    assert fake.sent == []
    mine = FakeNotifier()
    sent = Agent(store, "billing", [subscribe(mine, "deployment.*", name="b")]).drain()
    assert [a.outcome for a in sent] == ["delivered", "delivered"]

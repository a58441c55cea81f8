"""The webhook and email notifiers against real servers on loopback, and what they say."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from monitor.test_notify_receivers import free_port, mail_receiver, verify, webhook_receiver
from shipyard.core.config import load_config_text
from shipyard.core.secrets import SecretError, SecretValue
from shipyard.monitor.notify import (
    DeliveryFailed,
    EmailNotifier,
    Notice,
    NotifierUnavailable,
    WebhookNotifier,
    notifier_for,
    summary,
)

KEY = "whsec-0123456789abcdef"


def notice(type: str = "deployment.rolled_back", **payload: Any) -> Notice:
    return Notice(
        event_id=12,
        type=type,
        subject="deployment:4",
        created_at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
        project="shop",
        delivery="12-0123456789abcdef",
        payload=payload
        or {
            "environment": "production",
            "version": "1.4.0",
            "message": "error_rate 0.2 > 0.01",
        },
    )


def test_a_json_webhook_carries_the_event_its_key_and_a_signature_that_verifies() -> None:
    with webhook_receiver() as receiver:
        answer = WebhookNotifier(receiver.url, key=SecretValue(KEY)).send(notice())
        (request,) = receiver.wait_for(1)
    assert answer == "200 OK"
    assert request.path == "/hooks/shipyard"
    assert request.headers["X-Shipyard-Event"] == "deployment.rolled_back"
    assert request.headers["X-Shipyard-Delivery"] == "12-0123456789abcdef"
    assert request.headers["Content-Type"].startswith("application/json")
    assert verify(KEY, request.body, request.headers["X-Shipyard-Signature-256"])
    body = json.loads(request.body)
    assert body["delivery"] == "12-0123456789abcdef"
    assert body["event"] == {
        "id": 12,
        "type": "deployment.rolled_back",
        "subject": "deployment:4",
        "created_at": "2026-03-01T12:00:00+00:00",
    }
    assert body["project"] == "shop"
    assert body["payload"]["version"] == "1.4.0"
    assert KEY not in request.body.decode()


def test_without_a_secret_a_webhook_is_not_signed() -> None:
    with webhook_receiver() as receiver:
        WebhookNotifier(receiver.url).send(notice())
        (request,) = receiver.wait_for(1)
    assert "X-Shipyard-Signature-256" not in request.headers


def test_a_slack_webhook_is_one_readable_line() -> None:
    with webhook_receiver() as receiver:
        WebhookNotifier(receiver.url, format="slack", key=SecretValue(KEY)).send(notice())
        (request,) = receiver.wait_for(1)
    assert json.loads(request.body) == {
        "text": "shop: deployment 4 of 1.4.0 to production was rolled back: error_rate 0.2 > 0.01"
    }
    assert verify(KEY, request.body, request.headers["X-Shipyard-Signature-256"])


def test_a_refusing_receiver_fails_the_delivery_and_its_path_is_never_shown() -> None:
    with webhook_receiver(status=503) as receiver:
        url = f"http://127.0.0.1:{receiver.port}/services/T0/B0/token-in-the-path"
        notifier = WebhookNotifier(url)
        with pytest.raises(DeliveryFailed) as failed:
            notifier.send(notice())
    assert str(failed.value) == "answered 503 Service Unavailable: ok"
    assert notifier.target == f"http://127.0.0.1:{receiver.port}/…"


def test_a_receiver_that_is_down_fails_the_delivery() -> None:
    port = free_port()
    with pytest.raises(DeliveryFailed, match="the connection was refused"):
        WebhookNotifier(f"http://127.0.0.1:{port}/x").send(notice())


def test_an_email_goes_through_a_real_smtp_server_with_its_key_as_message_id() -> None:
    with mail_receiver() as (port, inbox):
        answer = EmailNotifier(
            "127.0.0.1", port, sender="shipyard@example.com", to=["oncall@example.com"]
        ).send(notice())
    assert answer == "accepted for oncall@example.com"
    ((sender, recipients, message),) = inbox.messages
    assert (sender, recipients) == ("shipyard@example.com", ["oncall@example.com"])
    assert message["Subject"] == (
        "[Shipyard] shop: deployment 4 of 1.4.0 to production was rolled back: "
        "error_rate 0.2 > 0.01"
    )
    assert message["Message-ID"] == "<12-0123456789abcdef.shipyard@example.com>"
    assert message["X-Shipyard-Delivery"] == "12-0123456789abcdef"
    assert message["X-Shipyard-Event"] == "deployment.rolled_back"
    body = message.get_content()
    assert '"version": "1.4.0"' in body


def test_starttls_asked_of_a_server_that_offers_none_fails_and_says_so() -> None:
    with mail_receiver() as (port, inbox):
        notifier = EmailNotifier(
            "127.0.0.1", port, sender="s@example.com", to=["o@example.com"], tls="starttls"
        )
        with pytest.raises(DeliveryFailed, match="does not offer STARTTLS"):
            notifier.send(notice())
    assert inbox.messages == []


def test_notifier_for_builds_each_kind_and_a_missing_secret_is_named_not_shown() -> None:
    config = load_config_text(
        "project: shop\nnotifications:\n"
        "  - {url: 'https://hooks.example.com/a', format: slack, on: ['*'], secret: HOOK_KEY}\n"
        "  - {smtp: 'mail.example.com', from: s@example.com, to: [o@example.com], on: ['*']}\n"
    )
    webhook, email = config.notifications
    built = notifier_for(webhook, lambda name: SecretValue(KEY))
    assert (built.kind, built.target) == ("webhook", "https://hooks.example.com/…")
    mail = notifier_for(email, lambda name: SecretValue(KEY))
    assert (mail.kind, mail.target) == ("email", "smtp://mail.example.com:25 to o@example.com")

    def missing(name: str) -> SecretValue:
        raise SecretError(f"secret {name} is not set")

    with pytest.raises(NotifierUnavailable, match="secret HOOK_KEY is not set"):
        notifier_for(webhook, missing)


@pytest.mark.parametrize(
    ("type", "payload", "line"),
    [
        (
            "incident.opened",
            {"environment": "production", "title": "Checkout fails", "caused_by_version": "1.4.0"},
            "shop: incident 4 opened in production: Checkout fails (caused by 1.4.0)",
        ),
        (
            "gate.failed",
            {"gate": "vulnerabilities", "release": "1.4.0", "summary": "2 high"},
            "shop: gate vulnerabilities failed on release 1.4.0: 2 high",
        ),
        (
            "release.published",
            {"version": "1.4.0", "tag": "v1.4.0"},
            "shop: release 1.4.0 published (tag v1.4.0)",
        ),
        ("something.new", {"x": 1}, "shop: something.new deployment:4"),
    ],
)
def test_each_family_of_events_reads_as_a_sentence(
    type: str, payload: dict[str, Any], line: str
) -> None:
    event = notice(type, **payload)
    if type.startswith("incident"):
        event = Notice(**{**event.__dict__, "subject": "incident:4"})
    assert summary(event) == line

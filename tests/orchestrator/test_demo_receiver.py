"""The demo's webhook receiver over real HTTP: it takes a signed delivery once (a delivery sent
again with the same key is answered but not taken twice), and refuses what is not signed with
its secret or is not an event."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from shipyard.orchestrator.demo import Received, WebhookReceiver

SECRET = "a-demo-secret"


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[WebhookReceiver]:
    """A running receiver whose log is in ``tmp_path``."""
    with WebhookReceiver(tmp_path / "notifications.jsonl", SECRET) as running:
        yield running


def _body(event_id: int, subject: str) -> bytes:
    event = {"id": event_id, "type": "deployment.rolled_back", "subject": subject}
    return json.dumps({"delivery": f"{event_id}-x", "event": event, "payload": {}}).encode()


def _post(receiver: WebhookReceiver, body: bytes, *, delivery: str, secret: str = SECRET) -> int:
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    address = urlsplit(receiver.url)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=10)
    try:
        connection.request(
            "POST",
            address.path,
            body=body,
            headers={
                "Content-Type": "application/json",
                "X-Shipyard-Event": "deployment.rolled_back",
                "X-Shipyard-Delivery": delivery,
                "X-Shipyard-Signature-256": signature,
            },
        )
        return connection.getresponse().status
    finally:
        connection.close()


def test_a_signed_delivery_is_taken_once(receiver: WebhookReceiver) -> None:
    body = _body(7, "deployment:6")
    assert _post(receiver, body, delivery="7-abc") == 204
    assert _post(receiver, body, delivery="7-abc") == 204  # the agent sent it again
    assert receiver.received() == (
        Received(event="deployment.rolled_back", delivery="7-abc", subject="deployment:6"),
    )
    [line] = receiver.log.read_text().splitlines()
    assert json.loads(line)["event"]["subject"] == "deployment:6"


def test_what_is_not_signed_with_its_secret_or_not_an_event_is_refused(
    receiver: WebhookReceiver,
) -> None:
    assert _post(receiver, _body(1, "deployment:1"), delivery="1-a", secret="another") == 401
    assert _post(receiver, b"not json", delivery="2-a") == 400
    assert _post(receiver, b'{"event": {}}', delivery="3-a") == 400
    assert receiver.received() == ()
    assert not receiver.log.exists()


def test_waiting_for_a_delivery_ends_when_it_comes_or_says_it_did_not(
    receiver: WebhookReceiver,
) -> None:
    assert not receiver.wait_for("deployment.rolled_back", "deployment:6", timeout=0.1)
    sender = threading.Thread(
        target=_post, args=(receiver, _body(8, "deployment:6")), kwargs={"delivery": "8-a"}
    )
    sender.start()
    assert receiver.wait_for("deployment.rolled_back", "deployment:6", timeout=30)
    sender.join()

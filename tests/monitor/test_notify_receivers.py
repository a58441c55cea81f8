"""Real receivers on loopback for the notification tests: a webhook server and an SMTP server.

``WebhookReceiver`` is an HTTP server that records every request whole and answers as told
(a status, or not at all until released); it counts *logical* deliveries the way the docs tell
a receiver to, by dropping a delivery key it has seen. ``MailReceiver`` is aiosmtpd's SMTP
server. The tests at the end check the helpers themselves.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import http.server
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

DEADLINE = 60.0
"""Seconds a test waits for something to happen before it fails."""


def wait_until(check: Callable[[], Any], *, seconds: float = DEADLINE, what: str = "it") -> Any:
    """Poll ``check`` until it returns something true; fail the test after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"waited {seconds:g} s for {what}")
        time.sleep(0.02)


def free_port() -> int:
    """A port on loopback nobody listens on (as the kernel hands them out)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def verify(key: str, body: bytes, header: str | None) -> bool:
    """What a receiver does: recompute the HMAC of the raw body and compare in constant time."""
    expected = "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    return header is not None and hmac.compare_digest(expected, header)


@dataclass(frozen=True)
class Request:
    """One request as the receiver got it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def delivery(self) -> str:
        return self.headers["X-Shipyard-Delivery"]


class WebhookReceiver:
    """A webhook server on loopback: it records each request and answers ``status`` with
    ``answer`` as the body.

    While ``hold`` is set it answers nothing until ``release()``; a request is recorded before it
    waits, so a test can tell the sender is in the middle of a delivery.
    """

    def __init__(self, port: int = 0, status: int = 200) -> None:
        self.status = status
        self.answer = b"ok"
        self.hold = False
        self.requests: list[Request] = []
        self._released = threading.Event()
        self._changed = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver._changed:
                    receiver.requests.append(
                        Request("POST", self.path, dict(self.headers.items()), body)
                    )
                    receiver._changed.notify_all()
                    holding = receiver.hold
                if holding:
                    receiver._released.wait(DEADLINE)
                with contextlib.suppress(OSError):
                    self.send_response(receiver.status)
                    self.send_header("Content-Length", str(len(receiver.answer)))
                    self.end_headers()
                    self.wfile.write(receiver.answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/shipyard"

    def release(self) -> None:
        """Answer the held requests, and every later one at once."""
        self.hold = False
        self._released.set()

    def wait_for(self, count: int) -> list[Request]:
        """Wait until ``count`` requests came; all of them so far."""
        deadline = time.monotonic() + DEADLINE
        with self._changed:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"the receiver got {len(self.requests)} of {count} requests")
                self._changed.wait(left)
            return list(self.requests)

    def logical(self) -> list[Request]:
        """The requests a receiver that drops repeated delivery keys processes."""
        seen: set[str] = set()
        kept = []
        for request in self.requests:
            if request.delivery not in seen:
                seen.add(request.delivery)
                kept.append(request)
        return kept

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()


@contextlib.contextmanager
def webhook_receiver(port: int = 0, status: int = 200) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(port, status)
    try:
        yield receiver
    finally:
        receiver.close()


class _Inbox:
    """aiosmtpd's handler: every message accepted, kept with its envelope."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        parsed = message_from_bytes(content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"


@contextlib.contextmanager
def mail_receiver() -> Iterator[tuple[int, _Inbox]]:
    """A real SMTP server (aiosmtpd) on loopback: its port and its inbox."""
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


def test_the_receiver_records_a_request_and_counts_a_repeated_key_once() -> None:
    with webhook_receiver() as receiver:
        for _ in range(2):
            connection = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=10)
            connection.request("POST", "/hooks", body=b"{}", headers={"X-Shipyard-Delivery": "7-a"})
            assert connection.getresponse().status == 200
            connection.close()
        assert len(receiver.wait_for(2)) == 2
        assert len(receiver.logical()) == 1


def test_verify_accepts_only_the_hmac_of_the_exact_body() -> None:
    header = "sha256=" + hmac.new(b"key-123456", b"body", hashlib.sha256).hexdigest()
    assert verify("key-123456", b"body", header)
    assert not verify("key-123456", b"body ", header)
    assert not verify("other-key", b"body", header)
    assert not verify("key-123456", b"body", None)

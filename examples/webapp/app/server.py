"""The example service's settings, request handler and server (stdlib only).

Settings come from the environment (``APP_*``) and are checked once at start. The server drains
on ``drain()``: it stops accepting, closes idle keep-alive connections and lets requests in
flight finish. Nothing here reads the environment or installs signal handlers after start.
"""

from __future__ import annotations

import json
import math
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

VERSION_FILE = Path(__file__).resolve().parent.parent / "VERSION"
"""Written into the release bundle by ``release.version_files``; preferred over APP_VERSION."""

UNKNOWN_VERSION = "0.0.0+unknown"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class SettingsError(Exception):
    """An ``APP_*`` setting has a value the service cannot use."""


@dataclass(frozen=True)
class Settings:
    """How the service behaves; see README.md for each variable."""

    version: str
    healthy: bool = True
    start_delay_s: float = 0.0
    fail_rate: Fraction = Fraction(0)
    latency_ms: float = 0.0
    regress_after_s: float = 0.0

    @classmethod
    def from_env(cls, env: Mapping[str, str], version_file: Path = VERSION_FILE) -> Settings:
        """Read the ``APP_*`` variables (and the VERSION file); raise SettingsError if unusable."""
        return cls(
            version=read_version(env, version_file),
            healthy=_flag(env, "APP_HEALTHY", default=True),
            start_delay_s=_number(env, "APP_START_DELAY", low=0.0),
            fail_rate=_fraction(env, "APP_FAIL_RATE"),
            latency_ms=_number(env, "APP_LATENCY_MS", low=0.0),
            regress_after_s=_number(env, "APP_REGRESS_AFTER", low=0.0),
        )


def read_version(env: Mapping[str, str], version_file: Path = VERSION_FILE) -> str:
    """The VERSION file's content if there is one, else APP_VERSION, else a placeholder."""
    try:
        written = version_file.read_text(encoding="utf-8").strip()
    except OSError:
        written = ""
    return written or env.get("APP_VERSION", "").strip() or UNKNOWN_VERSION


def _flag(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise SettingsError(f"{name}={raw!r}: use 1 or 0")


def _number(env: Mapping[str, str], name: str, *, low: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return low
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value) or value < low:
        raise SettingsError(f"{name}={raw!r} must be a number >= {low:g}")
    return value


def _fraction(env: Mapping[str, str], name: str) -> Fraction:
    raw = env.get(name, "").strip()
    if not raw:
        return Fraction(0)
    try:
        # Exact, so that a rate of 0.29 fails exactly 29 of every 100 requests.
        value = Fraction(raw)
    except (ValueError, ZeroDivisionError):
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not 0 <= value <= 1:
        raise SettingsError(f"{name}={raw!r} must be between 0 and 1")
    return value


class FailureSchedule:
    """Decides which requests fail: exactly ``rate`` of them, spread evenly."""

    def __init__(self, rate: Fraction) -> None:
        self._rate = rate
        self._count = 0
        self._lock = threading.Lock()

    def next_fails(self) -> bool:
        """Whether the next request should fail."""
        with self._lock:
            self._count += 1
            return math.floor(self._count * self._rate) > math.floor((self._count - 1) * self._rate)


class AppServer(ThreadingHTTPServer):
    """The HTTP server: one thread per connection, keep-alive, TCP_NODELAY, graceful drain."""

    daemon_threads = False  # server_close() waits for requests in flight
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], settings: Settings) -> None:
        self.settings = settings
        self.ready_at = time.monotonic() + settings.start_delay_s
        self.regressed_at = self.ready_at + settings.regress_after_s
        self.failures = FailureSchedule(settings.fail_rate)
        self.draining = False
        self.requests = 0
        self.failed = 0
        self.in_flight = 0
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, bool] = {}  # connection -> idle between requests
        super().__init__(address, Handler)

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return int(self.server_address[1])

    @property
    def ready(self) -> bool:
        """Whether the start delay is over."""
        return time.monotonic() >= self.ready_at

    @property
    def regressed(self) -> bool:
        """Whether APP_REGRESS_AFTER has passed, so APP_FAIL_RATE and APP_LATENCY_MS apply."""
        return time.monotonic() >= self.regressed_at

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept a connection with Nagle's algorithm off: small responses leave at once."""
        connection, address = super().get_request()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection, address

    def track(self, connection: socket.socket, *, idle: bool) -> None:
        """Record whether a connection waits for a request (idle) or serves one."""
        with self._lock:
            self._connections[connection] = idle

    def untrack(self, connection: socket.socket) -> None:
        """Forget a closed connection."""
        with self._lock:
            self._connections.pop(connection, None)

    @contextmanager
    def serving(self) -> Iterator[None]:
        """Count a request as in flight while it is served."""
        with self._lock:
            self.requests += 1
            self.in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= 1

    def count_failure(self) -> None:
        """Count a request answered with an injected failure."""
        with self._lock:
            self.failed += 1

    def drain(self) -> None:
        """Stop accepting, close idle connections, wait for requests in flight, close."""
        self.shutdown()
        with self._lock:
            self.draining = True
            idle = [connection for connection, waiting in self._connections.items() if waiting]
        for connection in idle:
            # Wakes a thread blocked reading the next request; it sees end of input and ends.
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RD)
        self.server_close()

    def stats(self) -> dict[str, Any]:
        """Counters for ``GET /stats`` (the stats request itself is not in flight)."""
        with self._lock:
            return {
                "version": self.settings.version,
                "ready": self.ready,
                "healthy": self.settings.healthy,
                "regressed": self.regressed,
                "requests": self.requests,
                "failed": self.failed,
                "in_flight": self.in_flight - 1,
            }


class Handler(BaseHTTPRequestHandler):
    """Serves ``/`` (the version), ``/healthz`` and ``/stats``."""

    protocol_version = "HTTP/1.1"
    server_version = "shipyard-example-webapp"
    timeout = 60  # seconds an idle keep-alive connection is kept
    server: AppServer

    def setup(self) -> None:
        """Track the connection so that a drain can close it while it is idle."""
        super().setup()
        self.server.track(self.connection, idle=True)

    def finish(self) -> None:
        """Untrack the connection."""
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def handle_one_request(self) -> None:
        """Serve one request; between requests the connection counts as idle."""
        self.server.track(self.connection, idle=True)
        if self.server.draining:
            self.close_connection = True
            return
        super().handle_one_request()

    def parse_request(self) -> bool:
        """A request line has arrived: from now on the connection is busy."""
        self.server.track(self.connection, idle=False)
        return super().parse_request()

    def do_GET(self) -> None:
        """Route by path."""
        with self.server.serving():
            path = urlsplit(self.path).path
            if path == "/":
                self._root()
            elif path == "/healthz":
                self._health()
            elif path == "/stats":
                self._send(200, json.dumps(self.server.stats()) + "\n", "application/json")
            else:
                self._send(404, "not found\n")

    def do_HEAD(self) -> None:
        """Like GET, without a body."""
        self.do_GET()

    def _root(self) -> None:
        settings = self.server.settings
        if not self.server.ready:
            self._send(503, "starting\n")
            return
        if self.server.regressed:
            if settings.latency_ms:
                time.sleep(settings.latency_ms / 1000)
            # Counted from the regression on: exactly APP_FAIL_RATE of those requests fail.
            if self.server.failures.next_fails():
                self.server.count_failure()
                self._send(500, "injected failure (APP_FAIL_RATE)\n")
                return
        self._send(200, settings.version + "\n")

    def _health(self) -> None:
        if self.server.draining:
            self._send(503, "stopping\n")
        elif not self.server.ready:
            self._send(503, "starting\n")
        elif not self.server.settings.healthy:
            self._send(503, "unhealthy (APP_HEALTHY=0)\n")
        else:
            self._send(200, "ok\n")

    def _send(self, status: int, text: str, content_type: str = "text/plain") -> None:
        body = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-App-Version", self.server.settings.version)
        if self.server.draining:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Log only server errors: an access line per request would drown the log."""
        if isinstance(code, int) and code >= 500:
            super().log_request(code, size)

    def log_message(self, format: str, *args: Any) -> None:
        """Plain lines on stderr."""
        sys.stderr.write(f"webapp: {self.address_string()} {format % args}\n")

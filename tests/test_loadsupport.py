"""The load generator for end-to-end tests, against a small real HTTP server that fails every
third request, names its version in ``X-Shipyard-Version`` and can drop or hang a request."""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from loadsupport import UNVERSIONED, Load

PATIENCE = 30.0  # seconds: only ever an upper bound for waiting on something to happen


class VersionedServer(ThreadingHTTPServer):
    """Answers ``/`` 200 or, every third request, 500, and counts what it answered."""

    daemon_threads = True  # a hanging request must not hold up the test's end

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Answering)
        self.version = "1.0.0"
        self.lock = threading.Lock()
        self.requests = 0
        self.answered: Counter[tuple[str, int]] = Counter()
        self.connections: set[tuple[str, int]] = set()
        self.hung = 0
        self.hanging = threading.Event()  # two requests to /hang have arrived
        self.release = threading.Event()  # lets requests to /hang end

    def url(self, path: str = "/") -> str:
        """The URL of ``path`` on this server."""
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class Answering(BaseHTTPRequestHandler):
    """``/``: versioned; ``/plain``: no version header; ``/drop``: every fifth request is
    closed unanswered; ``/hang``: never answers until released."""

    protocol_version = "HTTP/1.1"
    server: VersionedServer

    def do_GET(self) -> None:
        """Answer as the path says."""
        server = self.server
        if self.path == "/hang":
            with server.lock:
                server.hung += 1
                if server.hung == 2:
                    server.hanging.set()
            server.release.wait(PATIENCE)
            self.close_connection = True
            return
        with server.lock:
            server.requests += 1
            number = server.requests
            server.connections.add(self.client_address)
            if self.path == "/drop" and number % 5 == 0:
                self.close_connection = True
                return
            status = 500 if number % 3 == 0 else 200
            version = server.version if self.path != "/plain" else UNVERSIONED
            server.answered[version, status] += 1  # before sending: never fewer than the load saw
        self.send_response(status)
        if version:
            self.send_header("X-Shipyard-Version", version)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def setup(self) -> None:
        """Headers and body leave in two writes: without Nagle's delay, each at once."""
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def server() -> Iterator[VersionedServer]:
    """A running VersionedServer."""
    running = VersionedServer()
    thread = threading.Thread(target=running.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield running
    running.release.set()
    running.shutdown()
    running.server_close()
    thread.join(PATIENCE)


@pytest.mark.parametrize("rate", [None, 200.0])
def test_it_counts_each_version_s_statuses_as_the_server_answered_them(
    server: VersionedServer, rate: float | None
) -> None:
    with Load(server.url(), workers=2, rate=rate) as load:
        load.wait_for(lambda: load.count(version="1.0.0") >= 20, PATIENCE)
        server.version = "2.0.0"
        load.wait_for(lambda: load.count(version="2.0.0") >= 20, PATIENCE)
    seen = load.statuses_by_version()
    assert set(seen) == {"1.0.0", "2.0.0"}
    for version, statuses in seen.items():
        assert set(statuses) == {200, 500}, statuses
        for status, answers in statuses.items():
            assert answers == load.count(version=version, status=status)
            # An answer in flight when the load ended may be the server's alone.
            assert (
                server.answered[version, status] - 2 <= answers <= server.answered[version, status]
            )
    assert sum(server.answered.values()) - 2 <= load.count() <= sum(server.answered.values())
    assert load.count(status=500) == seen["1.0.0"][500] + seen["2.0.0"][500]
    assert (load.total, load.errors) == (load.count(), [])


def test_each_worker_keeps_its_connection_alive(server: VersionedServer) -> None:
    with Load(server.url(), workers=2) as load:
        load.wait_for(lambda: load.count() >= 50, PATIENCE)
    assert 1 <= len(server.connections) <= 2


def test_answers_without_the_header_are_unversioned(server: VersionedServer) -> None:
    with Load(server.url("/plain")) as load:
        load.wait_for(lambda: load.count() >= 10, PATIENCE)
    assert set(load.statuses_by_version()) == {UNVERSIONED}
    assert load.count(version=UNVERSIONED) == load.count() > load.count(version="1.0.0") == 0


def test_a_dropped_connection_is_an_error_and_the_load_reconnects(server: VersionedServer) -> None:
    with Load(server.url("/drop"), workers=2) as load:
        load.wait_for(lambda: len(load.errors) >= 3 and load.count() >= 30, PATIENCE)
    assert all(error.startswith("RemoteDisconnected: ") for error in load.errors), load.errors
    assert load.total == load.count() + len(load.errors)


def test_a_refused_connection_is_an_error(server: VersionedServer) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # nobody listens on it once closed
    with Load(f"http://127.0.0.1:{port}/") as load:
        load.wait_for(lambda: len(load.errors) >= 3, PATIENCE)
    assert load.errors[0].startswith("ConnectionRefusedError: ")
    assert (load.count(), load.statuses_by_version()) == (0, {})


def test_it_stops_at_once_when_the_server_hangs(server: VersionedServer) -> None:
    # The socket timeout (5 s) is longer than the load waits for its threads (2 s), so this
    # block's end raises unless the load interrupts the requests it has in flight.
    with Load(server.url("/hang"), workers=2) as load:
        assert server.hanging.wait(PATIENCE)  # both workers wait for an answer
    assert load.errors == []  # the interruption was the load's own doing, not a failure


def test_wait_for_says_what_it_saw_when_time_runs_out(server: VersionedServer) -> None:
    with Load(server.url()) as load:
        load.wait_for(lambda: load.count(status=500) >= 1, PATIENCE)
        with pytest.raises(AssertionError, match=r"not within 0\.2 s; .*'1\.0\.0': \{.*500: "):
            load.wait_for(lambda: False, timeout=0.2)


@pytest.mark.parametrize(
    ("url", "options", "complaint"),
    [
        ("https://127.0.0.1/", {}, "http://"),
        ("127.0.0.1:8080", {}, "http://"),
        ("http://127.0.0.1/", {"workers": 0}, "workers=0"),
        ("http://127.0.0.1/", {"rate": 0.0}, "rate=0.0"),
        ("http://127.0.0.1/", {"rate": -5.0}, "rate=-5.0"),
    ],
)
def test_unusable_arguments_are_refused(url: str, options: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        Load(url, **options)

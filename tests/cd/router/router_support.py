"""Real things for the router's tests: upstream HTTP servers, a router on a loop in a thread,
a router in its own process, and small HTTP clients on plain sockets."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import psutil

from shipyard.cd.router.__main__ import loop_factory
from shipyard.cd.router.client import RouterClient
from shipyard.cd.router.proxy import ProxySettings
from shipyard.cd.router.routes import RouteTable
from shipyard.cd.router.server import Router, RouterConfig
from shipyard.cd.router.state import RouterFiles

PATIENCE = 30.0  # seconds: only ever an upper bound for waiting on something to happen


def wait_for(condition: Callable[[], bool], timeout: float = PATIENCE) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes; return whether it held."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# ---------------------------------------------------------------------------------------------
# Upstream servers


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: UpstreamServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _count_body(self) -> int:
        total = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    return total
                while size:
                    piece = self.rfile.read(min(size, 1 << 20))
                    size -= len(piece)
                    total += len(piece)
                self.rfile.readline()
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining:
            piece = self.rfile.read(min(remaining, 1 << 20))
            if not piece:
                break
            remaining -= len(piece)
            total += len(piece)
        return total

    def _send(self, status: int, body: bytes, headers: Sequence[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        self.send_header("X-Upstream", self.server.name)
        self.send_header("X-Instance", str(self.server.port))
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        """Like GET, without a body."""
        self.do_GET()

    def do_POST(self) -> None:
        """Like GET (each path decides whether it reads a body)."""
        self.do_GET()

    def do_PUT(self) -> None:
        """Like GET."""
        self.do_GET()

    def do_GET(self) -> None:
        """Dispatch on the path; see UpstreamServer for what each does."""
        server = self.server
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        with server.lock:
            server.requests += 1
            server.paths.append(url.path)
        path = url.path
        if path == "/echo":
            self._send(200, self._body())
        elif path == "/headers":
            body = self._body()
            listed = [[name, value] for name, value in self.headers.items()]
            self._send(200, json.dumps({"headers": listed, "body": len(body)}).encode())
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("X-Upstream", server.name)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Trailer", "X-Checksum")
            self.end_headers()
            for index in range(int(query.get("n", "5"))):
                piece = f"part-{index}\n".encode()
                self.wfile.write(b"%x\r\n%b\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\nX-Checksum: 42\r\n\r\n")
        elif path == "/hop":
            self._send(
                200,
                b"hop",
                [
                    ("Connection", "keep-alive, X-Upstream-Hop"),
                    ("X-Upstream-Hop", "secret"),
                    ("Keep-Alive", "timeout=5"),
                    ("X-End-To-End", "kept"),
                ],
            )
        elif path == "/reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
        elif path == "/hold":
            server.held.set()
            self.connection.settimeout(PATIENCE)
            try:
                while self.connection.recv(1024):
                    pass
            except OSError:
                pass
            server.released.set()
            self.close_connection = True
        elif path == "/slow":
            server.held.set()
            time.sleep(float(query.get("seconds", "1")))
            self._send(200, b"slow")
        elif path == "/status":
            self._body()
            self._send(int(query.get("code", "200")), b"status")
        elif path == "/sink":
            self._send(200, str(self._count_body()).encode())
        elif path == "/source":
            size = int(query.get("bytes", "0"))
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            block = b"s" * (1 << 20)
            while size:
                piece = block[: min(size, len(block))]
                self.wfile.write(piece)
                size -= len(piece)
        elif path == "/early":
            self._send(413, b"too large", [("Connection", "close")])
            self.close_connection = True
        elif path == "/trickle":
            self.send_response(200)
            self.send_header("Content-Length", "10")
            self.end_headers()  # the head goes out now; the body a moment later, in two pieces
            for piece in (b"trick", b"led"):
                time.sleep(0.05)
                self.wfile.write(piece)
            time.sleep(0.05)
            self.wfile.write(b"!\n")
        elif path == "/healthz":
            self._send(server.health_status, b"health")
        elif path == "/switch":  # switches protocols whether asked or not
            self.wfile.write(
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n"
                b"Upgrade: websocket\r\n\r\n"
            )
            self.close_connection = True
        else:
            self._body()
            self._send(200, server.name.encode())


class UpstreamServer(ThreadingHTTPServer):
    """A real HTTP/1.1 upstream that answers with its name (a version), one thread each.

    Paths: ``/`` its name; ``/echo`` the request body; ``/headers`` the headers it got;
    ``/chunked`` a chunked body with a trailer; ``/hop`` hop-by-hop response headers;
    ``/reset`` a TCP reset; ``/hold`` waits for the peer to close; ``/slow?seconds=`` sleeps;
    ``/status?code=`` that status; ``/sink`` counts the body; ``/source?bytes=`` sends that many;
    ``/trickle`` sends its head, then its body in pieces.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.name = name
        self.port = self.server_address[1]
        self.lock = threading.Lock()
        self.requests = 0
        self.connections = 0
        self.paths: list[str] = []
        self.held = threading.Event()
        self.released = threading.Event()
        self.health_status = 200
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept, counting connections."""
        accepted = super().get_request()
        accepted[0].setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.lock:
            self.connections += 1
        return accepted

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> UpstreamServer:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.shutdown()
        self.server_close()


# ---------------------------------------------------------------------------------------------
# Route tables


def table(
    versions: dict[str, tuple[int, Sequence[str]]],
    *,
    sticky: dict[str, str] | None = None,
    health: dict[str, Any] | None = None,
) -> RouteTable:
    """A validated table from ``{name: (weight, [address, ...])}``."""
    return RouteTable.from_json(
        {
            "versions": [
                {"name": name, "weight": weight, "instances": list(addresses)}
                for name, (weight, addresses) in versions.items()
            ],
            "sticky": sticky,
            "health": health,
        }
    )


# ---------------------------------------------------------------------------------------------
# A router on an event loop in a thread of the test process


@dataclass
class RouterInThread:
    """A real router (public and admin ports on loopback) served by a loop in a thread."""

    state_root: Path
    env: str = "test"
    settings: ProxySettings = field(default_factory=ProxySettings)
    drain_timeout: float = 5.0
    loop_name: str = "auto"
    loop: asyncio.AbstractEventLoop = field(init=False)
    router: Router = field(init=False)
    client: RouterClient = field(init=False)

    def __post_init__(self) -> None:
        self.loop = loop_factory(self.loop_name)()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        config = RouterConfig(
            env=self.env,
            state_root=self.state_root,
            port=0,
            drain_timeout=self.drain_timeout,
            proxy=self.settings,
        )

        async def start() -> Router:
            router = Router(config)
            await router.start()
            return router

        self.router = asyncio.run_coroutine_threadsafe(start(), self.loop).result(PATIENCE)
        self.client = RouterClient.for_environment(self.state_root, self.env)

    @property
    def port(self) -> int:
        """The public port."""
        return self.router.public_port

    def connection(self) -> http.client.HTTPConnection:
        """A keep-alive HTTP client connection to the public port."""
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=PATIENCE)

    def get(self, path: str = "/", headers: dict[str, str] | None = None) -> Response:
        """One request on a new connection."""
        connection = self.connection()
        try:
            return request(connection, "GET", path, headers=headers)
        finally:
            connection.close()

    def stop(self) -> None:
        """Drain and stop the router, then the loop (once)."""
        if self.loop.is_closed():
            return
        future = asyncio.run_coroutine_threadsafe(self.router.stop(grace=1.0), self.loop)
        future.result(PATIENCE)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(PATIENCE)
        self.loop.close()


@dataclass(frozen=True)
class Response:
    """What a client got."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def version(self) -> str | None:
        """The version that served it, as the router said."""
        return self.headers.get("x-shipyard-version")


def request(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    *,
    body: Any = None,
    headers: dict[str, str] | None = None,
    chunked: bool = False,
) -> Response:
    """One request on ``connection`` (kept open for the next one)."""
    connection.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
    response = connection.getresponse()
    data = response.read()
    return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, data)


def raw_exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on a plain socket and return everything the router sends until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                piece = sock.recv(65536)
            except ConnectionResetError:
                break
            if not piece:
                break
            chunks.append(piece)
        return b"".join(chunks)


# ---------------------------------------------------------------------------------------------
# A router in its own process


@dataclass
class RouterProcess:
    """``python -m shipyard.cd.router`` as a real child process."""

    state_root: Path
    env: str
    port: int = 0
    extra: Sequence[str] = ()
    python_flags: Sequence[str] = ()
    process: subprocess.Popen[bytes] = field(init=False)
    log_path: Path = field(init=False)

    running: ClassVar[list[RouterProcess]] = []

    def __post_init__(self) -> None:
        self.log_path = self.state_root / f"router-{self.env}-{time.monotonic_ns()}.log"
        self.state_root.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    *self.python_flags,
                    "-m",
                    "shipyard.cd.router",
                    "--env",
                    self.env,
                    "--port",
                    str(self.port),
                    "--state-dir",
                    str(self.state_root),
                    *self.extra,
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        RouterProcess.running.append(self)
        files = RouterFiles.at(self.state_root, self.env)

        def announced() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"the router exited early:\n{self.log}")
            try:
                return files.read_address().pid == self.process.pid
            except Exception:  # noqa: BLE001 - not written yet, or half written
                return False

        assert wait_for(announced), f"the router did not start:\n{self.log}"
        address = files.read_address()
        self.port = address.public_port
        self.client = RouterClient.for_environment(self.state_root, self.env)

    @property
    def pid(self) -> int:
        """The router's process id."""
        return self.process.pid

    @property
    def log(self) -> str:
        """What the router wrote on stderr so far."""
        return self.log_path.read_text(errors="replace")

    def connection(self) -> http.client.HTTPConnection:
        """A keep-alive HTTP client connection to the public port."""
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=PATIENCE)

    def terminate(self) -> int:
        """SIGTERM, wait, and return the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(PATIENCE)

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(PATIENCE)


class RssSampler(threading.Thread):
    """Records the peak resident memory of a process while it runs."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self._stop_event = threading.Event()

    def run(self) -> None:
        """Sample until stopped."""
        while not self._stop_event.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop_event.wait(0.02)

    def finish(self) -> int:
        """Stop sampling; the peak in bytes."""
        self._stop_event.set()
        self.join(PATIENCE)
        return self.peak

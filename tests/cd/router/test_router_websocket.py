"""WebSockets through the router: the upgrade reaches the routed version, and the tunnel then
carries frames both ways, with a real WebSocket client and server (the ``websockets`` library)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from websockets.exceptions import ConnectionClosedOK
from websockets.sync.client import ClientConnection, connect
from websockets.sync.server import Server, ServerConnection, serve

from cd.router.router_support import (
    RouterInThread,
    UpstreamServer,
    raw_exchange,
    table,
    wait_for,
)


class EchoServer:
    """A WebSocket server that answers each text with its name, and ``push N`` with N
    messages of its own; binary messages come back as they are."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.finished = 0  # connections whose handler has returned
        self.server: Server = serve(self._handle, "127.0.0.1", 0, compression=None, max_size=None)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.socket.getsockname()[1]}"

    def _handle(self, connection: ServerConnection) -> None:
        try:
            self._echo(connection)
        finally:
            self.finished += 1

    def _echo(self, connection: ServerConnection) -> None:
        for message in connection:
            if isinstance(message, bytes):
                connection.send(message)
            elif message == "bye":
                return  # the server closes: the client must see a clean close
            elif message.startswith("push "):
                for number in range(int(message.split()[1])):
                    connection.send(f"{self.name} push {number}")
            else:
                connection.send(f"{self.name}: {message}")

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join()


@pytest.fixture
def websocket_server() -> Iterator[Callable[[str], EchoServer]]:
    started: list[EchoServer] = []

    def start(name: str) -> EchoServer:
        server = EchoServer(name)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _open(router: RouterInThread, headers: dict[str, str] | None = None) -> ClientConnection:
    return connect(
        f"ws://127.0.0.1:{router.port}/socket",
        proxy=None,
        compression=None,
        additional_headers=headers,
        max_size=None,
    )


def test_a_websocket_is_tunnelled_both_ways_to_the_routed_version(
    router: RouterInThread, websocket_server: Callable[[str], EchoServer]
) -> None:
    green = websocket_server("green")
    router.client.set_routes(table({"green": (100, [green.address])}))
    with _open(router) as socket:
        assert socket.response is not None
        assert socket.response.status_code == 101
        assert socket.response.headers["X-Shipyard-Version"] == "green"
        socket.send("hello")
        assert socket.recv(timeout=10) == "green: hello"
        large = bytes(range(256)) * 8192  # 2 MiB in one message: carried in pieces
        socket.send(large)
        assert socket.recv(timeout=30) == large
        socket.send("push 200")  # the server speaks without being asked
        pushed = [socket.recv(timeout=10) for _ in range(200)]
        assert pushed == [f"green push {n}" for n in range(200)]
    assert wait_for(lambda: green.finished == 1)  # the client's close reached the server
    stats = router.client.stats().versions["green"]
    assert stats.requests == 1
    assert stats.responses["1xx"] == 1
    assert stats.upstream_error_count == 0


def test_the_server_closing_the_websocket_closes_it_cleanly_for_the_client(
    router: RouterInThread, websocket_server: Callable[[str], EchoServer]
) -> None:
    green = websocket_server("green")
    router.client.set_routes(table({"green": (100, [green.address])}))
    with _open(router) as socket:
        socket.send("bye")
        with pytest.raises(ConnectionClosedOK):
            socket.recv(timeout=10)


def test_the_version_header_sends_a_websocket_to_the_version_it_names(
    router: RouterInThread,
    upstream: Callable[[str], UpstreamServer],
    websocket_server: Callable[[str], EchoServer],
) -> None:
    blue = upstream("blue")  # plain HTTP: it would refuse the upgrade
    green = websocket_server("green")
    router.client.set_routes(table({"blue": (100, [blue.address]), "green": (0, [green.address])}))
    assert router.get("/").version == "blue"
    with _open(router, {"X-Shipyard-Version": "green"}) as socket:
        socket.send("which")
        assert socket.recv(timeout=10) == "green: which"


def test_an_upstream_that_switches_protocols_unasked_is_a_502(
    router: RouterInThread, upstream: Callable[[str], UpstreamServer]
) -> None:
    blue = upstream("blue")
    router.client.set_routes(table({"blue": (100, [blue.address])}))
    answer = raw_exchange(
        router.port, b"GET /switch HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 502 ")
    assert router.client.stats().versions["blue"].upstream_errors["bad_response"] == 1

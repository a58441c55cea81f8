"""The router as an HTTP/1.1 proxy: bodies, framing, headers, reuse, failures, bad input."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from cd.router.router_support import (
    PATIENCE,
    RouterInThread,
    UpstreamServer,
    raw_exchange,
    request,
    table,
    wait_for,
)


@pytest.fixture
def routed(
    router: RouterInThread, upstream: Callable[[str], UpstreamServer]
) -> tuple[RouterInThread, UpstreamServer]:
    """A router sending everything to one upstream called blue."""
    blue = upstream("blue")
    router.client.set_routes(table({"blue": (100, [blue.address])}))
    return router, blue


@pytest.fixture(params=[False, True], ids=["new-upstream-connection", "pooled-upstream-connection"])
def pooled(request: pytest.FixtureRequest) -> bool:
    """Whether a request finds a pooled upstream connection (carried in callbacks) or needs a
    new one (carried in a task): failures must look the same either way."""
    return bool(request.param)


def _warm(router: RouterInThread, pooled: bool) -> None:
    if pooled:
        assert router.get("/").status == 200  # leaves an idle connection in the pool


def test_request_bodies_arrive_whole_with_a_length_or_chunked(
    routed: tuple[RouterInThread, UpstreamServer],
) -> None:
    router, _ = routed
    connection = router.connection()
    payload = bytes(range(256)) * 1000
    assert request(connection, "POST", "/echo", body=payload).body == payload
    pieces = [b"first;", b"", b"second " * 5000, b"third"]
    chunked = request(connection, "POST", "/echo", body=iter(pieces), chunked=True)
    assert chunked.status == 200
    assert chunked.body == b"".join(pieces)
    # The connection is still good for another request afterwards.
    assert request(connection, "GET", "/").body == b"blue"


def test_a_chunked_response_is_relayed_chunked_with_its_trailer(
    routed: tuple[RouterInThread, UpstreamServer],
) -> None:
    router, _ = routed
    answer = raw_exchange(
        router.port, b"GET /chunked?n=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    # Chunk boundaries may change on the way; the data and the trailer may not.
    data, trailer = _dechunk(body)
    assert data == b"part-0\npart-1\npart-2\n"
    assert trailer == b"X-Checksum: 42\r\n"


def _dechunk(body: bytes) -> tuple[bytes, bytes]:
    data = b""
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert body.endswith(b"\r\n")
            return data, body[:-2]
        data += body[:size]
        assert body[size : size + 2] == b"\r\n"
        body = body[size + 2 :]


def test_an_http_1_0_client_gets_a_chunked_response_unchunked_and_closed(
    routed: tuple[RouterInThread, UpstreamServer],
) -> None:
    router, _ = routed
    answer = raw_exchange(router.port, b"GET /chunked?n=2 HTTP/1.0\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head
    assert b"Connection: close" in head
    assert body == b"part-0\npart-1\n"


def test_100_continue_is_relayed_before_the_body_is_sent(
    routed: tuple[RouterInThread, UpstreamServer],
) -> None:
    router, _ = routed
    with socket.create_connection(("127.0.0.1", router.port), timeout=PATIENCE) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = b""
        while b"\r\n\r\n" not in interim:
            interim += sock.recv(1)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n")
        sock.sendall(b"hello")
        answer = b""
        while not answer.endswith(b"hello"):
            piece = sock.recv(65536)
            assert piece, answer
            answer += piece
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")


def test_hop_by_hop_headers_are_removed_and_forwarding_headers_set(
    routed: tuple[RouterInThread, UpstreamServer],
) -> None:
    router, _ = routed
    connection = router.connection()
    response = request(
        connection,
        "GET",
        "/headers",
        headers={
            "Host": "shop.example",
            "Connection": "X-Private-Hop",
            "X-Private-Hop": "secret",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Proxy-Authorization": "Basic abc",
            "X-Forwarded-For": "203.0.113.7",
            "X-End-To-End": "kept",
        },
    )
    received = {name.lower(): value for name, value in json.loads(response.body)["headers"]}
    for gone in ("x-private-hop", "keep-alive", "te", "proxy-authorization"):
        assert gone not in received
    assert received["x-end-to-end"] == "kept"
    assert received["host"] == "shop.example"
    assert received["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert received["x-forwarded-proto"] == "http"
    assert received["x-forwarded-host"] == "shop.example"
    assert received["forwarded"] == 'for=127.0.0.1;proto=http;host="shop.example"'
    assert received["via"] == "1.1 shipyard"

    hop = request(connection, "GET", "/hop")
    assert hop.body == b"hop"
    assert "x-upstream-hop" not in hop.headers
    assert "keep-alive" not in hop.headers
    assert hop.headers["x-end-to-end"] == "kept"
    assert hop.headers["x-shipyard-version"] == "blue"


def test_upstream_connections_are_reused_across_requests_and_clients(
    routed: tuple[RouterInThread, UpstreamServer],
) -> None:
    router, blue = routed
    for _ in range(5):
        connection = router.connection()
        for _ in range(20):
            assert request(connection, "GET", "/").status == 200
        connection.close()
    assert blue.requests == 100
    assert blue.connections == 1


def test_a_client_that_disconnects_cancels_its_upstream_request(
    routed: tuple[RouterInThread, UpstreamServer], pooled: bool
) -> None:
    router, blue = routed
    _warm(router, pooled)
    sock = socket.create_connection(("127.0.0.1", router.port), timeout=PATIENCE)
    sock.sendall(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
    assert blue.held.wait(PATIENCE)
    sock.close()
    assert blue.released.wait(PATIENCE), "the upstream request was not cancelled"
    assert wait_for(lambda: router.client.stats().versions["blue"].client_aborts == 1)


def test_an_upstream_reset_is_a_502_and_counted(
    routed: tuple[RouterInThread, UpstreamServer], pooled: bool
) -> None:
    router, _ = routed
    _warm(router, pooled)
    connection = router.connection()
    # On a pooled connection the reset might be a stale keep-alive connection: the GET is
    # tried once more on a new connection, which is reset too.
    assert request(connection, "GET", "/reset").status == 502
    assert request(connection, "GET", "/").status == 200
    stats = router.client.stats().versions["blue"]
    assert stats.upstream_errors["reset"] == 1
    assert stats.responses == {"1xx": 0, "2xx": 1 + pooled, "3xx": 0, "4xx": 0, "5xx": 1}


def test_a_silent_upstream_is_a_504_and_counted(
    start_router: Callable[..., RouterInThread],
    upstream: Callable[[str], UpstreamServer],
    pooled: bool,
) -> None:
    router = start_router(upstream_timeout=0.3, sweep_interval=0.05)
    blue = upstream("blue")
    router.client.set_routes(table({"blue": (100, [blue.address])}))
    _warm(router, pooled)
    assert router.get("/slow?seconds=3").status == 504
    assert router.client.stats().versions["blue"].upstream_errors["timeout"] == 1


def test_an_early_response_is_relayed_and_the_connection_closed(
    routed: tuple[RouterInThread, UpstreamServer],
) -> None:
    router, _ = routed
    with socket.create_connection(("127.0.0.1", router.port), timeout=PATIENCE) as sock:
        sock.sendall(b"POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
        sock.sendall(b"x" * 65536)
        answer = b""
        while True:
            try:
                piece = sock.recv(65536)
            except ConnectionResetError:
                break
            if not piece:
                break
            answer += piece
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_a_head_that_trickles_in_too_slowly_gets_408(
    start_router: Callable[..., RouterInThread], upstream: Callable[[str], UpstreamServer]
) -> None:
    router = start_router(head_timeout=0.5, sweep_interval=0.05)
    blue = upstream("blue")
    router.client.set_routes(table({"blue": (100, [blue.address])}))
    with socket.create_connection(("127.0.0.1", router.port), timeout=PATIENCE) as sock:
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"z" * 100:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            if _readable(sock):
                break
            time.sleep(0.02)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert blue.requests == 0


def _readable(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


def test_head_requests_get_no_body_but_their_length(
    routed: tuple[RouterInThread, UpstreamServer],
) -> None:
    router, _ = routed
    answer = raw_exchange(router.port, b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"Content-Length: 4" in head
    assert body == b""


def test_pipelined_requests_are_answered_in_order(
    routed: tuple[RouterInThread, UpstreamServer],
) -> None:
    router, _ = routed
    answer = raw_exchange(
        router.port,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none"
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n"
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert answer.count(b"HTTP/1.1 200 OK") == 3
    assert answer.index(b"one") < answer.index(b"two") < answer.rindex(b"blue")


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400),
        (b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nExpect: magic\r\n\r\n", 417),
        (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n", 501),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 70000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Many: 1\r\n" * 101 + b"\r\n", 431),
    ],
)
def test_malformed_requests_are_rejected_with_the_right_status(
    routed: tuple[RouterInThread, UpstreamServer], data: bytes, status: int
) -> None:
    router, blue = routed
    before = router.client.routes()
    seen = len(blue.paths)
    answer = raw_exchange(router.port, data)
    assert answer.startswith(b"HTTP/1.1 %d " % status), answer[:200]
    after = router.client.routes()
    assert after.revision == before.revision
    assert after.table == before.table
    if b"zz" not in data:  # a bad chunk is only seen after the head went upstream
        assert len(blue.paths) == seen
    # The router still serves.
    assert router.get("/").status == 200


def test_requests_without_routes_get_503(router: RouterInThread) -> None:
    response = router.get("/")
    assert response.status == 503
    assert router.client.stats().unrouted == 1


def test_an_absolute_url_target_is_forwarded_as_a_path_with_its_host(
    routed: tuple[RouterInThread, UpstreamServer],
) -> None:
    router, blue = routed
    answer = raw_exchange(
        router.port,
        b"GET http://shop.example/headers?q=1 HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert blue.paths[-1] == "/headers"
    body = json.loads(answer.partition(b"\r\n\r\n")[2])
    received = {name.lower(): value for name, value in body["headers"]}
    assert received["x-forwarded-host"] == "shop.example"


def test_an_answer_arriving_in_pieces_is_relayed_whole_and_the_connection_reused(
    routed: tuple[RouterInThread, UpstreamServer], pooled: bool
) -> None:
    router, blue = routed
    _warm(router, pooled)
    connection = router.connection()
    for _ in range(3):
        answer = request(connection, "GET", "/trickle")
        assert (answer.status, answer.body) == (200, b"trickled!\n")
        assert request(connection, "GET", "/").body == b"blue"
    assert blue.connections == 1


@pytest.fixture
def forgetful_upstream() -> Iterator[tuple[str, list[int]]]:
    """An upstream that answers the first request on each connection, then closes the
    connection when the next request arrives, without answering it (as a keep-alive server
    does when its idle timeout strikes just then). Yields its address and, per connection,
    the number of requests it saw."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[int] = []

    def serve(sock: socket.socket) -> None:
        with sock:
            index = len(seen)
            seen.append(0)
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(65536)
            seen[index] += 1
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nforgetful")
            if sock.recv(65536):
                seen[index] += 1

    def accept() -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(sock,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield f"127.0.0.1:{listener.getsockname()[1]}", seen
    listener.close()


def test_a_pooled_connection_closed_by_the_upstream_costs_no_request(
    router: RouterInThread, forgetful_upstream: tuple[str, list[int]]
) -> None:
    address, seen = forgetful_upstream
    router.client.set_routes(table({"blue": (100, [address])}))
    connection = router.connection()
    for _ in range(5):
        answer = request(connection, "GET", "/")
        assert (answer.status, answer.body) == (200, b"forgetful")
    stats = router.client.stats().versions["blue"]
    assert stats.responses["2xx"] == 5
    assert stats.upstream_error_count == 0
    assert wait_for(lambda: sum(seen) == 9)  # each request after the first was sent twice
    assert seen[1:] and all(count in (1, 2) for count in seen)


def test_an_idle_client_connection_is_closed_after_the_keep_alive_timeout(
    start_router: Callable[..., RouterInThread], upstream: Callable[[str], UpstreamServer]
) -> None:
    router = start_router(keepalive_timeout=0.3, sweep_interval=0.05)
    blue = upstream("blue")
    router.client.set_routes(table({"blue": (100, [blue.address])}))
    _warm(router, True)
    with socket.create_connection(("127.0.0.1", router.port), timeout=PATIENCE) as sock:
        for _ in range(3):  # answered in callbacks; each answer restarts the idle timer
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b"\r\n\r\nblue"):  # the head and body may come apart
                piece = sock.recv(65536)
                assert piece, f"the router closed the connection after {answer!r}"
                answer += piece
            time.sleep(0.1)
        started = time.monotonic()
        assert sock.recv(65536) == b""  # closed by the router
        assert 0.1 < time.monotonic() - started < 5

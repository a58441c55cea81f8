"""The router as its own process: isolation, kill -9 and restart, graceful stop, bounded memory."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from cd.router.router_support import (
    PATIENCE,
    RouterProcess,
    RssSampler,
    UpstreamServer,
    request,
    table,
)

MIB = 1 << 20
BOUND = 64 * MIB
"""The most the router's memory may grow by while it streams a body."""
BODY = 4 * BOUND
"""Bodies four times the bound: holding even a part of one would break it."""


def test_the_router_process_imports_no_orm_and_no_other_pillar(
    state_root: Path, upstream: Callable[[str], UpstreamServer]
) -> None:
    blue = upstream("blue")
    router = RouterProcess(state_root, "isolated", python_flags=["-X", "importtime"])
    try:
        router.client.set_routes(table({"blue": (100, [blue.address])}))
        assert request(router.connection(), "GET", "/").body == b"blue"
        router.client.stats()
        router.client.metrics()
    finally:
        assert router.terminate() == 0
    imported = {
        line.split("|")[-1].strip()
        for line in router.log.splitlines()
        if line.startswith("import time:")
    }
    assert "shipyard.cd.router.proxy" in imported  # importtime did report the router's imports
    forbidden = ("sqlalchemy", "alembic", "psycopg", "typer", "rich", "pydantic")
    pillars = ("shipyard.ci", "shipyard.release", "shipyard.gates", "shipyard.monitor")
    pillars += ("shipyard.orchestrator", "shipyard.cli", "shipyard.core.store")
    for module in imported:
        assert not module.startswith(forbidden), module
        assert not module.startswith(pillars), module


def test_after_kill_9_a_restart_restores_the_routes_from_the_state_file(
    state_root: Path, upstream: Callable[[str], UpstreamServer]
) -> None:
    blue, green = upstream("blue"), upstream("green")
    first = RouterProcess(state_root, "prod")
    routes = table(
        {"blue": (70, [blue.address]), "green": (30, [green.address])},
        sticky={"header": "X-User"},
    )
    first.client.set_routes(routes)
    first.client.set_weights({"blue": 0, "green": 100})
    first.client.drain(blue.address)
    before = first.client.routes()
    first.kill()

    second = RouterProcess(state_root, "prod", port=first.port)
    try:
        after = second.client.routes()
        assert after.revision == before.revision
        assert after.table == before.table
        assert after.table.weights == {"blue": 0, "green": 100}
        assert [i.drained for i in after.instances] == [True, False]
        assert request(second.connection(), "GET", "/").version == "green"
        assert "restored routes revision 3" in second.log
    finally:
        assert second.terminate() == 0


def test_an_unusable_state_file_is_set_aside_and_the_router_still_starts(
    state_root: Path,
) -> None:
    folder = state_root / "router" / "broken"
    folder.mkdir(parents=True)
    (folder / "routes.json").write_text("{ this is not json")
    router = RouterProcess(state_root, "broken")
    try:
        assert router.client.routes().table.versions == ()
        assert list(folder.glob("routes.json.unusable-*"))
        assert "unusable" in router.log
    finally:
        assert router.terminate() == 0


def test_a_port_in_use_is_a_clear_error(state_root: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "shipyard.cd.router",
                "--env",
                "clash",
                "--port",
                str(port),
                "--state-dir",
                str(state_root),
            ],
            capture_output=True,
            text=True,
            timeout=PATIENCE,
            check=False,
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    public_admin = subprocess.run(
        [
            sys.executable,
            "-m",
            "shipyard.cd.router",
            "--env",
            "clash",
            "--port",
            "0",
            "--admin-host",
            "0.0.0.0",  # noqa: S104 - refusing it is what this checks
            "--state-dir",
            str(state_root),
        ],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=False,
    )
    assert public_admin.returncode == 2
    assert "must listen on loopback" in public_admin.stderr


def test_sigterm_lets_a_request_in_flight_finish(
    state_root: Path, upstream: Callable[[str], UpstreamServer]
) -> None:
    blue = upstream("blue")
    router = RouterProcess(state_root, "draining")
    router.client.set_routes(table({"blue": (100, [blue.address])}))
    connection = router.connection()
    connection.request("GET", "/slow?seconds=1")
    assert blue.held.wait(PATIENCE)
    router.process.terminate()
    response = connection.getresponse()
    assert (response.status, response.read()) == (200, b"slow")
    assert response.getheader("Connection") == "close"
    assert router.process.wait(PATIENCE) == 0
    assert "stopped" in router.log


def _generated(total: int) -> Iterator[bytes]:
    block = b"x" * MIB
    sent = 0
    while sent < total:
        piece = block[: min(MIB, total - sent)]
        sent += len(piece)
        yield piece


def test_a_body_four_times_the_bound_streams_both_ways_in_bounded_memory(
    state_root: Path, upstream: Callable[[str], UpstreamServer]
) -> None:
    blue = upstream("blue")
    router = RouterProcess(state_root, "big")
    try:
        router.client.set_routes(table({"blue": (100, [blue.address])}))
        request(router.connection(), "GET", "/")  # warm up: pools, buffers
        sampler = RssSampler(router.pid)
        baseline = sampler.peak
        sampler.start()

        upload = router.connection()
        answer = request(upload, "POST", "/sink", body=_generated(BODY), chunked=True)
        assert answer.body == str(BODY).encode()
        upload.close()

        with socket.create_connection(("127.0.0.1", router.port), timeout=PATIENCE) as sock:
            sock.sendall(b"GET /source?bytes=%d HTTP/1.1\r\nHost: x\r\n\r\n" % BODY)
            received = _drain_response(sock)
        assert received == BODY

        peak = sampler.finish()
    finally:
        assert router.terminate() == 0
    assert peak - baseline < BOUND, (baseline, peak)


def _drain_response(sock: socket.socket) -> int:
    """Read one response with a Content-Length; return the body size, keeping nothing."""
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    head, _, rest = head.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    received = len(rest)
    buffer = bytearray(MIB)
    while received < length:
        count = sock.recv_into(buffer)
        assert count, "the router closed early"
        received += count
    return received


def test_many_concurrent_clients_through_a_router_process(
    state_root: Path, upstream: Callable[[str], UpstreamServer]
) -> None:
    blue, green = upstream("blue"), upstream("green")
    router = RouterProcess(state_root, "busy")
    try:
        router.client.set_routes(
            table({"blue": (50, [blue.address]), "green": (50, [green.address])})
        )
        failures: list[str] = []

        def client() -> None:
            connection = http.client.HTTPConnection("127.0.0.1", router.port, timeout=PATIENCE)
            for _ in range(100):
                response = request(connection, "GET", "/")
                if response.status != 200:
                    failures.append(str(response.status))
            connection.close()

        threads = [threading.Thread(target=client) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        stats = router.client.stats()
        assert sum(v.requests for v in stats.versions.values()) == 1600
    finally:
        assert router.terminate() == 0

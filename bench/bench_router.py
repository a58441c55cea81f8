"""Router benchmarks: throughput and added latency through the router against the same upstream
reached directly (wrk), how fast a weight change reaches every request, and the router's memory.

Run with ``python bench/run.py router``; needs ``wrk`` (Debian: ``apt-get install -y wrk``).
The upstream is a lean asyncio HTTP/1.1 server with a fixed response, started by this file.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from shipyard.cd.router.client import RouterClient
from shipyard.cd.router.routes import RouteTable
from shipyard.cd.router.state import RouterFiles

ROUNDS = 3
SECONDS = 5
CONNECTIONS = 16
# For the latency runs each connection waits a random 0..2*PACE_MS ms (wrk's delay()) before
# its next request: a steady rate well below saturation, without the 16 connections moving in
# lockstep bursts (a fixed delay keeps them synchronised, which measures burst queueing).
PACE_MS = 2
FLIPS = 10

_PACED = f"""
function delay() return math.random(0, {2 * PACE_MS}) end
done = function(summary, latency, requests)
  io.write(string.format("p50_us %d\\n", latency:percentile(50)))
  io.write(string.format("p99_us %d\\n", latency:percentile(99)))
  io.write(string.format("requests %d\\n", summary.requests))
end
"""

_LOCKSTEP = _PACED.replace(f"math.random(0, {2 * PACE_MS})", str(PACE_MS))


# --- the upstream: run as ``python bench_router.py upstream NAME`` ---------------------------


class _FixedResponse(asyncio.Protocol):
    """Answers every request with the same small body; honours keep-alive and pipelining."""

    def __init__(self, name: bytes) -> None:
        body = name + b"\n"
        self.response = (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%b"
            % (len(body), body)
        )
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        """Answer every complete request in the buffer."""
        buffer = self.buffer + data
        out = []
        close = False
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buffer[:end].lower()
            length = 0
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                length = int(head[at + 17 :].split(b"\r\n", 1)[0])
            if len(buffer) < end + 4 + length:
                break
            buffer = buffer[end + 4 + length :]
            out.append(self.response)
            if b"\r\nconnection: close" in head:
                close = True
                break
        self.buffer = buffer
        if out and self.transport is not None:
            self.transport.write(b"".join(out))
            if close:
                self.transport.close()


async def _serve_upstream(name: str) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _FixedResponse(name.encode()), "127.0.0.1", 0, backlog=1024
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


# --- helpers -----------------------------------------------------------------------------------


def _start_upstream(name: str) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, __file__, "upstream", name], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    return process, int(process.stdout.readline())


def _start_router(state: Path) -> tuple[subprocess.Popen[bytes], RouterClient, int]:
    log = (state / "router.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shipyard.cd.router",
            "--env",
            "bench",
            "--port",
            "0",
            "--state-dir",
            str(state),
        ],
        stderr=log,
    )
    files = RouterFiles.at(state, "bench")
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(Exception):  # not written yet, or half written
            address = files.read_address()
            if address.pid == process.pid:
                break
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("the router did not start")
        time.sleep(0.05)
    return process, RouterClient.for_environment(state, "bench"), address.public_port


_HAPROXY = """
global
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend public
  bind 127.0.0.1:{port}
  default_backend blue
backend blue
  http-reuse always
  server blue 127.0.0.1:{upstream}
"""


def _start_haproxy(folder: Path, upstream: int) -> tuple[subprocess.Popen[bytes], int] | None:
    """HAProxy with one thread in front of the same upstream (a reference point), if installed."""
    if shutil.which("haproxy") is None:
        return None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    config = folder / "haproxy.cfg"
    config.write_text(_HAPROXY.format(port=port, upstream=upstream))
    process = subprocess.Popen(
        ["haproxy", "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
            return process, port
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("haproxy did not start")


def _wrk(port: int, *extra: str) -> str:
    result = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{SECONDS}s", *extra, f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def _throughput(output: str) -> float:
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]


def _p99_ms(output: str) -> float:
    return int(re.search(r"p99_us (\d+)", output).group(1)) / 1000  # type: ignore[union-attr]


def _paced_rate(output: str) -> float:
    return int(re.search(r"requests (\d+)", output).group(1)) / SECONDS  # type: ignore[union-attr]


def _latency(direct_port: int, port: int, script_text: str) -> tuple[list[float], ...]:
    """p99 (ms) direct and proxied, and the proxied rate, for ROUNDS paced runs each."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(script_text)
    direct, proxied, rates = [], [], []
    try:
        for _ in range(ROUNDS):
            direct.append(_p99_ms(_wrk(direct_port, "-s", script.name)))
            out = _wrk(port, "-s", script.name)
            proxied.append(_p99_ms(out))
            rates.append(_paced_rate(out))
    finally:
        Path(script.name).unlink()
    return direct, proxied, rates


class _Peak(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        """Sample until stopped."""
        while not self.stopped.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self.stopped.wait(0.05)


class _Poller(threading.Thread):
    """A client asking as fast as it can on one keep-alive connection; records who answered."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.seen: list[tuple[float, bytes]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        """Ask until stopped."""
        with socket.create_connection(("127.0.0.1", self.port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
            buffer = b""
            while not self.stopped.is_set():
                sock.sendall(request)
                while True:
                    end = buffer.find(b"\r\n\r\n")
                    if end >= 0:
                        head = buffer[:end]
                        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                        if len(buffer) >= end + 4 + length:
                            break
                    buffer += sock.recv(65536)
                version = head.split(b"X-Shipyard-Version: ")[1].split(b"\r\n")[0]
                buffer = buffer[end + 4 + length :]
                self.seen.append((time.perf_counter(), version))


def _switch_ms(seen: list[tuple[float, bytes]], start: float, end: float, new: bytes) -> float:
    """From ``start`` until the first answer after which every answer came from ``new``."""
    window = [(t, v) for t, v in seen if start <= t < end]
    stable_from = None
    for t, version in window:
        if version != new:
            stable_from = None
        elif stable_from is None:
            stable_from = t
    if stable_from is None:
        raise RuntimeError("the new version never took all the traffic")
    return (stable_from - start) * 1000


# --- the benchmark -----------------------------------------------------------------------------


def run(report: object) -> None:
    """Measure the router against the upstream reached directly, in this invocation."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install -y wrk)")
    processes: list[subprocess.Popen[str] | subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as folder:
        try:
            blue, blue_port = _start_upstream("blue")
            green, green_port = _start_upstream("green")
            router, client, port = _start_router(Path(folder))
            processes += [blue, green, router]
            client.set_routes(
                RouteTable.from_json(
                    {
                        "versions": [
                            {
                                "name": "blue",
                                "weight": 100,
                                "instances": [f"127.0.0.1:{blue_port}"],
                            },
                            {
                                "name": "green",
                                "weight": 0,
                                "instances": [f"127.0.0.1:{green_port}"],
                            },
                        ]
                    }
                )
            )
            subprocess.run(
                ["wrk", "-t1", "-c16", "-d1s", f"http://127.0.0.1:{port}/"],
                capture_output=True,
                check=True,
            )  # warm-up

            haproxy = _start_haproxy(Path(folder), blue_port)
            if haproxy is not None:
                processes.append(haproxy[0])
            peak = _Peak(router.pid)
            peak.start()
            direct, proxied, reference = [], [], []
            for _ in range(ROUNDS):
                direct.append(_throughput(_wrk(blue_port)))
                proxied.append(_throughput(_wrk(port)))
                if haproxy is not None:
                    reference.append(_throughput(_wrk(haproxy[1])))
            direct_p99, proxied_p99, rates = _latency(blue_port, port, _PACED)
            lockstep = _latency(blue_port, port, _LOCKSTEP)
            peak.stopped.set()
            peak.join()

            report.ratio(  # type: ignore[attr-defined]
                "throughput, wrk -t1 -c16 (median of 3 x 5 s)",
                statistics.median(proxied),
                statistics.median(direct),
                unit="req/s",
                baseline_name="upstream directly",
                min_ratio=0.5,
                note=f"rounds direct {[round(d) for d in direct]}, "
                f"proxied {[round(p) for p in proxied]}",
            )
            if reference:
                report.ratio(  # type: ignore[attr-defined]
                    "reference: HAProxy (1 thread), same upstream, same rounds",
                    statistics.median(reference),
                    statistics.median(direct),
                    unit="req/s",
                    baseline_name="upstream directly",
                    note="what a C proxy reaches on this machine; for information",
                )
            added = statistics.median(proxied_p99) - statistics.median(direct_p99)
            report.figure(  # type: ignore[attr-defined]
                f"added p99 latency at ~{statistics.median(rates):.0f} req/s",
                added,
                unit="ms",
                max_value=2.0,
                note=f"p99 direct {statistics.median(direct_p99):.3f} ms, "
                f"proxied {statistics.median(proxied_p99):.3f} ms",
            )
            report.figure(  # type: ignore[attr-defined]
                f"added p99 latency, fixed {PACE_MS} ms delay (lockstep bursts of 16)",
                statistics.median(lockstep[1]) - statistics.median(lockstep[0]),
                unit="ms",
                note=f"p99 direct {statistics.median(lockstep[0]):.3f} ms, "
                f"proxied {statistics.median(lockstep[1]):.3f} ms, "
                f"~{statistics.median(lockstep[2]):.0f} req/s; for information",
            )
            report.figure(  # type: ignore[attr-defined]
                "router RSS under wrk load", peak.peak / (1 << 20), unit="MB", max_value=80.0
            )

            poller = _Poller(port)
            poller.start()
            time.sleep(0.5)
            switches = []
            marks = []
            for flip in range(FLIPS):
                new = "green" if flip % 2 == 0 else "blue"
                start = time.perf_counter()
                client.set_weights({new: 100, "blue" if new == "green" else "green": 0})
                marks.append((start, new))
                time.sleep(0.3)
            poller.stopped.set()
            poller.join()
            ends = [m[0] for m in marks[1:]] + [time.perf_counter()]
            for (start, new), end in zip(marks, ends, strict=True):
                switches.append(_switch_ms(poller.seen, start, end, new.encode()))
            report.figure(  # type: ignore[attr-defined]
                f"weight change until every request goes to the new version (max of {FLIPS})",
                max(switches),
                unit="ms",
                max_value=50.0,
                note=f"median {statistics.median(switches):.2f} ms; "
                f"poller {len(poller.seen) / (FLIPS * 0.3 + 0.5):.0f} req/s",
            )
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(30)


if __name__ == "__main__" and sys.argv[1:2] == ["upstream"]:
    asyncio.run(_serve_upstream(sys.argv[2]))

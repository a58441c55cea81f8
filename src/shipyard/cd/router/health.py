"""Active health checks: each instance's health path is polled, failing instances rest.

Runs only when the route table asks for it (``health: {path, interval, timeout}``). Two failed
checks in a row take an instance out of rotation; one good check brings it back.
"""

from __future__ import annotations

import asyncio
import logging

from shipyard.cd.router.balancer import Balancer, InstanceState
from shipyard.cd.router.routes import HealthCheck

log = logging.getLogger("shipyard.router")

FAILURES_TO_REST = 2
"""Consecutive failed checks after which an instance gets no new requests."""


class HealthProber:
    """Polls every routed instance's health path while the table has a health check."""

    def __init__(self, balancer: Balancer) -> None:
        self.balancer = balancer

    async def run(self) -> None:
        """Check forever (until cancelled), following the current table."""
        while True:
            plan = self.balancer.plan
            check = plan.table.health
            states = [state for version in plan.versions for state in version.instances]
            if check is None:
                for state in states:
                    state.probe_healthy, state.probe_failures = True, 0
                await asyncio.sleep(0.5)
                continue
            await asyncio.gather(*(self._check(state, check) for state in states))
            await asyncio.sleep(check.interval)

    async def _check(self, state: InstanceState, check: HealthCheck) -> None:
        healthy = await probe(state.host, state.port, check.path, check.timeout)
        if healthy:
            if not state.probe_healthy:
                log.info("instance %s passes its health check again", state.address)
            state.probe_healthy, state.probe_failures = True, 0
            return
        state.probe_failures += 1
        if state.probe_failures >= FAILURES_TO_REST and state.probe_healthy:
            state.probe_healthy = False
            log.warning("instance %s fails its health check %s", state.address, check.path)


async def probe(host: str, port: int, path: str, timeout: float) -> bool:
    """Whether ``GET path`` on ``host:port`` answers 2xx or 3xx within ``timeout`` seconds."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: shipyard-router\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            line = await reader.readline()
    except (OSError, TimeoutError):
        return False
    finally:
        if writer is not None:
            writer.close()
    parts = line.split(b" ", 2)
    return len(parts) >= 2 and parts[0].startswith(b"HTTP/1.") and parts[1][:1] in (b"2", b"3")

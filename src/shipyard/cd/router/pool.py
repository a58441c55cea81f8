"""Keep-alive connections to upstream instances, kept per instance between requests.

A connection comes back only after a clean exchange; one that its instance closed, that holds
unread bytes or that idled too long is closed instead of reused. Nothing here routes.
"""

from __future__ import annotations

import asyncio

from shipyard.cd.router.balancer import InstanceState
from shipyard.cd.router.connection import Connection, UpstreamConnection


class UpstreamPool:
    """Idle upstream connections by instance address, and how new ones are opened."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        size: int,
        idle_timeout: float,
        connect_timeout: float,
    ) -> None:
        self.loop = loop
        self.size = size
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.connections: set[Connection] = set()
        self.idle: dict[str, list[UpstreamConnection]] = {}

    def take(self, instance: InstanceState) -> UpstreamConnection | None:
        """An idle connection to ``instance`` that can carry a request, if there is one."""
        idle = self.idle.get(instance.address)
        while idle:
            upstream = idle.pop()
            if upstream.reusable:
                return upstream
            upstream.close()
        return None

    def give(self, instance: InstanceState, upstream: UpstreamConnection, now: float) -> None:
        """Keep ``upstream`` (idle since ``now``) for the next request to ``instance``, or
        close it if the pool is full."""
        idle = self.idle.get(instance.address)
        if idle is None:
            idle = self.idle[instance.address] = []
        if len(idle) >= self.size:
            upstream.close()
            return
        upstream.idle_since = now
        upstream.read_timeout = 0.0
        idle.append(upstream)

    async def connect(self, instance: InstanceState) -> UpstreamConnection:
        """A new connection to ``instance``; ``OSError`` or ``TimeoutError`` if none."""
        loop = self.loop
        connections = self.connections
        _, protocol = await asyncio.wait_for(
            loop.create_connection(
                lambda: UpstreamConnection(loop, connections), instance.host, instance.port
            ),
            self.connect_timeout,
        )
        return protocol

    def forget(self, addresses: set[str]) -> None:
        """Close the idle connections to ``addresses``."""
        for address in list(self.idle):
            if address in addresses:
                for upstream in self.idle.pop(address):
                    upstream.close()

    def sweep(self, now: float) -> None:
        """Close the idle connections that are unusable or idle for too long."""
        oldest = now - self.idle_timeout
        for address, idle in list(self.idle.items()):
            keep = [u for u in idle if u.reusable and u.idle_since > oldest]
            for upstream in idle:
                if upstream not in keep:
                    upstream.close()
            if keep:
                self.idle[address] = keep
            else:
                del self.idle[address]

    def close(self) -> None:
        """Close every idle connection."""
        self.forget(set(self.idle))

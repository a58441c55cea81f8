"""One environment's router as a whole: data path, admin API, saved routes, health checks.

``Router`` starts and stops them together and is the only place where the route table changes:
validated, saved to disk, then installed for the next request. It runs on any asyncio loop,
in its own process (``python -m shipyard.cd.router``) or, for tests, on a loop in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipyard.cd.router.admin import AdminApi
from shipyard.cd.router.balancer import Balancer
from shipyard.cd.router.errors import (
    RevisionConflict,
    RouterConfigError,
    RouterError,
    RouterStateError,
)
from shipyard.cd.router.feedback import check_path
from shipyard.cd.router.health import HealthProber
from shipyard.cd.router.metrics import metrics_text
from shipyard.cd.router.proxy import Proxy, ProxySettings
from shipyard.cd.router.routes import RouteTable
from shipyard.cd.router.state import AdminAddress, RouterFiles
from shipyard.cd.router.stats import RouterStats, StatsBook

log = logging.getLogger("shipyard.router")


@dataclass(frozen=True)
class RouterConfig:
    """Where a router listens, where its files are, and how long it waits."""

    env: str
    state_root: Path
    port: int
    host: str = "127.0.0.1"
    admin_port: int = 0
    admin_host: str = "127.0.0.1"
    drain_timeout: float = 10.0
    proxy: ProxySettings = field(default_factory=ProxySettings)

    def check(self) -> None:
        """Refuse options that cannot work: a non-loopback admin address, a bad port."""
        for name, port in (("--port", self.port), ("--admin-port", self.admin_port)):
            if not 0 <= port <= 65535:
                raise RouterConfigError(f"{name} {port} is not a port number (0 to 65535)")
        if not _is_loopback(self.admin_host):
            raise RouterConfigError(
                f"the admin API must listen on loopback, not {self.admin_host}",
                hint="use 127.0.0.1 or ::1; the admin API changes where traffic goes",
            )
        if self.drain_timeout < 0:
            raise RouterConfigError("the drain timeout cannot be negative")
        if self.proxy.feedback_path is not None:
            check_path(self.proxy.feedback_path)


class Router:
    """A running router: call ``start``, then ``stop`` (or ``run_until_signalled``)."""

    def __init__(self, config: RouterConfig) -> None:
        config.check()
        self.config = config
        self.files = RouterFiles.at(config.state_root, config.env)
        self.stats = StatsBook()
        self.balancer = Balancer(self.stats)
        self.loop = asyncio.get_running_loop()
        self.proxy = Proxy(self.loop, self.balancer, self.stats, config.proxy)
        self.started_at = time.time()
        self._changing = asyncio.Lock()
        self._servers: list[asyncio.Server] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()
        self.public_port = 0
        self.admin_port = 0

    async def start(self) -> None:
        """Load the saved routes, open both ports, record the admin address."""
        config = self.config
        files = self.files.ensure()
        token = files.token(create=True)
        try:
            saved = files.load_routes()
        except RouterStateError as error:
            moved = files.set_aside(files.routes_path)
            log.error("%s; moved it to %s and starting with no routes", error.message, moved.name)
            saved = None
        if saved is not None:
            self.balancer.install(saved.table, saved.revision)
            log.info("restored routes revision %d from %s", saved.revision, files.routes_path)
        self.proxy.start()
        public = await self._listen(
            lambda: self.loop.create_server(
                self.proxy.protocol, config.host, config.port, backlog=1024, reuse_address=True
            ),
            config.host,
            config.port,
        )
        admin = await self._listen(
            lambda: asyncio.start_server(
                AdminApi(self, token).handle, config.admin_host, config.admin_port
            ),
            config.admin_host,
            config.admin_port,
        )
        self.public_port = _port_of(public)
        self.admin_port = _port_of(admin)
        self._tasks.append(self.loop.create_task(HealthProber(self.balancer).run()))
        files.write_address(
            AdminAddress(
                host=config.admin_host,
                port=self.admin_port,
                public_host=config.host,
                public_port=self.public_port,
                pid=os.getpid(),
            )
        )
        log.info(
            "router of %r serving on %s:%d, admin API on %s:%d",
            config.env,
            config.host,
            self.public_port,
            config.admin_host,
            self.admin_port,
        )

    async def _listen(self, opener: Callable[[], Any], host: str, port: int) -> asyncio.Server:
        try:
            server: asyncio.Server = await opener()
        except OSError as error:
            raise RouterError(
                f"cannot listen on {host}:{port}: {error.strerror or error}",
                hint="choose another port, or stop what listens there",
            ) from error
        self._servers.append(server)
        return server

    async def apply(
        self, change: Callable[[RouteTable], RouteTable], expect_revision: int | None
    ) -> int:
        """Change the table: validate, save, install for the next request; the new revision."""
        async with self._changing:
            plan = self.balancer.plan
            if expect_revision is not None and expect_revision != plan.revision:
                raise RevisionConflict(
                    f"the routes are at revision {plan.revision}, not {expect_revision}",
                    status=409,
                    hint="read the routes again and retry",
                )
            table = change(plan.table)
            if table == plan.table:
                return plan.revision
            revision = plan.revision + 1
            await asyncio.to_thread(self.files.save_routes, table, revision)
            old = {s.address for v in plan.versions for s in v.instances}
            new_plan = self.balancer.install(table, revision)
            kept = {s.address for v in new_plan.versions for s in v.instances if not s.drained}
            self.proxy.forget(old - kept)
            log.info("routes revision %d: %s", revision, _describe(table))
            return revision

    def routes_view(self) -> dict[str, Any]:
        """The table, its revision and each instance's state, as the admin API shows them."""
        plan = self.balancer.plan
        now = self.loop.time()
        return {
            "env": self.config.env,
            "revision": plan.revision,
            "routes": plan.table.as_json(),
            "instances": [
                {
                    "address": state.address,
                    "version": version.name,
                    "drained": state.drained,
                    "healthy": state.healthy,
                    "available": state.available(now),
                    "in_flight": state.in_flight,
                }
                for version in plan.versions
                for state in version.instances
            ],
        }

    def health(self) -> dict[str, Any]:
        """Liveness and a summary, as the admin API shows them."""
        plan = self.balancer.plan
        return {
            "status": "draining" if self.proxy.closing else "ok",
            "env": self.config.env,
            "pid": os.getpid(),
            "revision": plan.revision,
            "versions": {version.name: version.weight for version in plan.versions},
            "uptime_seconds": round(time.time() - self.started_at, 3),
            "client_connections": len(self.proxy.clients),
            "public": {"host": self.config.host, "port": self.public_port},
            "feedback_path": self.config.proxy.feedback_path,
        }

    def feedback_view(self) -> dict[str, Any]:
        """The recent feedback, newest first, as the admin API shows it."""
        log = self.stats.feedback
        return {
            "env": self.config.env,
            "path": self.config.proxy.feedback_path,
            "received": log.received,
            "capacity": log.capacity,
            "feedback": [item.as_json() for item in log.recent()],
        }

    def reset_stats(self, names: Sequence[str] | None) -> RouterStats:
        """Close the statistics windows of ``names`` (default all) and return them."""
        routed = [version.name for version in self.balancer.plan.versions]
        return self.stats.reset(names, keep=routed)

    def metrics(self) -> str:
        """The Prometheus exposition of this router."""
        return metrics_text(
            self.config.env,
            self.stats,
            self.balancer.plan,
            self.loop.time(),
            len(self.proxy.clients),
        )

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let requests in flight finish (``grace`` seconds), close all."""
        for server in self._servers:
            server.close()
        await self.proxy.shutdown(self.config.drain_timeout if grace is None else grace)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        self.files.forget_address(os.getpid())
        self._stopped.set()
        log.info("router of %r stopped", self.config.env)

    async def run_until_signalled(self) -> None:
        """Serve until SIGTERM or SIGINT, then drain and stop."""
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("stopping: draining connections for up to %.1fs", self.config.drain_timeout)
        await self.stop()


def _port_of(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _describe(table: RouteTable) -> str:
    if not table.versions:
        return "no versions"
    return ", ".join(f"{v.name}={v.weight}% ({len(v.instances)} instances)" for v in table.versions)

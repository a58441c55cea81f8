"""The built-in traffic router: Shipyard's own router process, steered through its admin API.

The adapter only talks to a running router; starting it (under the supervisor) is the local
target's job. It never writes the store.
"""

from __future__ import annotations

from shipyard.cd.router.client import RouterClient
from shipyard.cd.router.errors import RouterError
from shipyard.cd.router.routes import Instance, RouteTable, Version
from shipyard.cd.router.stats import RouterStats
from shipyard.cd.traffic.interface import TrafficError, TrafficRouter, Weights


class BuiltinRouter(TrafficRouter):
    """Steers one environment's router over its admin API (loopback, token)."""

    def __init__(self, client: RouterClient, environment: str) -> None:
        self.client = client
        self.environment = environment

    def set_weights(self, weights: Weights) -> str:
        """Replace the router's table with ``weights`` in one change; the public address."""
        table = RouteTable(
            versions=tuple(
                Version(
                    name=version,
                    weight=backend.weight,
                    instances=tuple(Instance(i.host, i.port) for i in backend.instances),
                )
                for version, backend in weights.items()
            )
        )
        try:
            self.client.set_routes(table)
            health = self.client.health()
        except RouterError as error:
            raise TrafficError(
                f"the router of {self.environment} refused the routes: {error.message}",
                hint=error.hint,
            ) from error
        return f"http://{health.public_host}:{health.public_port}"

    def current_weights(self) -> dict[str, int]:
        """The weights in the router's table now."""
        try:
            return self.client.routes().table.weights
        except RouterError as error:
            raise TrafficError(
                f"the router of {self.environment} cannot be read: {error.message}",
                hint=error.hint,
            ) from error

    def assigns_at_random(self) -> bool:
        """False while the router's table routes sticky (by cookie or header)."""
        try:
            return self.client.routes().table.sticky is None
        except RouterError as error:
            raise TrafficError(
                f"the router of {self.environment} cannot be read: {error.message}",
                hint=error.hint,
            ) from error

    def statistics(self, *, reset: bool = False) -> RouterStats:
        """The router's per-version windows of weighted traffic (closed and restarted when
        ``reset``); requests pinned with the version header are only in each one's ``pinned``."""
        try:
            return self.client.reset_stats() if reset else self.client.stats()
        except RouterError as error:
            raise TrafficError(
                f"the statistics of the router of {self.environment} cannot be read: "
                f"{error.message}",
                hint=error.hint,
            ) from error

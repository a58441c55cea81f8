"""A typed client of a router's admin API, for the CLI and the deployment controller.

Blocking and small (``http.client``): each call is one request on a new loopback connection
with the token from the state directory. Errors arrive as ``RouterError`` subclasses; the
client never retries a change on its own.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.cd.router.errors import (
    AdminRequestError,
    InvalidRoutes,
    RevisionConflict,
    RouterAuthError,
    RouterUnavailable,
)
from shipyard.cd.router.feedback import Feedback
from shipyard.cd.router.routes import RouteTable
from shipyard.cd.router.state import RouterFiles
from shipyard.cd.router.stats import RouterStats


@dataclass(frozen=True)
class InstanceStatus:
    """What the router knows about one instance now."""

    address: str
    version: str
    drained: bool
    healthy: bool
    available: bool
    in_flight: int


@dataclass(frozen=True)
class RouteStatus:
    """The router's current table, its revision and the state of each instance."""

    env: str
    revision: int
    table: RouteTable
    instances: tuple[InstanceStatus, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RouteStatus:
        """Read the admin API's answer."""
        return cls(
            env=str(data["env"]),
            revision=int(data["revision"]),
            table=RouteTable.from_json(data["routes"]),
            instances=tuple(
                InstanceStatus(
                    address=str(i["address"]),
                    version=str(i["version"]),
                    drained=bool(i["drained"]),
                    healthy=bool(i["healthy"]),
                    available=bool(i["available"]),
                    in_flight=int(i["in_flight"]),
                )
                for i in data["instances"]
            ),
        )


@dataclass(frozen=True)
class RouterHealth:
    """A router's answer to a health check."""

    status: str
    env: str
    pid: int
    revision: int
    weights: Mapping[str, int]
    uptime_seconds: float
    client_connections: int
    public_host: str
    public_port: int
    feedback_path: str | None = None
    """Where the router takes users' feedback (None: off)."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RouterHealth:
        """Read the admin API's answer."""
        return cls(
            status=str(data["status"]),
            env=str(data["env"]),
            pid=int(data["pid"]),
            revision=int(data["revision"]),
            weights={str(k): int(v) for k, v in data["versions"].items()},
            uptime_seconds=float(data["uptime_seconds"]),
            client_connections=int(data["client_connections"]),
            public_host=str(data["public"]["host"]),
            public_port=int(data["public"]["port"]),
            feedback_path=None if data.get("feedback_path") is None else str(data["feedback_path"]),
        )


@dataclass(frozen=True)
class RecentFeedback:
    """The feedback a router keeps (newest first), and how much it received since it started."""

    env: str
    path: str | None
    """Where the router takes feedback (None: off)."""
    received: int
    capacity: int
    feedback: tuple[Feedback, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RecentFeedback:
        """Read the admin API's answer."""
        path = data.get("path")
        return cls(
            env=str(data["env"]),
            path=None if path is None else str(path),
            received=int(data["received"]),
            capacity=int(data["capacity"]),
            feedback=tuple(Feedback.from_json(item) for item in data["feedback"]),
        )


class RouterClient:
    """Talks to one router's admin API."""

    def __init__(self, host: str, port: int, token: str, *, timeout: float = 5.0) -> None:
        self.host = host
        self.port = port
        self._token = token
        self.timeout = timeout

    @classmethod
    def for_environment(cls, state_root: Path, env: str, *, timeout: float = 5.0) -> RouterClient:
        """The client of the router of ``env``, from the files it wrote in ``state_root``."""
        files = RouterFiles.at(state_root, env)
        address = files.read_address()
        return cls(address.host, address.port, files.token(), timeout=timeout)

    def health(self) -> RouterHealth:
        """Whether the router answers, and a summary of what it does."""
        return RouterHealth.from_json(self._call("GET", "/health"))

    def routes(self) -> RouteStatus:
        """The current table, its revision and each instance's state."""
        return RouteStatus.from_json(self._call("GET", "/routes"))

    def set_routes(self, table: RouteTable, *, expect_revision: int | None = None) -> RouteStatus:
        """Replace the whole table (only if still at ``expect_revision``, when given)."""
        body = {"routes": table.as_json(), "expect_revision": expect_revision}
        return RouteStatus.from_json(self._call("PUT", "/routes", body))

    def set_weights(
        self, weights: Mapping[str, int], *, expect_revision: int | None = None
    ) -> RouteStatus:
        """Change the weights of the named versions; all weights must still add up to 100."""
        body = {"weights": dict(weights), "expect_revision": expect_revision}
        return RouteStatus.from_json(self._call("PUT", "/weights", body))

    def drain(self, address: str) -> RouteStatus:
        """Give the instance at ``address`` no new requests (those in flight finish)."""
        return RouteStatus.from_json(self._call("POST", "/drain", {"address": address}))

    def undrain(self, address: str) -> RouteStatus:
        """Put a drained instance back in service."""
        return RouteStatus.from_json(self._call("POST", "/undrain", {"address": address}))

    def stats(self) -> RouterStats:
        """Every version's statistics in its current window."""
        return RouterStats.from_json(self._call("GET", "/stats"))

    def reset_stats(self, versions: Sequence[str] | None = None) -> RouterStats:
        """Close the windows of ``versions`` (default: all); returns the closed windows."""
        body = {"versions": list(versions) if versions is not None else None}
        return RouterStats.from_json(self._call("POST", "/stats/reset", body))

    def feedback(self) -> RecentFeedback:
        """The users' feedback the router keeps, newest first."""
        return RecentFeedback.from_json(self._call("GET", "/feedback"))

    def metrics(self) -> str:
        """The Prometheus exposition served on the admin port."""
        status, payload = self._request("GET", "/metrics", None)
        if status != 200:
            raise AdminRequestError(f"GET /metrics answered {status}", status=status)
        return payload.decode("utf-8")

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        status, payload = self._request(method, path, body)
        try:
            data = json.loads(payload) if payload else {}
        except ValueError:
            data = {"error": payload[:200].decode("utf-8", "replace")}
        if status == 200:
            return data
        message = str(data.get("error", f"status {status}")) if isinstance(data, dict) else ""
        if status == 401:
            raise RouterAuthError(
                f"the router at {self.host}:{self.port} refused the admin token",
                hint="the token file may have been replaced; restart the router to reread it",
            )
        if status == 422:
            problems = data.get("problems") if isinstance(data, dict) else None
            raise InvalidRoutes([str(p) for p in problems] if problems else [message])
        if status == 409:
            raise RevisionConflict(message, status=status, hint="read the routes again, retry")
        raise AdminRequestError(f"{method} {path}: {message} ({status})", status=status)

    def _request(self, method: str, path: str, body: Mapping[str, Any] | None) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        encoded = None
        if body is not None:
            encoded = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            connection.request(method, path, body=encoded, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as error:
            reason = "timed out" if isinstance(error, socket.timeout) else str(error)
            raise RouterUnavailable(
                f"no router answers at {self.host}:{self.port}: {reason}",
                hint="is the router of this environment running? (shipyard router --env …)",
            ) from error
        finally:
            connection.close()

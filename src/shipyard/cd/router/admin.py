"""The admin API on loopback: routes, weights, drains, statistics, feedback, health, ``/metrics``.

Every request needs ``Authorization: Bearer <token>`` with the token from the state directory.
A change is validated whole, saved, then made current; a rejected change leaves the routes as
they were. This module turns router errors into HTTP statuses and nothing else.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from shipyard.cd.router.errors import (
    BadMessage,
    InvalidRoutes,
    RevisionConflict,
    RouterStateError,
)
from shipyard.cd.router.http import CHUNKED, parse_request, simple_response
from shipyard.cd.router.routes import RouteTable
from shipyard.cd.router.stats import RouterStats, StatsBook


class Controlled(Protocol):
    """What the admin API controls: the router that serves it."""

    stats: StatsBook

    async def apply(
        self, change: Callable[[RouteTable], RouteTable], expect_revision: int | None
    ) -> int:
        """Change the route table atomically; the new revision."""

    def routes_view(self) -> dict[str, Any]:
        """The table, its revision and each instance's state."""

    def health(self) -> dict[str, Any]:
        """Liveness and a summary."""

    def feedback_view(self) -> dict[str, Any]:
        """The recent feedback, newest first."""

    def reset_stats(self, names: Sequence[str] | None) -> RouterStats:
        """Close the statistics windows of ``names`` (default all) and return them."""

    def metrics(self) -> str:
        """The Prometheus exposition."""


log = logging.getLogger("shipyard.router")

MAX_ADMIN_BODY = 1024 * 1024
"""Largest admin request body accepted (a route table is a few kilobytes)."""

_JSON = b"application/json"
_Handler = Callable[[Any], Awaitable[tuple[int, Any]]]


class AdminApi:
    """Serves the admin API of one router; one short request per connection."""

    def __init__(self, router: Controlled, token: str) -> None:
        self.router = router
        self._token = token.encode()
        self._installed: tuple[int, float] | None = None
        """The revision last installed through this API and when (Unix time, router clock)."""
        self._routes: dict[tuple[bytes, bytes], _Handler] = {
            (b"GET", b"/health"): self._health,
            (b"GET", b"/routes"): self._get_routes,
            (b"PUT", b"/routes"): self._put_routes,
            (b"PUT", b"/weights"): self._put_weights,
            (b"POST", b"/drain"): self._drain,
            (b"POST", b"/undrain"): self._undrain,
            (b"GET", b"/stats"): self._stats,
            (b"POST", b"/stats/reset"): self._reset_stats,
            (b"GET", b"/feedback"): self._feedback,
        }

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer one request on a new connection, then close it."""
        try:
            async with asyncio.timeout(30):
                response = await self._respond(reader)
            writer.write(response)
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("internal error in the admin API")
        finally:
            writer.close()

    async def _respond(self, reader: asyncio.StreamReader) -> bytes:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request = parse_request(head)
        except asyncio.LimitOverrunError:
            return _error(431, "the request head is too large")
        except BadMessage as error:
            return _error(error.status, error.message)
        if not self._authorised(request.header(b"authorization")):
            return _error(
                401,
                "missing or wrong admin token",
                headers=((b"WWW-Authenticate", b'Bearer realm="shipyard-router"'),),
            )
        if request.body == CHUNKED:
            return _error(411, "send a Content-Length")
        if request.body > MAX_ADMIN_BODY:
            return _error(413, "the request body is too large")
        body = await reader.readexactly(request.body) if request.body else b""
        path = request.target.split(b"?", 1)[0]
        if path == b"/metrics":
            if request.method != b"GET":
                return _error(405, "use GET", headers=((b"Allow", b"GET"),))
            text = self.router.metrics().encode()
            return simple_response(
                200, text, content_type=b"text/plain; version=0.0.4; charset=utf-8", close=True
            )
        handler = self._routes.get((request.method, path))
        if handler is None:
            allowed = [m for (m, p) in self._routes if p == path]
            if allowed:
                return _error(405, "method not allowed", headers=((b"Allow", b", ".join(allowed)),))
            return _error(404, f"no admin endpoint {path.decode('latin-1')}")
        try:
            payload = json.loads(body) if body else {}
        except (ValueError, RecursionError) as error:
            return _error(400, f"the body is not JSON: {error}")
        try:
            status, answer = await handler(payload)
        except InvalidRoutes as error:
            return _json(422, {"error": error.message, "problems": list(error.problems)})
        except RevisionConflict as error:
            return _json(409, {"error": error.message})
        except RouterStateError as error:
            log.error("%s", error)
            return _json(500, {"error": error.message})
        return _json(status, answer)

    def _authorised(self, header: bytes | None) -> bool:
        if header is None or header[:7].lower() != b"bearer ":
            return False
        return hmac.compare_digest(header[7:].strip(), self._token)

    async def _health(self, _: Any) -> tuple[int, Any]:
        return 200, self.router.health()

    async def _get_routes(self, _: Any) -> tuple[int, Any]:
        return 200, self._routes_view()

    async def _apply(
        self, change: Callable[[RouteTable], RouteTable], expect_revision: int | None
    ) -> None:
        revision = await self.router.apply(change, expect_revision)
        if self._installed is None or self._installed[0] != revision:
            # apply returns right after the new table is installed, before any other request
            self._installed = (revision, time.time())

    def _routes_view(self) -> dict[str, Any]:
        """The routes, with ``installed_at``: when the current revision was installed through
        this API (Unix seconds), or None for a table restored at start."""
        view = self.router.routes_view()
        installed = self._installed
        fresh = installed is not None and installed[0] == view.get("revision")
        view["installed_at"] = installed[1] if installed is not None and fresh else None
        return view

    async def _put_routes(self, payload: Any) -> tuple[int, Any]:
        expected = _expected_revision(payload)
        if not isinstance(payload, dict) or "routes" not in payload:
            raise InvalidRoutes(["send {'routes': {...}, 'expect_revision': N (optional)}"])
        table = RouteTable.from_json(payload["routes"])
        await self._apply(lambda _: table, expected)
        return 200, self._routes_view()

    async def _put_weights(self, payload: Any) -> tuple[int, Any]:
        expected = _expected_revision(payload)
        weights = payload.get("weights") if isinstance(payload, dict) else None
        if not isinstance(weights, dict) or not weights:
            raise InvalidRoutes(["send {'weights': {VERSION: WEIGHT, ...}}"])
        await self._apply(lambda table: table.with_weights(weights), expected)
        return 200, self._routes_view()

    async def _drain(self, payload: Any) -> tuple[int, Any]:
        return await self._set_drained(payload, drained=True)

    async def _undrain(self, payload: Any) -> tuple[int, Any]:
        return await self._set_drained(payload, drained=False)

    async def _set_drained(self, payload: Any, *, drained: bool) -> tuple[int, Any]:
        address = payload.get("address") if isinstance(payload, dict) else None
        if not isinstance(address, str):
            raise InvalidRoutes(["send {'address': 'HOST:PORT'}"])
        await self._apply(lambda table: table.with_drained(address, drained), None)
        return 200, self._routes_view()

    async def _stats(self, _: Any) -> tuple[int, Any]:
        return 200, self.router.stats.snapshot().as_json()

    async def _feedback(self, _: Any) -> tuple[int, Any]:
        return 200, self.router.feedback_view()

    async def _reset_stats(self, payload: Any) -> tuple[int, Any]:
        names = payload.get("versions") if isinstance(payload, dict) else None
        if names is not None and (
            not isinstance(names, list) or not all(isinstance(n, str) for n in names)
        ):
            raise InvalidRoutes(["'versions' must be a list of version names"])
        return 200, self.router.reset_stats(names).as_json()


def _expected_revision(payload: Any) -> int | None:
    if not isinstance(payload, dict) or payload.get("expect_revision") is None:
        return None
    value = payload["expect_revision"]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidRoutes(["'expect_revision' must be a non-negative integer"])
    return value


def _json(status: int, value: Any) -> bytes:
    return simple_response(status, json.dumps(value).encode(), content_type=_JSON, close=True)


def _error(status: int, message: str, *, headers: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
    body = json.dumps({"error": message}).encode()
    return simple_response(status, body, content_type=_JSON, close=True, headers=headers)

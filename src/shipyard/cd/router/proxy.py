"""The data path: accept client connections and carry each request to an upstream instance.

Each client connection is one task that reads a request, asks the balancer where it goes, and
streams it there and back over a pooled keep-alive upstream connection. Nothing here may raise
out of a connection's task: every failure becomes a response, a closed connection and a count.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

from shipyard.cd.router.balancer import Balancer, InstanceState, RoutePlan, VersionPlan
from shipyard.cd.router.connection import Connection, sweep
from shipyard.cd.router.errors import BadMessage, PeerGone, PeerTimeout
from shipyard.cd.router.http import (
    CHUNKED,
    NO_BODY,
    UNTIL_CLOSE,
    ChunkedDecoder,
    RequestHead,
    chunk,
    client_response,
    field_value,
    interim_response,
    parse_request,
    parse_response,
    simple_response,
    upstream_request,
)
from shipyard.cd.router.stats import StatsBook

log = logging.getLogger("shipyard.router")

READ_SIZE = 256 * 1024
"""Largest piece of a body moved in one step."""

INLINE_BODY = 64 * 1024
"""A request body up to this size that has fully arrived is sent with its head in one write."""

CONNECT_ATTEMPTS = 3
"""Instances tried for one request when connections fail (nothing was sent yet)."""

_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})


@dataclass(frozen=True)
class ProxySettings:
    """Timeouts (seconds) and pool sizes of the data path."""

    upstream_timeout: float = 60.0
    connect_timeout: float = 5.0
    client_timeout: float = 60.0
    keepalive_timeout: float = 75.0
    head_timeout: float = 30.0
    pool_size: int = 64
    pool_idle_timeout: float = 4.0  # below the keep-alive timeout of common servers (5 s)
    sweep_interval: float = 0.25


class _Upload:
    """How the streaming of one request body went."""

    __slots__ = ("complete", "failure")

    def __init__(self) -> None:
        self.complete = False
        self.failure: Exception | None = None


class ClientConnection(Connection):
    """A connection from a client; its task serves requests until it closes."""

    def __init__(self, proxy: Proxy) -> None:
        super().__init__(proxy.loop, proxy.clients)
        self.proxy = proxy
        self.busy = False
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start serving the connection."""
        super().connection_made(transport)
        self.write_timeout = self.proxy.settings.client_timeout
        self.task = self.loop.create_task(self.proxy.serve(self))

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection; tell a draining proxy when the last one is gone."""
        super().connection_lost(exc)
        self.proxy.client_gone()


class Proxy:
    """Serves clients, balancing their requests over the current plan's instances."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        balancer: Balancer,
        stats: StatsBook,
        settings: ProxySettings,
    ) -> None:
        self.loop = loop
        self.balancer = balancer
        self.stats = stats
        self.settings = settings
        self.clients: set[Connection] = set()
        self.upstreams: set[Connection] = set()
        self.idle: dict[str, list[Connection]] = {}
        self.closing = False
        self._logged: dict[str, float] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._idle_event = asyncio.Event()

    def protocol(self) -> ClientConnection:
        """A protocol for a new client connection (the server's factory)."""
        return ClientConnection(self)

    def start(self) -> None:
        """Start the sweeper that enforces timeouts and closes idle pooled connections."""
        self._sweeper = self.loop.create_task(self._sweep())

    async def serve(self, client: ClientConnection) -> None:
        """Serve requests on one client connection until either side ends it."""
        settings = self.settings
        try:
            while not self.closing:
                client.read_timeout = settings.keepalive_timeout
                try:
                    head = await client.read_head(within=settings.head_timeout)
                except BadMessage as error:
                    self._reject(client, error)
                    return
                except PeerTimeout:
                    if client.buffer:
                        self._reject(client, BadMessage(408, "the request did not arrive in time"))
                    return
                except PeerGone:
                    return
                if head is None:
                    return
                try:
                    request = parse_request(head)
                except BadMessage as error:
                    self._reject(client, error)
                    return
                client.busy = True
                try:
                    keep = await self.exchange(client, request)
                finally:
                    client.busy = False
                if not keep:
                    return
        except Exception:
            log.exception("internal error while serving %s", client.peer_ip)
        finally:
            client.close()

    def client_gone(self) -> None:
        """A client connection closed; wake ``shutdown`` when it was the last one."""
        if self.closing and not self.clients:
            self._idle_event.set()

    async def exchange(self, client: ClientConnection, request: RequestHead) -> bool:
        """Route one request and carry it; return whether the client connection stays open."""
        loop = self.loop
        started = loop.time()
        plan = self.balancer.plan
        key, cookie = _sticky_key(plan, request)
        version: VersionPlan | None = None
        pinned = False
        if request.version is not None:
            version = plan.by_name.get(request.version)
            pinned = version is not None
        if version is None:
            version = plan.choose(key)
            if version is None:
                self.stats.unrouted += 1
                return self._answer(client, request, 503, "no version is routed here yet")
        tried: list[InstanceState] = []
        for _ in range(CONNECT_ATTEMPTS + 1):
            now = loop.time()
            instance = version.pick(now, key, tried)
            if instance is None and not pinned:
                other = plan.fallback(version, now)
                if other is not None:
                    version = other
                    instance = version.pick(now, key, tried)
            if instance is None:
                break
            upstream = self._pooled(instance)
            reused = upstream is not None
            if upstream is None:
                try:
                    upstream = await self._connect(instance)
                except (OSError, TimeoutError) as error:
                    instance.connect_failed(loop.time())
                    version.recorder.totals.connect_failures += 1
                    tried.append(instance)
                    self._warn(instance.address, f"cannot connect to {instance.address}: {error}")
                    if client.closed:
                        version.recorder.totals.client_aborts += 1
                        return False
                    continue
                instance.connect_succeeded()
            keep = await self._forward(
                client, request, version, instance, upstream, reused, cookie, started
            )
            if keep is not None:
                return keep
        if tried:
            version.recorder.upstream_error("connect")
            return self._answer(
                client, request, 502, "no instance accepted a connection", version, started
            )
        return self._answer(client, request, 503, "no instance is available", version, started)

    async def _forward(
        self,
        client: ClientConnection,
        request: RequestHead,
        version: VersionPlan,
        instance: InstanceState,
        upstream: Connection,
        reused: bool,
        cookie: bytes,
        started: float,
    ) -> bool | None:
        """Carry the request over ``upstream``; None means it was stale and nothing happened."""
        loop = self.loop
        settings = self.settings
        recorder = version.recorder
        instance.in_flight += 1
        client.partner = upstream
        upstream.read_timeout = upstream.write_timeout = settings.upstream_timeout
        head = upstream_request(request, client.peer_ip)
        body = request.body
        upload: _Upload | None = None
        pump: asyncio.Task[None] | None = None
        if body == NO_BODY:
            upstream.write(head)
        elif body > 0 and len(client.buffer) >= body and body <= INLINE_BODY:
            upstream.write(head + client.take(body))
        else:
            upstream.write(head)
            upload = _Upload()
            client.read_timeout = settings.client_timeout
            pump = loop.create_task(self._pump(client, upstream, request, upload))
        try:
            try:
                while True:
                    raw = await upstream.read_head(upstream=True)
                    if raw is None:
                        raise PeerGone("the upstream closed the connection before responding")
                    response = parse_response(raw, request_method=request.method)
                    if response.status >= 200:
                        break
                    if response.status == 101:
                        raise BadMessage(502, "the upstream switched protocols (unsupported)")
                    if request.minor == 1:
                        client.write(interim_response(response))
            except (PeerGone, PeerTimeout, BadMessage) as error:
                upstream.abort()
                if pump is not None:
                    pump.cancel()
                if client.closed or client.eof:
                    recorder.totals.client_aborts += 1
                    return False
                if upload is not None and isinstance(upload.failure, BadMessage | PeerTimeout):
                    failure = upload.failure
                    status = failure.status if isinstance(failure, BadMessage) else 408
                    return self._answer(
                        client, request, status, str(failure), version, started, close=True
                    )
                if (
                    isinstance(error, PeerGone)
                    and reused
                    and body == NO_BODY
                    and request.method in _IDEMPOTENT
                ):
                    return None
                kind, status = _failure(error)
                recorder.upstream_error(kind)
                self._warn(instance.address, f"upstream {instance.address}: {error}")
                return self._answer(
                    client,
                    request,
                    status,
                    f"upstream: {error}",
                    version,
                    started,
                    close=upload is not None,
                )

            close = not request.keep_alive or self.closing
            framing = response.body
            if framing < 0:
                outgoing = CHUNKED if request.minor == 1 else UNTIL_CLOSE
                close = close or outgoing == UNTIL_CLOSE
            else:
                outgoing = framing
            head = client_response(
                response,
                framing=outgoing,
                version=version.encoded,
                close=close,
                client_minor=request.minor,
                extra=cookie,
            )
            status = response.status
            clean = True
            try:
                if 0 <= framing <= len(upstream.buffer):  # the whole body is here already
                    client.write(head + upstream.take(framing) if framing else head)
                else:
                    clean = await self._relay(client, upstream, framing, outgoing, head)
            except (PeerGone, PeerTimeout, BadMessage) as error:
                upstream.abort()
                if client.closed:
                    recorder.totals.client_aborts += 1
                else:
                    client.abort()
                    kind, _ = _failure(error)
                    recorder.upstream_error(kind)
                    self._warn(instance.address, f"upstream {instance.address}: {error}")
                recorder.record(status, loop.time() - started)
                return False

            if pump is not None and not pump.done():
                pump.cancel()
                if upload is not None and not upload.complete:
                    close = True
                    clean = False
            if upload is not None and upload.failure is not None:
                close = True
                clean = False
            if (
                clean
                and response.keep_alive
                and upstream.reusable
                and not instance.drained
                and not self.closing
            ):
                self._release(instance, upstream)
            else:
                upstream.close()
            recorder.record(status, loop.time() - started)
            return not close
        finally:
            client.partner = None
            instance.in_flight -= 1

    async def _relay(
        self, client: Connection, upstream: Connection, framing: int, outgoing: int, head: bytes
    ) -> bool:
        """Send the response head and stream the body; return whether the upstream connection
        ended cleanly at the end of the message."""
        if framing >= 0:
            buffered = len(upstream.buffer)
            if buffered >= framing:
                client.write(head + upstream.take(framing) if framing else head)
                return True
            client.write(head + upstream.take(buffered) if buffered else head)
            remaining = framing - buffered
            while remaining:
                data = await upstream.read_some(min(remaining, READ_SIZE))
                remaining -= len(data)
                client.write(data)
                if client.write_paused:
                    await client.drain()
                    upstream.touch()
            return True
        client.write(head)
        if framing == CHUNKED:
            decoder = ChunkedDecoder(upstream=True)
            while not decoder.done:
                pieces = decoder.feed(await upstream.read_some(READ_SIZE))
                payload = b"".join(pieces)
                if payload:
                    client.write(chunk(payload) if outgoing == CHUNKED else payload)
                if client.write_paused:
                    await client.drain()
                    upstream.touch()
            if outgoing == CHUNKED:
                client.write(decoder.end())
            return not decoder.leftover
        while True:
            try:
                data = await upstream.read_some(READ_SIZE)
            except PeerGone:
                break
            client.write(chunk(data) if outgoing == CHUNKED else data)
            if client.write_paused:
                await client.drain()
                upstream.touch()
        if outgoing == CHUNKED:
            client.write(b"0\r\n\r\n")
        return False

    async def _pump(
        self, client: Connection, upstream: Connection, request: RequestHead, upload: _Upload
    ) -> None:
        """Stream the request body from the client to the upstream."""
        try:
            if request.body > 0:
                remaining = request.body
                while remaining:
                    data = await client.read_some(min(remaining, READ_SIZE))
                    remaining -= len(data)
                    upstream.write(data)
                    upstream.touch()
                    if upstream.write_paused:
                        await upstream.drain()
            else:
                decoder = ChunkedDecoder()
                while not decoder.done:
                    payload = b"".join(decoder.feed(await client.read_some(READ_SIZE)))
                    if payload:
                        upstream.write(chunk(payload))
                        upstream.touch()
                    if upstream.write_paused:
                        await upstream.drain()
                upstream.write(decoder.end())
                client.unread(decoder.leftover)
            upload.complete = True
        except (PeerGone, PeerTimeout, BadMessage) as error:
            upload.failure = error
            upstream.abort()

    def _answer(
        self,
        client: Connection,
        request: RequestHead,
        status: int,
        message: str,
        version: VersionPlan | None = None,
        started: float = 0.0,
        *,
        close: bool = False,
    ) -> bool:
        """Answer the request ourselves; keep the connection only if nothing is left unread."""
        close = close or not request.keep_alive or request.body != NO_BODY or self.closing
        body = (message + "\n").encode() if request.method != b"HEAD" else b""
        named = ((b"X-Shipyard-Version", version.encoded),) if version is not None else ()
        client.write(simple_response(status, body, close=close, headers=named))
        if version is not None:
            version.recorder.record(status, self.loop.time() - started if started else 0.0)
        return not close

    def _reject(self, client: Connection, error: BadMessage) -> None:
        self.stats.rejected += 1
        client.write(simple_response(error.status, (error.message + "\n").encode(), close=True))
        client.close()

    def _pooled(self, instance: InstanceState) -> Connection | None:
        idle = self.idle.get(instance.address)
        while idle:
            upstream = idle.pop()
            if upstream.reusable:
                return upstream
            upstream.close()
        return None

    def _release(self, instance: InstanceState, upstream: Connection) -> None:
        idle = self.idle.get(instance.address)
        if idle is None:
            idle = self.idle[instance.address] = []
        if len(idle) >= self.settings.pool_size:
            upstream.close()
            return
        upstream.idle_since = self.loop.time()
        upstream.read_timeout = 0.0
        idle.append(upstream)

    async def _connect(self, instance: InstanceState) -> Connection:
        upstreams = self.upstreams
        loop = self.loop
        _, protocol = await asyncio.wait_for(
            loop.create_connection(
                lambda: Connection(loop, upstreams), instance.host, instance.port
            ),
            self.settings.connect_timeout,
        )
        return protocol

    def forget(self, addresses: set[str]) -> None:
        """Close pooled connections to instances no longer routed or drained."""
        for address in list(self.idle):
            if address in addresses:
                for upstream in self.idle.pop(address):
                    upstream.close()

    async def shutdown(self, grace: float) -> None:
        """Stop taking requests: close idle connections, let busy ones finish within ``grace``."""
        self.closing = True
        for client in list(self.clients):
            if isinstance(client, ClientConnection) and not client.busy:
                client.close()
        if self.clients:
            self._idle_event.clear()
            try:
                await asyncio.wait_for(self._idle_event.wait(), grace)
            except TimeoutError:
                log.warning(
                    "%d connections still busy after %.1fs; closing", len(self.clients), grace
                )
        for client in list(self.clients):
            client.abort()
        for address in list(self.idle):
            for upstream in self.idle.pop(address):
                upstream.close()
        if self._sweeper is not None:
            self._sweeper.cancel()

    async def _sweep(self) -> None:
        settings = self.settings
        while True:
            await asyncio.sleep(settings.sweep_interval)
            now = self.loop.time()
            sweep(self.clients, now)
            sweep(self.upstreams, now)
            oldest = now - settings.pool_idle_timeout
            for address, idle in list(self.idle.items()):
                keep = [u for u in idle if u.reusable and u.idle_since > oldest]
                for upstream in idle:
                    if upstream not in keep:
                        upstream.close()
                if keep:
                    self.idle[address] = keep
                else:
                    del self.idle[address]

    def _warn(self, key: str, message: str) -> None:
        """Log ``message`` at most once a second per ``key`` (failures can come in floods)."""
        now = self.loop.time()
        if self._logged.get(key, 0.0) + 1.0 <= now:
            self._logged[key] = now
            log.warning("%s", message)


def _failure(error: Exception) -> tuple[str, int]:
    if isinstance(error, PeerTimeout):
        return "timeout", 504
    if isinstance(error, BadMessage):
        return "bad_response", 502
    return "reset", 502


def _sticky_key(plan: RoutePlan, request: RequestHead) -> tuple[bytes | None, bytes]:
    """The sticky key of a request, and a Set-Cookie line if the router had to issue one."""
    if plan.header is not None:
        return request.header(plan.header), b""
    name = plan.cookie
    if name is None:
        return None, b""
    prefix = name + b"="
    for index, field in enumerate(request.names):
        if field == b"cookie":
            for pair in field_value(request.lines[index]).split(b";"):
                pair = pair.strip()
                if pair.startswith(prefix) and len(pair) > len(prefix):
                    return pair[len(prefix) :], b""
    issued = b"%016x" % random.getrandbits(64)
    return issued, b"Set-Cookie: " + prefix + issued + b"; Path=/; HttpOnly; SameSite=Lax\r\n"

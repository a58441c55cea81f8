"""One HTTP GET for the http and prometheus providers that is over by a deadline, whatever the
server does.

urllib's timeout bounds each socket operation, so a server that drips a byte now and then keeps
a request going for ever. Here the request runs in a worker thread; the caller waits for it
until the deadline, then shuts the connection so that the worker ends too. What the answer
means is each provider's business, not this module's.

::

    FetchError                        a GET ended without an answer to read (a MetricsError)
    ├── NoAnswerInTime                the deadline passed first
    ├── CannotConnect                 no connection: unknown host, refused, TLS failed
    └── BrokenAnswer                  connected, but the answer broke off or is not HTTP
"""

from __future__ import annotations

import base64
import contextlib
import http
import http.client
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from shipyard.monitor.providers.interface import MetricsError

_DETAIL_CHARS = 200


class FetchError(MetricsError):
    """A GET ended without an answer to read; the message says why, fit for a reason."""


class NoAnswerInTime(FetchError):
    """The deadline passed before the whole answer was read."""


class CannotConnect(FetchError):
    """There is no connection: the host is unknown, it refused, or TLS failed."""


class BrokenAnswer(FetchError):
    """The server was reached, but its answer broke off or is not HTTP."""


@dataclass(frozen=True)
class Answer:
    """A server's answer to a GET: its status, the status's phrase and the start of its body."""

    status: int
    phrase: str
    body: bytes
    cut: bool
    """True when the body was longer than asked for; ``body`` is then its start."""

    @property
    def succeeded(self) -> bool:
        """Whether the status is a success (2xx)."""
        return 200 <= self.status < 300


def get(url: str, *, seconds: float, max_bytes: int) -> Answer:
    """GET ``url`` (credentials in it become basic auth) and read up to ``max_bytes`` of the
    answer, all within ``seconds``: connecting, the headers and the body."""
    request = _request(url)
    deadline = _Deadline(seconds)
    answered: list[Answer] = []
    failed: list[Exception] = []

    def work() -> None:
        try:
            answered.append(_answer(request, deadline, max_bytes))
        except Exception as error:  # noqa: BLE001 - handed to the caller, who raises it
            failed.append(error)

    worker = threading.Thread(target=work, name="shipyard-http-get", daemon=True)
    worker.start()
    try:
        worker.join(max(deadline.at - time.monotonic(), 0))
    finally:
        late = worker.is_alive()
        deadline.end(shut=late)
    if late:
        raise NoAnswerInTime(deadline.missed())
    if failed:
        raise failed[0]
    return answered[0]


def url_mistake(url: str) -> str | None:
    """What keeps ``url`` from being the address of a GET (``is not http or https``…), or None."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return "is not http or https"
    if not parts.hostname:
        return "names no host"
    try:
        parts.port  # noqa: B018 - reading it checks it
    except ValueError:
        return "has a port that is not a number from 0 to 65535"
    return None


def shown_url(url: str) -> str:
    """``url`` without credentials or query string, fit for a reason a person reads."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    query = "?…" if parts.query else ""
    return f"{parts.scheme}://{host}{parts.path}{query}"


def _request(url: str) -> urllib.request.Request:
    """A GET of ``url``; credentials in the URL become a basic Authorization header."""
    parts = urllib.parse.urlsplit(url)
    headers = {"Accept": "application/json"}
    if parts.username is not None or parts.password is not None:
        user = urllib.parse.unquote(parts.username or "")
        password = urllib.parse.unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {token}"
        url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return urllib.request.Request(url, headers=headers)  # noqa: S310 - callers check the scheme


def _answer(request: urllib.request.Request, deadline: _Deadline, max_bytes: int) -> Answer:
    """The worker's part: send the request and read the answer, or say why there is none."""
    try:
        response = _opener(deadline).open(request, timeout=deadline.left())
    except urllib.error.HTTPError as error:
        response = error  # an error status is an answer too, and its body may say why
    except urllib.error.URLError as error:
        if isinstance(error.reason, TimeoutError):
            raise NoAnswerInTime(deadline.missed()) from None
        raise CannotConnect(_detail(error.reason)) from None
    except TimeoutError:
        raise NoAnswerInTime(deadline.missed()) from None
    except (OSError, http.client.HTTPException, ValueError) as error:
        raise BrokenAnswer(_detail(error)) from None
    with response:
        try:
            body = response.read(max_bytes + 1)
        except TimeoutError:
            raise NoAnswerInTime(deadline.missed()) from None
        except (OSError, http.client.HTTPException, ValueError) as error:
            raise BrokenAnswer(_detail(error)) from None
        return Answer(
            status=response.status,
            phrase=_phrase(response.status, str(response.reason)),
            body=body[:max_bytes],
            cut=len(body) > max_bytes,
        )


class _Deadline:
    """When a GET must be over. Past it, the sockets the GET opened are shut, which ends any
    read or write that is waiting on them."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._handles: list[socket.socket] = []
        self._over = False

    def left(self) -> float:
        """Seconds left; none left raises ``TimeoutError``, as a socket's own timeout would."""
        left = self.at - time.monotonic()
        if left <= 0:
            raise TimeoutError(self.missed())
        return left

    def missed(self) -> str:
        """The reason for a GET that ran out of time."""
        return f"no answer within {self.seconds:g} s"

    def watch(self, sock: socket.socket) -> None:
        """Shut ``sock`` when time is up; at once when it is up already."""
        # The deadline shuts its own duplicate: the worker may close ``sock`` at any moment,
        # and shutting a closed descriptor could hit another socket that reuses its number.
        handle = sock.dup()
        with self._lock:
            if not self._over:
                self._handles.append(handle)
                return
        _shut(handle)

    def end(self, *, shut: bool) -> None:
        """Stop watching; with ``shut``, shut every watched connection first."""
        with self._lock:
            self._over = True
            handles, self._handles = self._handles, []
        for handle in handles:
            if shut:
                _shut(handle)
            else:
                handle.close()


def _shut(handle: socket.socket) -> None:
    with contextlib.suppress(OSError):
        handle.shutdown(socket.SHUT_RDWR)
    handle.close()


class _Connection(http.client.HTTPConnection):
    """A connection that takes its timeout from the deadline and has the deadline watch it."""

    deadline: _Deadline

    def connect(self) -> None:
        self.timeout = self.deadline.left()
        super().connect()
        self.deadline.watch(self.sock)


class _TlsConnection(http.client.HTTPSConnection, _Connection):
    """The TLS kind. HTTPSConnection.connect reaches _Connection.connect through super(), so
    the plain socket is watched before the TLS handshake starts."""


class _HttpHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._connection, req)

    def _connection(self, host: str, **options: Any) -> http.client.HTTPConnection:
        connection = _Connection(host, **options)
        connection.deadline = self._deadline
        return connection


class _HttpsHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._connection, req)

    def _connection(self, host: str, **options: Any) -> http.client.HTTPConnection:
        connection = _TlsConnection(host, **options)
        connection.deadline = self._deadline
        return connection


def _opener(deadline: _Deadline) -> urllib.request.OpenerDirector:
    """urllib's usual opener for http and https only, its connections watched by ``deadline``.

    Proxies from the environment and redirects work as with ``urlopen``; a redirect to another
    scheme (ftp, file) is refused as an unknown URL type.
    """
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.UnknownHandler(),
        _HttpHandler(deadline),
        _HttpsHandler(deadline),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPRedirectHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def _phrase(status: int, said: str) -> str:
    # The standard phrase where there is one: urllib adds a refused redirect's target, which
    # may carry a token, to the phrase it reports.
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return _cut(said)


def _detail(error: object) -> str:
    if isinstance(error, http.client.BadStatusLine):
        return f"not an HTTP answer: {_cut(str(error).strip())!r}"
    return _cut(str(error)) or type(error).__name__


def _cut(text: str) -> str:
    return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 1] + "…"

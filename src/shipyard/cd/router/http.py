"""HTTP/1.1 message heads for the router: parsing under limits, hop-by-hop rules, serialising.

Everything the router accepts or rejects on the wire is decided here, without I/O: request and
response heads, body framing, the chunked coding, and the heads the router sends on each side.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, NamedTuple

from shipyard.cd.router.errors import BadMessage

MAX_REQUEST_LINE = 8 * 1024
"""Longest request line accepted (longer: 414)."""

MAX_HEAD = 64 * 1024
"""Largest header section accepted, request line included (larger: 431)."""

MAX_FIELDS = 100
"""Most header fields accepted in one message (more: 431)."""

MAX_CHUNK_LINE = 4 * 1024
"""Longest chunk-size line (with extensions) accepted in a chunked body."""

NO_BODY = 0
"""Framing: the message has no body (a Content-Length of 0 or none at all in a request)."""

CHUNKED = -1
"""Framing: the body uses the chunked transfer coding."""

UNTIL_CLOSE = -2
"""Framing: the response body ends when the upstream closes the connection."""

VERSION_HEADER = b"x-shipyard-version"
"""Request header that picks a version (testing override); response header naming it."""

# RFC 9110 section 7.6.1, plus the non-standard names that behave like them in practice.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)

# Removed from requests because the router writes them itself.
_REWRITTEN = frozenset(
    {
        b"content-length",
        b"forwarded",
        b"via",
        b"x-forwarded-for",
        b"x-forwarded-host",
        b"x-forwarded-proto",
        VERSION_HEADER,
    }
)
_REQUEST_DROP = HOP_BY_HOP | _REWRITTEN
_RESPONSE_DROP = HOP_BY_HOP | {b"content-length", VERSION_HEADER}
_RESPONSE_SPECIAL = HOP_BY_HOP | {VERSION_HEADER}

_NOTHING: frozenset[bytes] = frozenset()
# A NamedTuple's generated __new__ is a Python function; one head is built per message.
_new_tuple: Any = tuple.__new__

# The forwarding fields for a client address and Host, built once: most requests bring none
# of their own, and a connection sends many requests with the same two values.
_FORWARDING: dict[tuple[str, bytes], bytes] = {}
_SPECIAL = frozenset(
    {
        b"content-length",
        b"transfer-encoding",
        b"connection",
        b"expect",
        b"host",
        VERSION_HEADER,
    }
)

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_FIELD_LINES = rb"(?:" + _TOKEN + rb":[^\x00-\x08\x0a-\x1f\x7f]*\r\n)*"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([^\x00-\x20\x7f]+) HTTP/(\d)\.(\d)")
_STATUS_LINE = re.compile(rb"HTTP/1\.(\d) ([1-9]\d\d)(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?")
_FIELDS = re.compile(_FIELD_LINES)
# The usual shapes of a whole head in one match: a path target or a status line with a reason,
# HTTP/1.0 or 1.1, well-formed fields. Anything else goes through the step-by-step parsers,
# which accept a superset and say precisely what is wrong.
_USUAL_REQUEST = re.compile(
    rb"(" + _TOKEN + rb") (/[^\x00-\x20\x7f]*) HTTP/1\.([01])\r\n(" + _FIELD_LINES + rb")\r\n"
)
_USUAL_RESPONSE = re.compile(
    rb"HTTP/1\.([01]) ([1-9]\d\d) ([^\x00-\x08\x0a-\x1f\x7f]*)\r\n(" + _FIELD_LINES + rb")\r\n"
)
_NAMES = re.compile(rb"([^:\r\n]*):[^\r\n]*\r\n")  # of fields already known to be valid
_DIGITS = re.compile(rb"\d{1,18}")
_HEX_SIZE = re.compile(rb"([0-9A-Fa-f]{1,15})[ \t]*(?:;[^\x00-\x08\x0a-\x1f\x7f]*)?")

_REASONS = {
    100: "Continue",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    411: "Length Required",
    413: "Content Too Large",
    414: "URI Too Long",
    415: "Unsupported Media Type",
    417: "Expectation Failed",
    422: "Unprocessable Content",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
}


class RequestHead(NamedTuple):
    """A parsed request head (a tuple, not a dataclass: one is built per request)."""

    method: bytes
    target: bytes
    minor: int
    lines: tuple[bytes, ...]
    names: tuple[bytes, ...]
    body: int
    keep_alive: bool
    expect_continue: bool
    host: bytes
    version: bytes | None
    drop: frozenset[bytes]
    block: bytes  # the field lines as received, each with its CRLF

    def header(self, name: bytes) -> bytes | None:
        """The value of the first field called ``name`` (lower case), if any."""
        for index, candidate in enumerate(self.names):
            if candidate == name:
                return field_value(self.lines[index])
        return None

    @property
    def upgrade(self) -> bytes | None:
        """The protocol an HTTP/1.1 request asks to switch to (``Connection: upgrade`` with
        ``Upgrade: websocket``), if any."""
        if b"upgrade" not in self.drop or self.minor != 1:
            return None
        return self.header(b"upgrade") or None


class ResponseHead(NamedTuple):
    """A parsed response head from an upstream instance; ``plain`` when no field needs
    removing and its one Content-Length (if any) can be kept as it is."""

    status: int
    reason: bytes
    minor: int
    lines: tuple[bytes, ...]
    names: tuple[bytes, ...]
    body: int
    keep_alive: bool
    drop: frozenset[bytes]
    plain: bool
    first: bytes  # the status line as sent to clients (HTTP/1.1), with its CRLF
    block: bytes  # the field lines as received, each with its CRLF


def field_value(line: bytes) -> bytes:
    """The value of one raw ``name: value`` line, without surrounding whitespace."""
    return line[line.index(b":") + 1 :].strip(b" \t")


def find_head_end(buffer: bytes | bytearray, start: int = 0) -> int:
    """Index just past the blank line ending a head in ``buffer``, or -1 when not there yet."""
    end = buffer.find(b"\r\n\r\n", start)
    return -1 if end < 0 else end + 4


def parse_request(head: bytes) -> RequestHead:
    """Parse a request head (request line to blank line); raise ``BadMessage`` with a status."""
    matched = _USUAL_REQUEST.fullmatch(head) if len(head) <= MAX_REQUEST_LINE else None
    if matched is None:
        return _parse_request_fully(head)
    method, target, minor_digit, block = matched.groups()
    lines = block.split(b"\r\n")
    lines.pop()  # what follows the last CRLF
    if method == b"CONNECT" or len(lines) > MAX_FIELDS:
        return _parse_request_fully(head)
    names = _NAMES.findall(block.lower())
    minor = 0 if minor_digit == b"0" else 1
    return _request(method, target, minor, tuple(lines), names, None, block)


def _parse_request_fully(head: bytes) -> RequestHead:
    line_end = head.find(b"\r\n")
    if line_end > MAX_REQUEST_LINE:
        raise BadMessage(414, "the request line is too long")
    if len(head) > MAX_HEAD:
        raise BadMessage(431, "the request header section is too large")
    matched = _REQUEST_LINE.fullmatch(head, 0, line_end)
    if matched is None:
        raise BadMessage(400, "malformed request line")
    method, target, major, minor_digit = matched.groups()
    if major != b"1":
        if major == b"0":
            raise BadMessage(400, "malformed HTTP version")
        raise BadMessage(505, "only HTTP/1.0 and HTTP/1.1 are supported")
    minor = 0 if minor_digit == b"0" else 1
    lines, names = _fields(head, line_end)
    if method == b"CONNECT":
        raise BadMessage(501, "the router does not tunnel (CONNECT)")
    target_host: bytes | None = None
    if target[:1] != b"/":
        target, target_host = _absolute_target(method, target)
    return _request(method, target, minor, lines, names, target_host, head[line_end + 2 : -2])


def _request(
    method: bytes,
    target: bytes,
    minor: int,
    lines: tuple[bytes, ...],
    names: Sequence[bytes],
    target_host: bytes | None,
    block: bytes,
) -> RequestHead:
    """The request these syntactically valid parts make, or ``BadMessage``."""
    length = -1
    chunked = False
    keep_alive = minor == 1
    expect_continue = False
    version: bytes | None = None
    drop = _NOTHING
    hosts = 0
    host = b""
    for index, name in enumerate(names):
        if name not in _SPECIAL:
            continue
        line = lines[index]
        value = line[line.index(b":") + 1 :].strip(b" \t")
        if name == b"host":
            hosts += 1
            host = value
        elif name == b"content-length":
            if length < 0 and value.isdigit() and len(value) < 19:
                length = int(value)
            else:
                length = _content_length(value, length)
        elif name == b"transfer-encoding":
            if minor == 0:
                raise BadMessage(400, "Transfer-Encoding is not allowed in an HTTP/1.0 request")
            chunked = _chunked_last(value, chunked, request=True)
        elif name == b"connection":
            keep_alive, drop = _connection(value, keep_alive, drop)
        elif name == b"expect":
            if value.lower() != b"100-continue":
                raise BadMessage(417, "only the 100-continue expectation is supported")
            expect_continue = minor == 1
        else:
            version = value
    if hosts > 1:
        raise BadMessage(400, "more than one Host header")
    if minor == 1 and hosts == 0:
        raise BadMessage(400, "an HTTP/1.1 request needs a Host header")
    if chunked and length >= 0:
        raise BadMessage(400, "both Content-Length and Transfer-Encoding are present")
    body = CHUNKED if chunked else max(length, 0)
    fields = (
        method,
        target,
        minor,
        lines,
        tuple(names),
        body,
        keep_alive,
        expect_continue and body != NO_BODY,
        target_host or host,
        version,
        drop,
        block,
    )
    request: RequestHead = _new_tuple(RequestHead, fields)
    return request


def parse_response(head: bytes, *, request_method: bytes) -> ResponseHead:
    """Parse an upstream's response head; raise ``BadMessage`` (answered with 502) if broken."""
    matched = _USUAL_RESPONSE.fullmatch(head) if len(head) <= MAX_HEAD else None
    if matched is None:
        return _parse_response_fully(head, request_method)
    minor_digit, code, reason, block = matched.groups()
    lines = block.split(b"\r\n")
    lines.pop()  # what follows the last CRLF
    if len(lines) > MAX_FIELDS:
        return _parse_response_fully(head, request_method)
    names = _NAMES.findall(block.lower())
    if minor_digit == b"1":
        first = head[: matched.start(4)]
        minor = 1
    else:
        first = b"HTTP/1.1 %b %b\r\n" % (code, reason)
        minor = 0
    return _response(int(code), reason, minor, tuple(lines), names, request_method, first, block)


def _parse_response_fully(head: bytes, request_method: bytes) -> ResponseHead:
    if len(head) > MAX_HEAD:
        raise BadMessage(502, "the upstream's response header section is too large")
    line_end = head.find(b"\r\n")
    matched = _STATUS_LINE.fullmatch(head, 0, line_end)
    if matched is None:
        raise BadMessage(502, "the upstream sent a malformed status line")
    minor_digit, code, reason = matched.groups()
    lines, names = _fields(head, line_end, upstream=True)
    minor = 0 if minor_digit == b"0" else 1
    reason = reason or b""
    first = b"HTTP/1.1 %b %b\r\n" % (code, reason)
    block = head[line_end + 2 : -2]
    return _response(int(code), reason, minor, lines, names, request_method, first, block)


def _response(
    status: int,
    reason: bytes,
    minor: int,
    lines: tuple[bytes, ...],
    names: Sequence[bytes],
    request_method: bytes,
    first: bytes,
    block: bytes,
) -> ResponseHead:
    """The response these syntactically valid parts make, or ``BadMessage``."""
    length = -1
    chunked = False
    transfer_coded = False
    keep_alive = minor == 1
    drop = _NOTHING
    plain = _RESPONSE_SPECIAL.isdisjoint(names)
    for index, name in enumerate(names):
        if name == b"content-length":
            line = lines[index]
            value = line[line.index(b":") + 1 :].strip(b" \t")
            if length < 0 and value.isdigit() and len(value) < 19:
                length = int(value)
            else:
                plain = False
                length = _content_length(value, length, upstream=True)
        elif name == b"transfer-encoding":
            transfer_coded = True
            chunked = _chunked_last(field_value(lines[index]), chunked, request=False)
        elif name == b"connection":
            keep_alive, drop = _connection(field_value(lines[index]), keep_alive, drop)
    if status < 200 or status in (204, 304) or request_method == b"HEAD":
        body = NO_BODY
    elif transfer_coded:
        body = CHUNKED if chunked else UNTIL_CLOSE
    elif length >= 0:
        body = length
    else:
        body = UNTIL_CLOSE
    if body == UNTIL_CLOSE:
        keep_alive = False
    plain = plain and not drop and length == body
    fields = (
        status,
        reason,
        minor,
        lines,
        tuple(names),
        body,
        keep_alive,
        drop,
        plain,
        first,
        block,
    )
    response: ResponseHead = _new_tuple(ResponseHead, fields)
    return response


def _fields(
    head: bytes, line_end: int, *, upstream: bool = False
) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    block_start = line_end + 2
    block_end = len(head) - 2
    if block_end < block_start or head[block_end:] != b"\r\n":
        raise BadMessage(502 if upstream else 400, "the header section does not end properly")
    if _FIELDS.fullmatch(head, block_start, block_end) is None:
        raise BadMessage(
            502 if upstream else 400,
            "malformed header field (bad name, folded line or control character)",
        )
    if block_end == block_start:
        return (), ()
    lines = head[block_start : block_end - 2].split(b"\r\n")
    if len(lines) > MAX_FIELDS:
        raise BadMessage(502 if upstream else 431, "too many header fields")
    names = tuple([line.partition(b":")[0].lower() for line in lines])
    return tuple(lines), names


def _absolute_target(method: bytes, target: bytes) -> tuple[bytes, bytes | None]:
    if target == b"*" and method == b"OPTIONS":
        return target, None
    lowered = target[:8].lower()
    for scheme in (b"http://", b"https://"):
        if lowered.startswith(scheme):
            rest = target[len(scheme) :]
            slash = rest.find(b"/")
            authority, path = (rest, b"/") if slash < 0 else (rest[:slash], rest[slash:])
            if not authority or b"@" in authority:
                break
            return path, authority
    raise BadMessage(400, "the request target must be a path or an absolute http URL")


def _content_length(value: bytes, previous: int, *, upstream: bool = False) -> int:
    if previous < 0 and value.isdigit() and len(value) < 19:
        return int(value)
    status = 502 if upstream else 400
    values = {part.strip(b" \t") for part in value.split(b",")}
    if len(values) != 1 or _DIGITS.fullmatch(next(iter(values))) is None:
        raise BadMessage(status, "invalid Content-Length")
    length = int(next(iter(values)))
    if previous >= 0 and previous != length:
        raise BadMessage(status, "conflicting Content-Length values")
    return length


def _chunked_last(value: bytes, previous: bool, *, request: bool) -> bool:
    codings = [c.strip(b" \t").lower() for c in value.split(b",") if c.strip(b" \t")]
    if not codings:
        raise BadMessage(400 if request else 502, "empty Transfer-Encoding")
    if request:
        if previous or codings != [b"chunked"]:
            raise BadMessage(501, "only the chunked transfer coding is supported in requests")
        return True
    return codings[-1] == b"chunked"


def _connection(
    value: bytes, keep_alive: bool, drop: frozenset[bytes]
) -> tuple[bool, frozenset[bytes]]:
    tokens = {t.strip(b" \t").lower() for t in value.split(b",")}
    if b"close" in tokens:
        keep_alive = False
    elif b"keep-alive" in tokens:
        keep_alive = True
    extra = tokens - {b"close", b"keep-alive", b""}
    return keep_alive, drop | extra if extra else drop


def upstream_request(request: RequestHead, client_ip: str) -> bytes:
    """The head sent upstream: hop-by-hop fields removed, forwarding fields and framing set."""
    first = b"%b %b HTTP/1.1\r\n" % (request.method, request.target)
    body = request.body
    if body == CHUNKED:
        framing = b"Transfer-Encoding: chunked\r\n\r\n"
    elif body > 0 or request.method in (b"POST", b"PUT", b"PATCH"):
        framing = b"Content-Length: %d\r\n\r\n" % body
    else:
        framing = b"\r\n"
    names = request.names
    if not request.drop and _REQUEST_DROP.isdisjoint(names):
        key = (client_ip, request.host)
        forwarding = _FORWARDING.get(key)
        if forwarding is None:
            if len(_FORWARDING) > 1024:
                _FORWARDING.clear()
            forwarding = _FORWARDING[key] = _forwarding(client_ip, request.host, [], [], [])
        return b"".join((first, request.block, forwarding, framing))
    forwarded_for: list[bytes] = []
    forwarded: list[bytes] = []
    via: list[bytes] = []
    parts = [first]
    drop = request.drop
    for index, name in enumerate(names):
        if name in _REQUEST_DROP or name in drop:
            if name == b"x-forwarded-for":
                forwarded_for.append(field_value(request.lines[index]))
            elif name == b"forwarded":
                forwarded.append(field_value(request.lines[index]))
            elif name == b"via":
                via.append(field_value(request.lines[index]))
            continue
        parts.append(request.lines[index])
        parts.append(b"\r\n")
    parts.append(_forwarding(client_ip, request.host, forwarded_for, forwarded, via))
    upgrade = request.upgrade
    if upgrade is not None:  # the one hop-by-hop request the router passes on, for a tunnel
        parts += [b"Connection: upgrade\r\nUpgrade: ", upgrade, b"\r\n"]
    parts.append(framing)
    return b"".join(parts)


def _forwarding(
    client_ip: str,
    host: bytes,
    forwarded_for: list[bytes],
    forwarded: list[bytes],
    via: list[bytes],
) -> bytes:
    ip = client_ip.encode("ascii")
    forwarded_for.append(ip)
    node = b'"[' + ip + b']"' if b":" in ip else ip
    element = b"for=" + node + b";proto=http"
    if host:
        element += b';host="' + host.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    forwarded.append(element)
    via.append(b"1.1 shipyard")
    parts = [
        b"X-Forwarded-For: ",
        b", ".join(forwarded_for),
        b"\r\nForwarded: ",
        b", ".join(forwarded),
        b"\r\nX-Forwarded-Proto: http\r\nVia: ",
        b", ".join(via),
        b"\r\n",
    ]
    if host:
        parts += [b"X-Forwarded-Host: ", host, b"\r\n"]
    return b"".join(parts)


def client_response(
    response: ResponseHead,
    *,
    framing: int,
    version: bytes,
    close: bool,
    client_minor: int,
    extra: bytes = b"",
) -> bytes:
    """The head sent to the client; ``framing`` is a length, ``CHUNKED`` or ``UNTIL_CLOSE``."""
    if response.plain and framing == response.body:
        if close:
            ending = b"Connection: close\r\n\r\n"
        elif client_minor == 0:
            ending = b"Connection: keep-alive\r\n\r\n"
        else:
            ending = b"\r\n"
        return b"".join(
            (
                response.first,
                response.block,
                b"X-Shipyard-Version: ",
                version,
                b"\r\n",
                extra,
                ending,
            )
        )
    parts = [response.first]
    drop = response.drop
    keep_length = response.body == NO_BODY
    for index, name in enumerate(response.names):
        if (name in _RESPONSE_DROP or name in drop) and not (
            keep_length and name == b"content-length"
        ):
            continue
        parts.append(response.lines[index])
        parts.append(b"\r\n")
    parts += [b"X-Shipyard-Version: ", version, b"\r\n", extra]
    if response.body == NO_BODY:
        pass
    elif framing == CHUNKED:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    elif framing >= 0:
        parts += [b"Content-Length: ", str(framing).encode(), b"\r\n"]
    if close:
        parts.append(b"Connection: close\r\n\r\n")
    elif client_minor == 0:
        parts.append(b"Connection: keep-alive\r\n\r\n")
    else:
        parts.append(b"\r\n")
    return b"".join(parts)


def switching_response(response: ResponseHead, *, version: bytes, extra: bytes = b"") -> bytes:
    """The 101 (Switching Protocols) sent to the client before a tunnel: the upstream's, with
    its other hop-by-hop fields removed."""
    parts = [response.first]
    upgrade = b""
    for index, name in enumerate(response.names):
        if name == b"upgrade":
            upgrade = field_value(response.lines[index])
        elif name not in _RESPONSE_DROP and name not in response.drop:
            parts += [response.lines[index], b"\r\n"]
    parts += [b"X-Shipyard-Version: ", version, b"\r\n", extra]
    parts += [b"Connection: upgrade\r\nUpgrade: ", upgrade, b"\r\n\r\n"]
    return b"".join(parts)


def interim_response(response: ResponseHead) -> bytes:
    """A 1xx response relayed to an HTTP/1.1 client, hop-by-hop fields removed."""
    parts = [response.first]
    for index, name in enumerate(response.names):
        if name not in HOP_BY_HOP and name not in response.drop:
            parts += [response.lines[index], b"\r\n"]
    parts.append(b"\r\n")
    return b"".join(parts)


def simple_response(
    status: int,
    body: bytes,
    *,
    content_type: bytes = b"text/plain; charset=utf-8",
    close: bool = False,
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> bytes:
    """A complete response generated by the router itself (errors, admin answers)."""
    reason = _REASONS.get(status, "Unknown").encode()
    parts = [b"HTTP/1.1 ", str(status).encode(), b" ", reason, b"\r\n"]
    for name, value in headers:
        parts += [name, b": ", value, b"\r\n"]
    parts += [
        b"Content-Type: ",
        content_type,
        b"\r\nContent-Length: ",
        str(len(body)).encode(),
        b"\r\nCache-Control: no-store\r\n",
    ]
    if close:
        parts.append(b"Connection: close\r\n")
    parts += [b"\r\n", body]
    return b"".join(parts)


def chunk(data: bytes) -> bytes:
    """One chunk of the chunked coding carrying ``data`` (which must not be empty)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


class ChunkedDecoder:
    """Incremental decoder of a chunked body: feed bytes, get data, trailers and what follows."""

    __slots__ = ("_buffer", "_remaining", "_state", "_status", "done", "leftover", "trailers")

    _SIZE, _DATA, _DATA_END, _TRAILERS = range(4)

    def __init__(self, *, upstream: bool = False) -> None:
        self._state = self._SIZE
        self._remaining = 0
        self._buffer = b""
        self._status = 502 if upstream else 400
        self.done = False
        self.trailers = b""
        self.leftover = b""

    def feed(self, data: bytes) -> list[bytes]:
        """Decode ``data``; return the body bytes found. Sets ``done`` at the end of the body."""
        if self._buffer:
            data = self._buffer + data
            self._buffer = b""
        out: list[bytes] = []
        position = 0
        size = len(data)
        while position < size and not self.done:
            state = self._state
            if state == self._DATA:
                take = min(self._remaining, size - position)
                out.append(data[position : position + take])
                position += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = self._DATA_END
            elif state == self._DATA_END:
                if size - position < 2:
                    break
                if data[position : position + 2] != b"\r\n":
                    raise BadMessage(self._status, "a chunk is longer than its declared size")
                position += 2
                self._state = self._SIZE
            elif state == self._SIZE:
                end = data.find(b"\r\n", position)
                if end < 0:
                    if size - position > MAX_CHUNK_LINE:
                        raise BadMessage(self._status, "chunk-size line too long")
                    break
                matched = _HEX_SIZE.fullmatch(data, position, end)
                if matched is None:
                    raise BadMessage(self._status, "malformed chunk-size line")
                position = end + 2
                self._remaining = int(matched.group(1), 16)
                self._state = self._DATA if self._remaining else self._TRAILERS
            else:
                end = data.find(b"\r\n", position)
                if end < 0:
                    if len(self.trailers) + size - position > MAX_HEAD:
                        raise BadMessage(self._status, "trailer section too large")
                    break
                line = data[position:end]
                position = end + 2
                if not line:
                    self.done = True
                elif _FIELDS.fullmatch(line + b"\r\n") is None:
                    raise BadMessage(self._status, "malformed trailer field")
                else:
                    self.trailers += line + b"\r\n"
                    if len(self.trailers) > MAX_HEAD:
                        raise BadMessage(self._status, "trailer section too large")
        rest = data[position:]
        if self.done:
            self.leftover = rest
        elif rest:
            self._buffer = rest
        return out

    def end(self) -> bytes:
        """The last chunk and trailers, for re-encoding the body chunked."""
        return b"0\r\n" + self.trailers + b"\r\n"

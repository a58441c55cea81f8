"""The router's HTTP/1.1 rules without sockets: heads, framing, the chunked coding."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipyard.cd.router.errors import BadMessage
from shipyard.cd.router.http import (
    CHUNKED,
    NO_BODY,
    UNTIL_CLOSE,
    ChunkedDecoder,
    _parse_request_fully,
    _parse_response_fully,
    client_response,
    parse_request,
    parse_response,
    switching_response,
    upstream_request,
)


def test_a_request_head_is_parsed_with_its_framing_and_connection_rules() -> None:
    head = parse_request(
        b"POST /a?b=c HTTP/1.1\r\nHost: shop\r\nContent-Length: 12\r\n"
        b"Connection: keep-alive, X-Hop\r\nX-Shipyard-Version: green\r\n\r\n"
    )
    assert (head.method, head.target, head.minor, head.body) == (b"POST", b"/a?b=c", 1, 12)
    assert head.keep_alive is True
    assert head.host == b"shop"
    assert head.version == b"green"
    assert head.drop == frozenset({b"x-hop"})
    old = parse_request(b"GET / HTTP/1.0\r\n\r\n")
    assert (old.minor, old.keep_alive, old.body) == (0, False, NO_BODY)
    assert parse_request(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive


def test_the_upstream_head_drops_hop_by_hop_fields_and_sets_framing() -> None:
    head = parse_request(
        b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: X-A\r\n"
        b"X-A: 1\r\nUpgrade: websocket\r\nX-Keep: 2\r\n\r\n"
    )
    assert head.body == CHUNKED
    sent = upstream_request(head, "::1")
    lines = sent.split(b"\r\n")
    assert lines[0] == b"POST /x HTTP/1.1"
    assert b"X-Keep: 2" in lines
    assert b"Transfer-Encoding: chunked" in lines
    assert not any(
        line.lower().startswith((b"x-a:", b"upgrade:", b"connection:")) for line in lines
    )
    assert b'Forwarded: for="[::1]";proto=http;host="h"' in lines
    assert sent.endswith(b"\r\n\r\n")


def test_an_upgrade_request_keeps_its_upgrade_fields_upstream() -> None:
    head = parse_request(
        b"GET /socket HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\n"
        b"Upgrade: websocket\r\nSec-WebSocket-Key: abc\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert head.upgrade == b"websocket"
    lines = upstream_request(head, "10.0.0.1").split(b"\r\n")
    assert b"Connection: upgrade" in lines and b"Upgrade: websocket" in lines
    assert b"Sec-WebSocket-Key: abc" in lines
    assert sum(line.lower().startswith(b"connection:") for line in lines) == 1
    # Without the Connection token, or from an HTTP/1.0 client, Upgrade is only hop-by-hop.
    for raw in (
        b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n",
        b"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    ):
        plain = parse_request(raw)
        assert plain.upgrade is None
        assert b"upgrade:" not in upstream_request(plain, "10.0.0.1").lower()


def test_the_switching_answer_keeps_the_upgrade_and_names_the_version() -> None:
    response = parse_response(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade, X-Hop\r\n"
        b"X-Hop: 1\r\nKeep-Alive: timeout=5\r\nSec-WebSocket-Accept: xyz\r\n\r\n",
        request_method=b"GET",
    )
    lines = switching_response(response, version=b"green").split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 101 Switching Protocols"
    assert b"Sec-WebSocket-Accept: xyz" in lines
    assert b"X-Shipyard-Version: green" in lines
    assert b"Connection: upgrade" in lines and b"Upgrade: websocket" in lines
    assert not any(line.lower().startswith((b"x-hop", b"keep-alive")) for line in lines)


@pytest.mark.parametrize(
    ("raw", "method", "body", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", b"GET", 5, True),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"GET", CHUNKED, True),
        (b"HTTP/1.1 200 OK\r\n\r\n", b"GET", UNTIL_CLOSE, False),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", b"GET", UNTIL_CLOSE, False),
        (b"HTTP/1.1 204 No Content\r\n\r\n", b"GET", NO_BODY, True),
        (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", b"GET", NO_BODY, True),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", b"HEAD", NO_BODY, True),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", b"GET", 1, False),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n", b"GET", 1, False),
        (b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", b"GET", 0, True),
    ],
)
def test_response_framing_follows_rfc_9112(
    raw: bytes, method: bytes, body: int, keep_alive: bool
) -> None:
    head = parse_response(raw, request_method=method)
    assert (head.body, head.keep_alive) == (body, keep_alive)


def test_a_head_response_keeps_its_content_length_for_the_client() -> None:
    head = parse_response(
        b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nKeep-Alive: x\r\n\r\n", request_method=b"HEAD"
    )
    sent = client_response(head, framing=NO_BODY, version=b"v1", close=False, client_minor=1)
    assert b"Content-Length: 9\r\n" in sent
    assert b"Keep-Alive" not in sent


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        b"SPDY 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
    ],
)
def test_a_broken_upstream_response_is_a_502(raw: bytes) -> None:
    with pytest.raises(BadMessage) as raised:
        parse_response(raw, request_method=b"GET")
    assert raised.value.status == 502


def test_the_chunked_decoder_works_fed_one_byte_at_a_time() -> None:
    wire = b"5;ext=1\r\nhello\r\n1A\r\n" + b"z" * 26 + b"\r\n0\r\nX-Sum: 1\r\n\r\nNEXT"
    decoder = ChunkedDecoder()
    data = b""
    for index in range(len(wire)):
        if decoder.done:
            break
        data += b"".join(decoder.feed(wire[index : index + 1]))
    assert data == b"hello" + b"z" * 26
    assert decoder.done
    assert decoder.trailers == b"X-Sum: 1\r\n"
    whole = ChunkedDecoder()
    assert b"".join(whole.feed(wire)) == data
    assert whole.leftover == b"NEXT"


@pytest.mark.parametrize(
    "wire",
    [b"xyz\r\n", b"5\r\nhelloX\r\n", b"1" * 5000, b"12345678901234567\r\n"],
)
def test_a_malformed_chunked_body_is_refused(wire: bytes) -> None:
    with pytest.raises(BadMessage):
        ChunkedDecoder().feed(wire)


# Heads built from pieces that are mostly valid, sometimes invalid or unusual, then perhaps one
# byte changed: whichever way the parsers take, they must say exactly what the step-by-step
# parsers say (the same head, or the same error status).
_VALID_FIELDS = ["Accept: */*", "Connection: keep-alive", "Cookie: a=b", "X-A: 1", "Via: 1.0 e"]
_VALID_FIELDS += ["Connection: close, X-A", "X-Shipyard-Version: v1", "Content-Type: text/plain"]
_ODD_FIELDS = ["host: other", "Content-Length: 1, 1", "Content-Length: 7", "Expect: 100-continue"]
_ODD_FIELDS += ["Transfer-Encoding: chunked", "Content-Length: 5", "Content-Length:5"]
_ODD_FIELDS += ["Expect: magic", "Transfer-Encoding: gzip", "Bad Name: x", ": x", "X:Y: z"]
_ODD_FIELDS += ["X-A:\tv ", "X-A : v", "X-A: \x01", "X-A: v\x7f", "X-A: \xe9", "Keep-Alive: 5"]
_ODD_FIELDS += ["Content-Length: -1", "X-A: v\n", " folded", "Content-Length: 99999999999999999999"]
_field = st.one_of(st.sampled_from(_VALID_FIELDS), st.sampled_from(_ODD_FIELDS))
_fields = st.lists(st.sampled_from(_VALID_FIELDS), max_size=4).flatmap(
    lambda usual: st.lists(_field, max_size=2).map(lambda odd: usual + odd)
)


def _head(first: str, fields: list[str]) -> str:
    return first + "\r\n" + "".join(field + "\r\n" for field in fields) + "\r\n"


_requests = st.builds(
    lambda method, target, version, host, fields: _head(
        f"{method} {target} {version}", ["Host: shop"] * host + fields
    ),
    st.sampled_from(["GET"] * 6 + ["POST", "HEAD", "get", "CONNECT", "M!X", "", "GET "]),
    st.sampled_from(["/", "/a?b=c", "/x/y"] * 3 + ["*", "http://shop/x", "https://h", "/\xe9"]),
    st.sampled_from(["HTTP/1.1"] * 6 + ["HTTP/1.0", "HTTP/1.0", "HTTP/2.0", "HTTP/1.5", "HTTP/0."]),
    st.integers(0, 4).map(bool),
    _fields,
)
_responses = st.builds(
    lambda version, status, reason, fields: _head(f"{version} {status}{reason}", fields),
    st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/1.7", "HTTP/2", "SPDY"]),
    st.sampled_from(["200", "200", "204", "304", "100", "101", "502", "099", "2000"]),
    st.sampled_from([" OK", " OK", " ", "", " Not\x01Found", " D\xe9j\xe0 vu"]),
    _fields,
)


def _mutated(draw: st.DrawFn, text: str) -> bytes:
    head = text.encode("latin-1")
    if draw(st.integers(0, 3)) == 0:
        at = draw(st.integers(0, len(head) - 1))
        byte = draw(st.sampled_from(b" :\t\r\n\x00\x08\x7fAz/,;\x80"))
        head = head[:at] + bytes([byte]) + head[at + draw(st.integers(0, 1)) :]
    return head


@st.composite
def _mutated_head(draw: st.DrawFn, heads: st.SearchStrategy[str]) -> bytes:
    return _mutated(draw, draw(heads))


def _outcome(parse: Callable[[bytes], object], head: bytes) -> object:
    try:
        return parse(head)
    except BadMessage as error:
        return ("BadMessage", error.status)


# Each example checks a batch of distinct heads: 150 examples of 20 make the same 3,000 heads
# as 3,000 examples of one, at a fraction of Hypothesis's cost per example (its draws and
# bookkeeping, not the parsers, took the time). Distinct, because Hypothesis otherwise likes
# to repeat an element within a list: with unique=True a run draws as many different heads
# (about 2,700 of the 3,000) as one head per example did (about 2,600).
_BATCH = 20


@settings(max_examples=150, deadline=None)
@given(st.lists(_mutated_head(_requests), min_size=_BATCH, max_size=_BATCH, unique=True))
def test_the_usual_request_form_is_parsed_exactly_like_any_other(heads: list[bytes]) -> None:
    for head in heads:
        assert _outcome(parse_request, head) == _outcome(_parse_request_fully, head), head


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(_mutated_head(_responses), st.sampled_from([b"GET", b"HEAD"])),
        min_size=_BATCH,
        max_size=_BATCH,
        unique=True,
    )
)
def test_the_usual_response_form_is_parsed_exactly_like_any_other(
    heads: list[tuple[bytes, bytes]],
) -> None:
    for head, method in heads:
        usual = _outcome(partial(parse_response, request_method=method), head)
        assert usual == _outcome(partial(_parse_response_fully, request_method=method), head), head

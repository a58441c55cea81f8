"""Users' feedback posted to the router: off by default, never forwarded, attributed to the
version the user was served, counted per version (weighted apart from pinned) in the window
statistics and in /metrics, and kept in a bounded ring on the admin API."""

from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cd.router.router_support import (
    PATIENCE,
    RouterInThread,
    RouterProcess,
    UpstreamServer,
    raw_exchange,
    request,
    table,
)
from shipyard.cd.router.feedback import COMPLAINT_CHARS, MAX_FEEDBACK_BODY, RECENT_FEEDBACK

PATH = "/.shipyard/feedback"
PIN = "X-Shipyard-Version"


@pytest.fixture
def site(
    start_router: Callable[..., RouterInThread], upstream: Callable[[str], UpstreamServer]
) -> tuple[RouterInThread, UpstreamServer, UpstreamServer]:
    """A router taking feedback on PATH, blue at 90 and green at 10."""
    router = start_router(feedback_path=PATH)
    blue, green = upstream("blue"), upstream("green")
    router.client.set_routes(table({"blue": (90, [blue.address]), "green": (10, [green.address])}))
    router.client.reset_stats()
    return router, blue, green


def post(
    router: RouterInThread,
    body: Any,
    *,
    headers: dict[str, str] | None = None,
    path: str = PATH,
    connection: http.client.HTTPConnection | None = None,
) -> tuple[int, dict[str, Any]]:
    """POST ``body`` (JSON unless bytes) to ``path``; the status and the JSON answer."""
    own = connection is None
    connection = connection or router.connection()
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    try:
        answer = request(
            connection,
            "POST",
            path,
            body=data,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
    finally:
        if own:
            connection.close()
    return answer.status, json.loads(answer.body) if answer.body else {}


def test_off_by_default_the_path_goes_upstream_like_any_other(
    router: RouterInThread, upstream: Callable[[str], UpstreamServer]
) -> None:
    blue = upstream("blue")
    router.client.set_routes(table({"blue": (100, [blue.address])}))
    connection = router.connection()
    answer = request(connection, "POST", PATH, body=b'{"score": 1}')
    assert (answer.status, answer.body) == (200, b"blue")
    assert blue.paths == [PATH]
    assert router.client.health().feedback_path is None
    assert router.client.feedback().feedback == ()
    assert router.client.stats().versions["blue"].requests == 1


def test_feedback_is_answered_202_counted_for_its_version_and_never_forwarded(
    site: tuple[RouterInThread, UpstreamServer, UpstreamServer],
) -> None:
    router, blue, green = site
    assert post(router, {"complaint": "too slow", "version": "green"}) == (
        202,
        {"accepted": True, "version": "green", "traffic": "weighted"},
    )
    assert post(router, {"score": 2, "version": "green"})[0] == 202
    assert post(router, {"score": 5, "complaint": "but ugly", "version": "green"})[0] == 202
    assert post(router, {"score": 4, "version": "blue"})[0] == 202
    assert blue.requests == green.requests == 0
    stats = router.client.stats().versions
    green_stats, blue_stats = stats["green"], stats["blue"]
    assert (green_stats.complaints, green_stats.scores, green_stats.score_sum) == (2, 2, 7)
    assert green_stats.mean_score == pytest.approx(3.5)
    assert (blue_stats.complaints, blue_stats.scores, blue_stats.score_sum) == (0, 1, 4)
    # Feedback is not a request the version served.
    assert green_stats.requests == blue_stats.requests == 0
    assert router.client.stats().rejected == 0


def test_the_version_header_names_the_version_and_counts_the_feedback_as_pinned(
    site: tuple[RouterInThread, UpstreamServer, UpstreamServer],
) -> None:
    router, _, _ = site
    status, answer = post(
        router, {"complaint": "broken", "version": "blue"}, headers={PIN: "green"}
    )
    assert (status, answer["version"], answer["traffic"]) == (202, "green", "pinned")
    green = router.client.stats().versions["green"]
    assert green.complaints == 0  # the judge's window: weighted only
    assert green.pinned is not None and green.pinned.complaints == 1
    [kept] = router.client.feedback().feedback
    assert (kept.version, kept.pinned, kept.via) == ("green", True, "header")


def test_a_header_naming_no_routed_version_falls_back_to_stickiness_then_the_body(
    start_router: Callable[..., RouterInThread], upstream: Callable[[str], UpstreamServer]
) -> None:
    router = start_router(feedback_path=PATH)
    blue, green = upstream("blue"), upstream("green")
    router.client.set_routes(
        table(
            {"blue": (50, [blue.address]), "green": (50, [green.address])},
            sticky={"cookie": "shipyard_id"},
        )
    )
    connection = router.connection()
    served = request(connection, "GET", "/")
    cookie = served.headers["set-cookie"].split(";")[0]
    for _ in range(3):
        status, answer = post(
            router,
            {"score": 1, "version": "blue" if served.version == "green" else "green"},
            headers={PIN: "9.9.9", "Cookie": f"theme=dark; {cookie}"},
        )
        assert (status, answer["version"], answer["traffic"]) == (202, served.version, "weighted")
    # Without a cookie, the body's version; a new cookie is never issued for feedback.
    connection = router.connection()
    answer_head = request(connection, "POST", PATH, body=b'{"score": 3, "version": "green"}')
    assert answer_head.status == 202
    assert "set-cookie" not in answer_head.headers
    vias = [(f.via, f.version) for f in router.client.feedback().feedback]
    assert vias == [("body", "green"), *[("sticky", str(served.version))] * 3]


def test_a_sticky_header_gives_the_version_its_value_is_routed_to(
    start_router: Callable[..., RouterInThread], upstream: Callable[[str], UpstreamServer]
) -> None:
    router = start_router(feedback_path=PATH)
    blue, green = upstream("blue"), upstream("green")
    router.client.set_routes(
        table(
            {"blue": (50, [blue.address]), "green": (50, [green.address])},
            sticky={"header": "X-User"},
        )
    )
    for user in ("ann", "bob", "cy", "dee", "eve"):
        served = router.get("/", headers={"X-User": user}).version
        status, answer = post(router, {"complaint": "meh"}, headers={"X-User": user})
        assert (status, answer["version"]) == (202, served)


def test_feedback_about_a_version_no_longer_routed_counts_while_its_statistics_are_kept(
    site: tuple[RouterInThread, UpstreamServer, UpstreamServer],
) -> None:
    router, blue, _ = site
    router.client.set_routes(table({"blue": (100, [blue.address])}))
    assert post(router, {"complaint": "the old one was better", "version": "green"})[0] == 202
    assert router.client.stats().versions["green"].complaints == 1
    router.client.reset_stats()  # green is forgotten: no longer routed, window closed
    status, answer = post(router, {"complaint": "still", "version": "green"})
    assert status == 400
    assert "'green' is not routed here" in answer["error"]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"score=5", "the body is not JSON"),
        (b"\xff\xfe{", "the body is not JSON"),
        (b"[" * 5000 + b"]" * 5000, "the body is not JSON"),
        (b"[1]", "must be a JSON object"),
        (b"{}", "no score and no complaint"),
        (b'{"version": "blue"}', "no score and no complaint"),
        (b'{"score": 0, "version": "blue"}', "from 1 to 5"),
        (b'{"score": 6, "version": "blue"}', "from 1 to 5"),
        (b'{"score": 3.5, "version": "blue"}', "from 1 to 5"),
        (b'{"score": "5", "version": "blue"}', "from 1 to 5"),
        (b'{"score": true, "version": "blue"}', "from 1 to 5"),
        (b'{"complaint": "  ", "version": "blue"}', "not empty"),
        (b'{"complaint": 5, "version": "blue"}', "not empty"),
        (b'{"complaint": "x", "version": 3}', "'version' must be"),
        (b'{"complaint": "x", "rating": 3, "version": "blue"}', "unknown key 'rating'"),
        (b'{"complaint": "x"}', "cannot tell which version"),
        (b'{"complaint": "x", "version": "7.7.7"}', "'7.7.7' is not routed here"),
    ],
)
def test_bad_feedback_gets_a_400_that_says_why_and_the_connection_goes_on(
    site: tuple[RouterInThread, UpstreamServer, UpstreamServer], body: bytes, problem: str
) -> None:
    router, blue, green = site
    connection = router.connection()
    status, answer = post(router, body, connection=connection)
    assert status == 400
    assert problem in answer["error"]
    assert request(connection, "GET", "/").status == 200  # kept alive, body consumed
    stats = router.client.stats()
    assert stats.rejected == 1
    assert all(v.complaints == v.scores == 0 for v in stats.versions.values())
    assert router.client.feedback().received == 0
    assert blue.paths + green.paths == ["/"]


def test_too_large_chunked_or_not_posted_feedback_is_refused_with_its_status(
    site: tuple[RouterInThread, UpstreamServer, UpstreamServer],
) -> None:
    router, blue, green = site
    head = f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_FEEDBACK_BODY + 1}\r\n\r\n"
    answer = raw_exchange(router.port, head.encode())  # refused before the body is sent
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"Connection: close" in answer
    chunked = f"POST {PATH} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    answer = raw_exchange(router.port, chunked.encode())
    assert answer.startswith(b"HTTP/1.1 411 ")
    connection = router.connection()
    got = request(connection, "GET", PATH)
    assert got.status == 405
    assert got.headers["allow"] == "POST"
    assert "POST" in json.loads(got.body)["error"]
    assert request(connection, "GET", "/").status == 200
    assert router.client.stats().rejected == 3
    assert blue.paths + green.paths == ["/"]


def test_the_path_with_a_query_is_feedback_and_a_longer_path_is_not(
    site: tuple[RouterInThread, UpstreamServer, UpstreamServer],
) -> None:
    router, blue, green = site
    assert post(router, {"score": 5, "version": "blue"}, path=f"{PATH}?from=footer")[0] == 202
    connection = router.connection()
    other = request(connection, "POST", f"{PATH}s", body=b"{}")
    assert other.status == 200 and other.body in (b"blue", b"green")
    assert blue.paths + green.paths == [f"{PATH}s"]


def test_feedback_pipelined_between_requests_is_answered_in_order(
    site: tuple[RouterInThread, UpstreamServer, UpstreamServer],
) -> None:
    router, _, _ = site
    body = b'{"score": 2, "version": "blue"}'
    data = (
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        + f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
        + b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    answer = raw_exchange(router.port, data)
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)
    assert statuses == [b"200", b"202", b"200"]
    assert router.client.stats().versions["blue"].scores == 1


def test_a_client_expecting_100_continue_is_asked_for_the_body(
    site: tuple[RouterInThread, UpstreamServer, UpstreamServer],
) -> None:
    router, _, _ = site
    body = b'{"complaint": "waited", "version": "green"}'
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", router.port), timeout=PATIENCE) as sock:
        sock.sendall(head.encode())
        interim = sock.recv(1024)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        final = b""
        while piece := sock.recv(65536):
            final += piece
    assert final.startswith(b"HTTP/1.1 202 ")
    assert router.client.stats().versions["green"].complaints == 1


def test_complaints_are_kept_as_sent_shortened_in_a_bounded_ring_newest_first(
    site: tuple[RouterInThread, UpstreamServer, UpstreamServer],
) -> None:
    router, _, _ = site
    hostile = "<script>alert(1)</script>\x1b[31mred\x1b[0m\nline two \u202e"
    connection = router.connection()
    assert post(router, {"complaint": hostile, "version": "blue"}, connection=connection)[0] == 202
    long = "é" * (COMPLAINT_CHARS + 500)
    assert post(router, {"complaint": long, "version": "blue"}, connection=connection)[0] == 202
    recent = router.client.feedback()
    assert recent.path == PATH
    assert [f.complaint for f in recent.feedback] == ["é" * COMPLAINT_CHARS, hostile]
    assert recent.feedback[0].score is None and recent.feedback[0].at >= recent.feedback[1].at
    for index in range(RECENT_FEEDBACK):
        body = {"score": index % 5 + 1, "version": "green"}
        assert post(router, body, connection=connection)[0] == 202
    recent = router.client.feedback()
    assert recent.received == RECENT_FEEDBACK + 2
    assert len(recent.feedback) == recent.capacity == RECENT_FEEDBACK
    assert recent.feedback[0].score == (RECENT_FEEDBACK - 1) % 5 + 1
    assert all(f.version == "green" for f in recent.feedback)  # the two complaints are gone
    assert router.client.stats().versions["blue"].complaints == 2  # still counted


def test_a_reset_closes_the_feedback_window_but_keeps_the_recent_feedback(
    site: tuple[RouterInThread, UpstreamServer, UpstreamServer],
) -> None:
    router, _, _ = site
    assert post(router, {"complaint": "no", "version": "green"})[0] == 202
    closed = router.client.reset_stats()
    assert closed.versions["green"].complaints == 1
    assert router.client.stats().versions["green"].complaints == 0
    assert len(router.client.feedback().feedback) == 1


def test_metrics_count_complaints_and_scores_by_version_and_traffic(
    site: tuple[RouterInThread, UpstreamServer, UpstreamServer],
) -> None:
    router, _, _ = site
    post(router, {"complaint": "a", "version": "green"})
    post(router, {"complaint": "b", "score": 1, "version": "green"})
    post(router, {"score": 4}, headers={PIN: "green"})
    post(router, {"score": 5, "version": "blue"})
    lines = router.client.metrics().splitlines()
    green = 'env="test",version="green"'
    blue = 'env="test",version="blue"'
    for line in (
        "# TYPE shipyard_router_feedback_complaints_total counter",
        "# TYPE shipyard_router_feedback_score summary",
        f'shipyard_router_feedback_complaints_total{{{green},traffic="weighted"}} 2',
        f'shipyard_router_feedback_complaints_total{{{green},traffic="pinned"}} 0',
        f'shipyard_router_feedback_score_sum{{{green},traffic="weighted"}} 1',
        f'shipyard_router_feedback_score_count{{{green},traffic="weighted"}} 1',
        f'shipyard_router_feedback_score_sum{{{green},traffic="pinned"}} 4',
        f'shipyard_router_feedback_score_count{{{green},traffic="pinned"}} 1',
        f'shipyard_router_feedback_score_sum{{{blue},traffic="weighted"}} 5',
        f'shipyard_router_feedback_complaints_total{{{blue},traffic="weighted"}} 0',
    ):
        assert line in lines


def test_the_router_process_takes_feedback_on_its_path_and_never_logs_the_text(
    state_root: Path, upstream: Callable[[str], UpstreamServer]
) -> None:
    blue = upstream("blue")
    router = RouterProcess(state_root, "fb", extra=["--feedback-path", "/say"])
    try:
        router.client.set_routes(table({"blue": (100, [blue.address])}))
        assert router.client.health().feedback_path == "/say"
        connection = router.connection()
        secret = "my card number is 4111 1111 1111 1111"
        body = json.dumps({"complaint": secret, "version": "blue"}).encode()
        assert request(connection, "POST", "/say", body=body).status == 202
        assert (
            request(connection, "POST", "/say", body=b"not json " + secret.encode()).status == 400
        )
        assert router.client.stats().versions["blue"].complaints == 1
    finally:
        assert router.terminate() == 0
    assert "4111" not in router.log
    assert blue.requests == 0


@pytest.mark.parametrize("path", ["say", "/with space", "/q?x=1", "/frag#x", ""])
def test_an_unusable_feedback_path_stops_the_router_with_exit_2(
    state_root: Path, path: str
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "shipyard.cd.router",
            "--env",
            "bad",
            "--port",
            "0",
            "--state-dir",
            str(state_root),
            "--feedback-path",
            path,
        ],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=False,
    )
    assert result.returncode == 2
    assert "is not a URL path" in result.stderr
    assert "hint:" in result.stderr
    assert "Traceback" not in result.stderr

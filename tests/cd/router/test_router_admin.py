"""The admin API: tokens, validation that leaves routes unchanged, statistics and /metrics."""

from __future__ import annotations

import http.client
import json
import re
import stat
import time
from collections import Counter
from collections.abc import Callable

import pytest

from cd.router.router_support import (
    PATIENCE,
    RouterInThread,
    UpstreamServer,
    request,
    table,
)
from shipyard.cd.router.client import RouterClient
from shipyard.cd.router.errors import (
    InvalidRoutes,
    RevisionConflict,
    RouterAuthError,
    RouterUnavailable,
)
from shipyard.cd.router.routes import RouteTable
from shipyard.cd.router.state import RouterFiles
from shipyard.cd.router.stats import SAMPLE_SIZE


@pytest.fixture
def two_versions(
    router: RouterInThread, upstream: Callable[[str], UpstreamServer]
) -> tuple[RouterInThread, RouteTable]:
    """A router with blue at 90 and green at 10."""
    blue, green = upstream("blue"), upstream("green")
    routes = table({"blue": (90, [blue.address]), "green": (10, [green.address])})
    router.client.set_routes(routes)
    return router, routes


def _admin(router: RouterInThread, method: str, path: str, body: bytes | None, token: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", router.router.admin_port, timeout=5)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    connection.request(method, path, body=body, headers=headers)
    status = connection.getresponse().status
    connection.close()
    return status


def test_the_token_file_is_private_and_a_wrong_token_is_refused(
    two_versions: tuple[RouterInThread, RouteTable],
) -> None:
    router, routes = two_versions
    files = RouterFiles.at(router.state_root, router.env)
    assert stat.S_IMODE(files.token_path.stat().st_mode) == 0o600
    impostor = RouterClient("127.0.0.1", router.router.admin_port, "not-the-token-at-all")
    with pytest.raises(RouterAuthError):
        impostor.set_weights({"blue": 0, "green": 100})
    with pytest.raises(RouterAuthError):
        impostor.stats()
    body = json.dumps({"weights": {"blue": 0, "green": 100}}).encode()
    assert _admin(router, "PUT", "/weights", body, "") == 401
    assert _admin(router, "GET", "/metrics", None, "") == 401
    assert router.client.routes().table == routes


@pytest.mark.parametrize(
    ("weights", "problem"),
    [
        ({"purple": 100, "blue": 0}, "no version named 'purple'"),
        ({"blue": 50, "green": 40}, "add up to 90, not 100"),
        ({"blue": 101, "green": -1}, "integer from 0 to 100"),
        ({"blue": "50", "green": 50}, "integer from 0 to 100"),
    ],
)
def test_bad_weights_are_rejected_and_routes_unchanged(
    two_versions: tuple[RouterInThread, RouteTable], weights: dict[str, object], problem: str
) -> None:
    router, routes = two_versions
    before = router.client.routes()
    with pytest.raises(InvalidRoutes) as raised:
        router.client.set_weights(weights)  # type: ignore[arg-type]
    assert problem in str(raised.value)
    after = router.client.routes()
    assert (after.revision, after.table) == (before.revision, routes)


def test_a_bad_route_table_lists_every_problem_and_changes_nothing(
    two_versions: tuple[RouterInThread, RouteTable],
) -> None:
    router, routes = two_versions
    bad = {
        "routes": {
            "versions": [
                {"name": "blue", "weight": 70, "instances": ["127.0.0.1:1", "nowhere"]},
                {"name": "bad name!", "weight": 20, "instances": []},
                {"name": "blue", "weight": 20, "instances": ["127.0.0.1:99999"]},
            ],
            "sticky": {"header": "has space"},
        }
    }
    token = RouterFiles.at(router.state_root, router.env).token()
    connection = http.client.HTTPConnection("127.0.0.1", router.router.admin_port, timeout=5)
    connection.request(
        "PUT", "/routes", body=json.dumps(bad), headers={"Authorization": f"Bearer {token}"}
    )
    response = connection.getresponse()
    answer = json.loads(response.read())
    assert response.status == 422
    problems = " | ".join(answer["problems"])
    for expected in ("'nowhere' is not 'host:port'", "the name must be", "99999", "sticky"):
        assert expected in problems
    assert router.client.routes().table == routes
    for status, body in [(400, b"{not json"), (422, b"[1, 2]"), (422, b'{"routes": 5}')]:
        assert _admin(router, "PUT", "/routes", body, token) == status
    assert _admin(router, "GET", "/nothing-here", None, token) == 404
    assert _admin(router, "DELETE", "/routes", None, token) == 405
    assert router.client.routes().table == routes


def test_a_change_based_on_an_old_revision_is_refused(
    two_versions: tuple[RouterInThread, RouteTable],
) -> None:
    router, _ = two_versions
    revision = router.client.routes().revision
    router.client.set_weights({"blue": 50, "green": 50}, expect_revision=revision)
    with pytest.raises(RevisionConflict):
        router.client.set_weights({"blue": 0, "green": 100}, expect_revision=revision)
    assert router.client.routes().table.weights == {"blue": 50, "green": 50}


def test_draining_an_unknown_instance_is_refused(
    two_versions: tuple[RouterInThread, RouteTable],
) -> None:
    router, routes = two_versions
    with pytest.raises(InvalidRoutes, match=re.escape("no instance at '127.0.0.1:1'")):
        router.client.drain("127.0.0.1:1")
    assert router.client.routes().table == routes


def test_statistics_match_what_the_clients_saw(
    two_versions: tuple[RouterInThread, RouteTable],
) -> None:
    router, _ = two_versions
    router.client.reset_stats()
    started = time.time()
    connection = router.connection()
    seen: Counter[tuple[str | None, int]] = Counter()
    paths = ["/"] * 300 + ["/status?code=404"] * 40 + ["/status?code=302"] * 20
    paths += ["/status?code=503"] * 20 + ["/reset"] * 10
    for path in paths:
        response = request(connection, "GET", path)
        if path == "/reset":
            connection.close()
            connection = router.connection()
        seen[(response.version, response.status // 100)] += 1
    stats = router.client.stats()
    assert stats.versions.keys() == {"blue", "green"}
    for name, version in stats.versions.items():
        expected = {
            f"{cls}xx": sum(n for (v, c), n in seen.items() if v == name and c == cls)
            for cls in (1, 2, 3, 4, 5)
        }
        assert dict(version.responses) == expected
        assert version.requests == sum(version.responses.values())
        assert sum(version.histogram.counts) == version.requests
        assert len(version.sample) == min(version.requests, SAMPLE_SIZE)
        assert version.sampled_from == version.requests
        assert started - 1 <= version.window_start <= version.window_end <= time.time() + 1
    total_5xx = sum(v.responses["5xx"] for v in stats.versions.values())
    assert total_5xx == sum(n for (_, c), n in seen.items() if c == 5)
    assert sum(v.upstream_errors["reset"] for v in stats.versions.values()) == 10
    assert sum(v.requests for v in stats.versions.values()) == len(paths)


def test_resetting_statistics_closes_the_window(
    two_versions: tuple[RouterInThread, RouteTable],
) -> None:
    router, _ = two_versions
    connection = router.connection()
    for _ in range(30):
        request(connection, "GET", "/")
    closed = router.client.reset_stats()
    assert sum(v.requests for v in closed.versions.values()) == 30
    fresh = router.client.stats()
    assert all(v.requests == 0 and not v.sample for v in fresh.versions.values())


def test_metrics_are_prometheus_text_on_the_admin_port_only(
    two_versions: tuple[RouterInThread, RouteTable],
) -> None:
    router, _ = two_versions
    connection = router.connection()
    for _ in range(20):
        request(connection, "GET", "/", headers={"X-Shipyard-Version": "green"})
    text = router.client.metrics()
    assert "# TYPE shipyard_router_requests_total counter" in text
    # Pinned by the version header: counted as pinned traffic, not weighted.
    green = 'env="test",version="green"'
    assert f'shipyard_router_requests_total{{{green},code="2xx",traffic="pinned"}} 20' in text
    assert f'shipyard_router_requests_total{{{green},code="2xx",traffic="weighted"}} 0' in text
    assert (
        f'shipyard_router_request_duration_seconds_bucket{{{green},traffic="pinned",le="+Inf"}} 20'
        in text
    )
    assert f'shipyard_router_request_duration_seconds_count{{{green},traffic="pinned"}} 20' in text
    assert 'shipyard_router_version_weight{env="test",version="blue"} 90' in text
    for line in text.splitlines():
        assert line.startswith("#") or len(line.rsplit(" ", 1)) == 2
    # On the public port, /metrics is the service's own path, proxied like any other.
    public = request(connection, "GET", "/metrics")
    assert public.body in (b"blue", b"green")


def test_health_and_routes_describe_the_router(
    two_versions: tuple[RouterInThread, RouteTable],
) -> None:
    router, routes = two_versions
    health = router.client.health()
    assert health.status == "ok"
    assert health.weights == {"blue": 90, "green": 10}
    assert health.public_port == router.port
    status = router.client.routes()
    assert status.table == routes
    assert [i.version for i in status.instances] == ["blue", "green"]


def test_the_client_says_clearly_when_no_router_answers(
    two_versions: tuple[RouterInThread, RouteTable],
) -> None:
    router, _ = two_versions
    port = router.router.admin_port
    router.stop()
    with pytest.raises(RouterUnavailable, match=re.escape(f"127.0.0.1:{port}")):
        RouterClient("127.0.0.1", port, "x" * 20, timeout=PATIENCE).health()

"""Preview traffic pinned with the version header is counted apart from weighted traffic, and
latencies are recorded with sub-millisecond resolution."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from cd.router.router_support import RouterInThread, UpstreamServer, request, table
from shipyard.cd.router.routes import RouteTable
from shipyard.cd.router.stats import RouterStats, VersionStats

PIN = "X-Shipyard-Version"


@pytest.fixture
def preview(
    router: RouterInThread, upstream: Callable[[str], UpstreamServer]
) -> tuple[RouterInThread, RouteTable]:
    """A router with blue taking every weighted request and green at 0 (previewable)."""
    blue, green = upstream("blue"), upstream("green")
    routes = table({"blue": (100, [blue.address]), "green": (0, [green.address])})
    router.client.set_routes(routes)
    router.client.reset_stats()
    return router, routes


def _send(router: RouterInThread, path: str, count: int, pin: str | None = None) -> Counter[str]:
    """``count`` requests to ``path`` (pinned to ``pin`` if given); who answered, by version."""
    served: Counter[str] = Counter()
    connection = router.connection()
    headers = {PIN: pin} if pin else None
    for _ in range(count):
        response = request(connection, "GET", path, headers=headers)
        served[response.version or "?"] += 1
        if path == "/reset":
            connection.close()
            connection = router.connection()
    connection.close()
    return served


def test_pinned_requests_leave_the_weighted_window_alone_and_are_counted_as_pinned(
    preview: tuple[RouterInThread, RouteTable],
) -> None:
    router, _ = preview
    assert _send(router, "/", 30) == {"blue": 30}
    assert _send(router, "/", 20, pin="green") == {"green": 20}
    assert _send(router, "/status?code=503", 5, pin="green") == {"green": 5}
    assert _send(router, "/reset", 3, pin="green") == {"green": 3}
    assert _send(router, "/", 10, pin="blue") == {"blue": 10}

    stats = router.client.stats()
    blue, green = stats.versions["blue"], stats.versions["green"]
    # The judge's view: weighted traffic only.
    assert blue.requests == 30
    assert blue.responses["2xx"] == 30
    assert blue.sampled_from == 30 and len(blue.sample) == 30
    assert sum(blue.histogram.counts) == 30
    assert green.requests == 0
    assert green.sample == () and green.sampled_from == 0
    assert green.upstream_error_count == 0
    assert green.error_rate is None
    # The previews, apart.
    assert blue.pinned is not None and green.pinned is not None
    assert blue.pinned.requests == 10
    assert blue.pinned.responses["2xx"] == 10
    assert green.pinned.requests == 28
    assert green.pinned.responses["2xx"] == 20
    assert green.pinned.responses["5xx"] == 8  # 5 answered 503, 3 cut off (502)
    assert green.pinned.upstream_errors["reset"] == 3
    assert len(green.pinned.sample) == green.pinned.sampled_from == 28
    assert sum(green.pinned.histogram.counts) == 28


def test_a_weighted_split_counts_only_unpinned_requests_per_version(
    router: RouterInThread, upstream: Callable[[str], UpstreamServer]
) -> None:
    blue, green = upstream("blue"), upstream("green")
    router.client.set_routes(table({"blue": (50, [blue.address]), "green": (50, [green.address])}))
    router.client.reset_stats()
    weighted = _send(router, "/", 60)
    _send(router, "/", 15, pin="green")
    stats = router.client.stats()
    for name in ("blue", "green"):
        assert stats.versions[name].requests == weighted[name]
    green_pinned = stats.versions["green"].pinned
    assert green_pinned is not None and green_pinned.requests == 15
    blue_pinned = stats.versions["blue"].pinned
    assert blue_pinned is not None and blue_pinned.requests == 0


def test_resetting_closes_the_pinned_window_too(
    preview: tuple[RouterInThread, RouteTable],
) -> None:
    router, _ = preview
    _send(router, "/", 4)
    _send(router, "/", 6, pin="green")
    closed = router.client.reset_stats()
    closed_pinned = closed.versions["green"].pinned
    assert closed_pinned is not None and closed_pinned.requests == 6
    assert closed.versions["blue"].requests == 4
    fresh = router.client.stats().versions["green"].pinned
    assert fresh is not None and fresh.requests == 0 and fresh.sample == ()


def test_metrics_label_weighted_and_pinned_traffic(
    preview: tuple[RouterInThread, RouteTable],
) -> None:
    router, _ = preview
    _send(router, "/", 7)
    _send(router, "/", 5, pin="green")
    text = router.client.metrics()
    requests = 'shipyard_router_requests_total{env="test",version="%s",code="2xx",traffic="%s"}'
    count = 'shipyard_router_request_duration_seconds_count{env="test",version="%s",traffic="%s"}'
    for line in (
        f"{requests % ('blue', 'weighted')} 7",
        f"{requests % ('blue', 'pinned')} 0",
        f"{requests % ('green', 'weighted')} 0",
        f"{requests % ('green', 'pinned')} 5",
        f"{count % ('green', 'pinned')} 5",
        f"{count % ('blue', 'weighted')} 7",
    ):
        assert line in text.splitlines()
    assert "# TYPE shipyard_router_requests_total counter" in text
    assert text.count("# TYPE shipyard_router_requests_total ") == 1


def test_latencies_of_fast_requests_have_sub_millisecond_resolution(
    preview: tuple[RouterInThread, RouteTable],
) -> None:
    router, _ = preview
    _send(router, "/", 200)
    sample = router.client.stats().versions["blue"].sample
    assert len(sample) == 200
    assert min(sample) > 0.0
    # Whole milliseconds (a loop clock ticking in ms) would give a handful of distinct values.
    assert len(set(sample)) >= 100
    assert any(round(s * 1000, 6) != round(s * 1000) for s in sample)


def test_statistics_from_a_router_that_does_not_count_pinned_apart_still_read() -> None:
    stats = RouterStats.from_json(
        {
            "taken_at": 2.0,
            "versions": {
                "blue": {
                    "version": "blue",
                    "window": {"start": 1.0, "end": 2.0, "seconds": 1.0},
                    "requests": 1,
                    "responses": {"2xx": 1},
                    "upstream_errors": {},
                    "connect_failures": 0,
                    "client_aborts": 0,
                    "latency": {
                        "bounds": [0.1],
                        "counts": [1, 0],
                        "sum": 0.01,
                        "sample": [0.01],
                        "sampled_from": 1,
                    },
                }
            },
        }
    )
    blue = stats.versions["blue"]
    assert blue.pinned is None
    assert VersionStats.from_json(blue.as_json()) == blue

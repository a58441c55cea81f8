"""Where requests go: weights, stickiness, the override header, drains, health, weight changes."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

from cd.router.router_support import (
    RouterInThread,
    UpstreamServer,
    request,
    table,
    wait_for,
)


def test_weights_split_traffic_within_statistical_tolerance(
    router: RouterInThread, upstream: Callable[[str], UpstreamServer]
) -> None:
    blue, green = upstream("blue"), upstream("green")
    router.client.set_routes(table({"blue": (80, [blue.address]), "green": (20, [green.address])}))
    connection = router.connection()
    seen = Counter(request(connection, "GET", "/").version for _ in range(2000))
    # Binomial(2000, 0.2): mean 400, sd 17.9; 5 sd either side.
    assert 310 <= seen["green"] <= 490, seen
    assert seen["blue"] + seen["green"] == 2000
    assert blue.requests + green.requests == 2000


def test_each_request_is_routed_on_its_own_even_on_one_keep_alive_connection(
    router: RouterInThread, upstream: Callable[[str], UpstreamServer]
) -> None:
    blue, green = upstream("blue"), upstream("green")
    router.client.set_routes(table({"blue": (50, [blue.address]), "green": (50, [green.address])}))
    connection = router.connection()
    bodies = {request(connection, "GET", "/").body for _ in range(100)}
    assert bodies == {b"blue", b"green"}


def test_a_weight_change_applies_from_the_next_request_on_an_open_connection(
    router: RouterInThread, upstream: Callable[[str], UpstreamServer]
) -> None:
    blue, green = upstream("blue"), upstream("green")
    router.client.set_routes(table({"blue": (100, [blue.address]), "green": (0, [green.address])}))
    connection = router.connection()
    assert request(connection, "GET", "/").version == "blue"
    router.client.set_weights({"blue": 0, "green": 100})
    assert [request(connection, "GET", "/").version for _ in range(20)] == ["green"] * 20


def test_sticky_header_keeps_each_client_on_one_version(
    router: RouterInThread, upstream: Callable[[str], UpstreamServer]
) -> None:
    blue, green = upstream("blue"), upstream("green")
    router.client.set_routes(
        table(
            {"blue": (50, [blue.address]), "green": (50, [green.address])},
            sticky={"header": "X-User"},
        )
    )
    connection = router.connection()
    per_user = {}
    for user in range(200):
        versions = {
            request(connection, "GET", "/", headers={"X-User": f"user-{user}"}).version
            for _ in range(5)
        }
        assert len(versions) == 1, (user, versions)
        per_user[user] = versions.pop()
    assert 60 <= Counter(per_user.values())["green"] <= 140
    # Without the header, requests are spread per request.
    assert len({request(connection, "GET", "/").version for _ in range(60)}) == 2


def test_sticky_cookie_is_issued_once_and_then_followed(
    router: RouterInThread, upstream: Callable[[str], UpstreamServer]
) -> None:
    blue, green = upstream("blue"), upstream("green")
    router.client.set_routes(
        table(
            {"blue": (50, [blue.address]), "green": (50, [green.address])},
            sticky={"cookie": "shipyard_id"},
        )
    )
    connection = router.connection()
    for _ in range(30):
        first = request(connection, "GET", "/")
        cookie = first.headers["set-cookie"].split(";")[0]
        assert cookie.startswith("shipyard_id=")
        later = [
            request(connection, "GET", "/", headers={"Cookie": f"theme=dark; {cookie}"})
            for _ in range(4)
        ]
        assert {r.version for r in later} == {first.version}
        assert all("set-cookie" not in r.headers for r in later)


def test_the_override_header_picks_a_version_even_at_weight_zero(
    router: RouterInThread, upstream: Callable[[str], UpstreamServer]
) -> None:
    blue, green = upstream("blue"), upstream("green")
    router.client.set_routes(table({"blue": (100, [blue.address]), "green": (0, [green.address])}))
    connection = router.connection()
    pinned = [
        request(connection, "GET", "/headers", headers={"X-Shipyard-Version": "green"})
        for _ in range(20)
    ]
    assert {r.version for r in pinned} == {"green"}
    forwarded = {name.lower() for name, _ in __import__("json").loads(pinned[0].body)["headers"]}
    assert "x-shipyard-version" not in forwarded
    # An unknown version in the header falls back to the weights.
    other = request(connection, "GET", "/", headers={"X-Shipyard-Version": "purple"})
    assert other.status == 200
    assert other.version == "blue"


def test_instances_of_a_version_share_its_traffic_and_a_drained_one_gets_none(
    router: RouterInThread, upstream: Callable[[str], UpstreamServer]
) -> None:
    first, second = upstream("blue"), upstream("blue")
    router.client.set_routes(table({"blue": (100, [first.address, second.address])}))
    connection = router.connection()
    served = Counter(request(connection, "GET", "/").headers["x-instance"] for _ in range(40))
    assert set(served) == {str(first.port), str(second.port)}

    status = router.client.drain(first.address)
    assert [i.drained for i in status.instances] == [True, False]
    before = first.requests
    served = Counter(request(connection, "GET", "/").headers["x-instance"] for _ in range(40))
    assert served == {str(second.port): 40}
    assert first.requests == before

    router.client.undrain(first.address)
    served = Counter(request(connection, "GET", "/").headers["x-instance"] for _ in range(40))
    assert set(served) == {str(first.port), str(second.port)}


def test_an_instance_that_refuses_connections_costs_no_request(
    router: RouterInThread, upstream: Callable[[str], UpstreamServer]
) -> None:
    alive = upstream("blue")
    dead = upstream("blue")
    dead_address = dead.address
    dead.stop()  # nothing listens there any more
    router.client.set_routes(table({"blue": (100, [dead_address, alive.address])}))
    connection = router.connection()
    results = [request(connection, "GET", "/") for _ in range(50)]
    assert {r.status for r in results} == {200}
    stats = router.client.stats().versions["blue"]
    assert stats.connect_failures >= 1
    assert stats.responses["2xx"] == 50
    resting = {i.address: i.available for i in router.client.routes().instances}
    assert resting[dead_address] is False


def test_a_version_without_reachable_instances_falls_back_to_another(
    router: RouterInThread, upstream: Callable[[str], UpstreamServer]
) -> None:
    blue = upstream("blue")
    gone = upstream("green")
    gone_address = gone.address
    gone.stop()
    router.client.set_routes(table({"blue": (50, [blue.address]), "green": (50, [gone_address])}))
    connection = router.connection()
    results = [request(connection, "GET", "/") for _ in range(40)]
    assert {r.status for r in results} == {200}
    assert {r.version for r in results} == {"blue"}
    # Pinned to the unreachable version, a request fails plainly instead.
    pinned = request(connection, "GET", "/", headers={"X-Shipyard-Version": "green"})
    assert pinned.status in (502, 503)


def test_an_instance_failing_its_health_check_gets_no_new_requests(
    router: RouterInThread, upstream: Callable[[str], UpstreamServer]
) -> None:
    healthy, sick = upstream("blue"), upstream("blue")
    sick.health_status = 500
    router.client.set_routes(
        table(
            {"blue": (100, [healthy.address, sick.address])},
            health={"path": "/healthz", "interval": 0.1, "timeout": 0.1},
        )
    )

    def sick_is_out() -> bool:
        return {i.address: i.available for i in router.client.routes().instances} == {
            healthy.address: True,
            sick.address: False,
        }

    assert wait_for(sick_is_out)
    before = sick.requests
    connection = router.connection()
    served = {request(connection, "GET", "/").headers["x-instance"] for _ in range(30)}
    assert served == {str(healthy.port)}
    assert sick.requests == before or all(p == "/healthz" for p in sick.paths[before:])

    sick.health_status = 200
    assert wait_for(lambda: all(i.available for i in router.client.routes().instances))


def test_weight_changes_under_concurrent_load_lose_no_request(
    router: RouterInThread, upstream: Callable[[str], UpstreamServer]
) -> None:
    blue, green = upstream("blue"), upstream("green")
    router.client.set_routes(table({"blue": (100, [blue.address]), "green": (0, [green.address])}))
    clients, per_client = 10, 500
    outcomes: list[Counter[object]] = []
    finished = threading.Event()

    def client() -> None:
        seen: Counter[object] = Counter()
        connection = router.connection()
        for _ in range(per_client):
            try:
                response = request(connection, "GET", "/")
                seen[(response.status, response.version)] += 1
            except Exception as error:  # noqa: BLE001 - every failure is counted, not raised
                seen[type(error).__name__] += 1
                connection.close()
                connection = router.connection()
        connection.close()
        outcomes.append(seen)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()

    def steer() -> None:
        step = 0
        while not finished.is_set():
            green_weight = (step * 10) % 110
            router.client.set_weights({"blue": 100 - green_weight, "green": green_weight})
            step += 1

    steering = threading.Thread(target=steer)
    steering.start()
    for thread in threads:
        thread.join()
    finished.set()
    steering.join()

    total: Counter[object] = Counter()
    for seen in outcomes:
        total.update(seen)
    assert sum(total.values()) == clients * per_client == 5000
    assert set(total) <= {(200, "blue"), (200, "green")}, total
    assert total[(200, "blue")] > 0
    assert total[(200, "green")] > 0
    assert router.client.routes().revision > 2

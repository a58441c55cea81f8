"""The traffic-router seam: weights built in one place, and the built-in router behind it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from cd.router.router_support import RouterInThread, UpstreamServer
from shipyard.cd.instances import InstanceRef
from shipyard.cd.traffic import Backend, InvalidWeights, TrafficError, Weights
from shipyard.cd.traffic.builtin import BuiltinRouter


def refs(version: str, *ports: int) -> list[InstanceRef]:
    return [InstanceRef(f"{version}.{i}", version, "127.0.0.1", p) for i, p in enumerate(ports)]


def test_weights_must_sum_to_100_and_stay_within_0_to_100() -> None:
    with pytest.raises(InvalidWeights, match=r"sum to 100, not 90 \(a=90\)"):
        Weights({"a": Backend(90, ())})
    with pytest.raises(InvalidWeights, match="a: weight 110 is not within 0-100"):
        Weights({"a": Backend(110, ()), "b": Backend(-10, ())})


def test_a_split_gives_the_canary_its_share_and_the_rest_to_stable() -> None:
    stable, canary = ("1.0.0", refs("1.0.0", 1, 2)), ("2.0.0", refs("2.0.0", 3))
    assert Weights.split(stable, canary, 10).percentages() == {"1.0.0": 90, "2.0.0": 10}
    assert Weights.split(stable, canary, 100).percentages() == {"1.0.0": 0, "2.0.0": 100}
    # The same version on both sides (a redeploy) is one backend: the new instances.
    same = Weights.split(("2.0.0", refs("2.0.0", 1)), canary, 10)
    assert same.percentages() == {"2.0.0": 100}
    assert [i.port for i in same["2.0.0"].instances] == [3]
    with pytest.raises(InvalidWeights, match="not within 0-100"):
        Weights.split(stable, canary, 101)
    with pytest.raises(InvalidWeights, match="at least one version"):
        Weights({})


def test_an_idle_version_is_kept_at_weight_0_and_never_twice() -> None:
    weights = Weights.all_to("2.0.0", refs("2.0.0", 3)).with_idle("1.0.0", refs("1.0.0", 1))
    assert weights.percentages() == {"1.0.0": 0, "2.0.0": 100}
    assert weights.with_idle("2.0.0", refs("2.0.0", 9)) is weights
    assert weights.with_idle(None, refs("x", 9)) is weights
    assert weights.with_idle("3.0.0", []) is weights


def test_the_builtin_router_applies_verifies_and_counts_weighted_traffic(
    router: RouterInThread, upstream: Callable[[str], UpstreamServer]
) -> None:
    old, new = upstream("1.0.0"), upstream("2.0.0")
    traffic = BuiltinRouter(router.client, "staging")
    weights = Weights.split(
        ("1.0.0", refs("1.0.0", old.port)), ("2.0.0", refs("2.0.0", new.port)), 25
    )
    address = traffic.set_weights(weights)
    assert address.endswith(f":{router.port}")
    assert traffic.current_weights() == {"1.0.0": 75, "2.0.0": 25}
    traffic.verify(weights)

    seen = Counter(router.get("/").body.decode() for _ in range(400))
    assert 40 <= seen["2.0.0"] <= 160 and seen["1.0.0"] + seen["2.0.0"] == 400
    stats = traffic.statistics(reset=True)  # what the router counted is what clients saw
    assert {v: s.requests for v, s in stats.versions.items()} == dict(seen)
    after = traffic.statistics()  # a new window: nothing since the reset
    assert all(s.requests == 0 for s in after.versions.values())

    # Someone else changes the table: verify says what the router serves instead.
    router.client.set_weights({"1.0.0": 100, "2.0.0": 0})
    with pytest.raises(TrafficError, match=r"serves \{'1.0.0': 100, '2.0.0': 0\}"):
        traffic.verify(weights)


def test_a_router_that_is_gone_is_a_traffic_error(
    router: RouterInThread, upstream: Callable[[str], UpstreamServer]
) -> None:
    traffic = BuiltinRouter(router.client, "staging")
    router.stop()
    with pytest.raises(TrafficError, match="router of staging"):
        traffic.current_weights()
    with pytest.raises(TrafficError, match="router of staging"):
        traffic.set_weights(Weights.all_to("1.0.0", refs("1.0.0", 1)))

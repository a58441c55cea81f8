"""Choosing where a request goes: a version by weight, stickiness or override, then an instance.

A ``RoutePlan`` is a route table compiled for the data path and replaced whole when the table
changes, so every request sees one table from start to end. Instance health (drained, failing
connections, active checks) lives in ``InstanceState`` objects that survive table changes.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterable

from shipyard.cd.router.routes import Instance, RouteTable, Version
from shipyard.cd.router.stats import StatsBook, VersionRecorder

EJECT_FIRST = 1.0
"""Seconds an instance gets no new requests after a failed connection."""

EJECT_MOST = 30.0
"""Longest ejection after repeated failures (each failure doubles it)."""


class InstanceState:
    """What the router knows about one upstream instance now (mutable, kept across tables)."""

    __slots__ = (
        "address",
        "drained",
        "ejected_until",
        "failures",
        "host",
        "in_flight",
        "port",
        "probe_failures",
        "probe_healthy",
        "token",
        "version",
    )

    def __init__(self, instance: Instance, version: str) -> None:
        self.address = instance.address
        self.host = instance.host
        self.port = instance.port
        self.version = version
        self.drained = instance.drained
        self.in_flight = 0
        self.failures = 0
        self.ejected_until = 0.0
        self.probe_healthy = True
        self.probe_failures = 0
        self.token = self.address.encode()

    def available(self, now: float) -> bool:
        """Whether the instance may get a new request at ``now``."""
        return not self.drained and self.probe_healthy and self.ejected_until <= now

    @property
    def healthy(self) -> bool:
        """Neither failing its health check nor recently refusing connections."""
        return self.probe_healthy and self.failures == 0

    def connect_failed(self, now: float) -> None:
        """A connection attempt failed: no new requests for a while, longer each time."""
        self.failures += 1
        self.ejected_until = now + min(EJECT_MOST, EJECT_FIRST * 2 ** (self.failures - 1))

    def connect_succeeded(self) -> None:
        """A connection attempt worked: back in full service."""
        if self.failures:
            self.failures = 0
            self.ejected_until = 0.0


class VersionPlan:
    """One version of a plan: its weight, its instances' states and its statistics (apart for
    weighted requests and for those pinned to it by the version header)."""

    __slots__ = ("encoded", "instances", "name", "pinned_recorder", "recorder", "turn", "weight")

    def __init__(
        self, version: Version, states: tuple[InstanceState, ...], recorder: VersionRecorder
    ) -> None:
        self.name = version.name
        self.encoded = version.name.encode()
        self.weight = version.weight
        self.instances = states
        self.recorder = recorder
        self.pinned_recorder = recorder.pinned or recorder
        self.turn = 0

    def recorder_for(self, pinned: bool) -> VersionRecorder:
        """Where a request routed here is counted: apart if it was pinned by the header."""
        return self.pinned_recorder if pinned else self.recorder

    def pick(
        self, now: float, key: bytes | None, tried: Iterable[InstanceState]
    ) -> InstanceState | None:
        """An available instance not yet ``tried``: hashed from ``key`` if given, else the one
        with the fewest requests in flight, taking turns among equals."""
        instances = self.instances
        if key is not None:
            best: InstanceState | None = None
            best_score = -1
            for state in instances:
                if state.available(now) and state not in tried:
                    score = zlib.crc32(state.token, zlib.crc32(key))
                    if score > best_score:
                        best, best_score = state, score
            return best
        count = len(instances)
        if count == 1:
            only = instances[0]
            return only if only.available(now) and only not in tried else None
        self.turn = start = (self.turn + 1) % count
        chosen: InstanceState | None = None
        for offset in range(count):
            state = instances[(start + offset) % count]
            if (
                state.available(now)
                and state not in tried
                and (chosen is None or state.in_flight < chosen.in_flight)
            ):
                chosen = state
        return chosen


class RoutePlan:
    """A route table compiled for the data path: weighted versions, lookup by name, stickiness."""

    __slots__ = ("by_name", "cookie", "header", "revision", "table", "thresholds", "versions")

    def __init__(self, table: RouteTable, revision: int, versions: tuple[VersionPlan, ...]):
        self.table = table
        self.revision = revision
        self.versions = versions
        self.by_name = {plan.encoded: plan for plan in versions}
        cumulative = 0
        thresholds = []
        for plan in versions:
            if plan.weight > 0:
                cumulative += plan.weight
                thresholds.append((cumulative, plan))
        self.thresholds = tuple(thresholds)
        sticky = table.sticky
        self.header = sticky.name.lower().encode() if sticky and sticky.kind == "header" else None
        self.cookie = sticky.name.encode() if sticky and sticky.kind == "cookie" else None

    def choose(self, key: bytes | None) -> VersionPlan | None:
        """A version by weight: at random, or from the hash of a sticky ``key``."""
        thresholds = self.thresholds
        if not thresholds:
            return None
        if key is not None:
            return self._sticky(zlib.crc32(key) % 10000 / 100)
        point = random.random() * 100  # noqa: S311 - traffic splitting, not secrets
        for threshold, plan in thresholds:
            if point < threshold:
                return plan
        return thresholds[-1][1]

    def _sticky(self, point: float) -> VersionPlan:
        for threshold, plan in self.thresholds:
            if point < threshold:
                return plan
        return self.thresholds[-1][1]

    def fallback(self, excluded: VersionPlan, now: float) -> VersionPlan | None:
        """Another weighted version that has an available instance, chosen by weight."""
        candidates = [
            plan
            for _, plan in self.thresholds
            if plan is not excluded and any(s.available(now) for s in plan.instances)
        ]
        if not candidates:
            return None
        total = sum(plan.weight for plan in candidates)
        point = random.random() * total  # noqa: S311 - traffic splitting, not secrets
        for plan in candidates:
            point -= plan.weight
            if point < 0:
                return plan
        return candidates[-1]


class Balancer:
    """Holds the current plan and the instance states; builds a new plan per table."""

    def __init__(self, stats: StatsBook) -> None:
        self.stats = stats
        self.states: dict[str, InstanceState] = {}
        self.plan = RoutePlan(RouteTable(), 0, ())

    def install(self, table: RouteTable, revision: int) -> RoutePlan:
        """Make ``table`` current from the next request on; returns the new plan."""
        states: dict[str, InstanceState] = {}
        versions = []
        for version in table.versions:
            members = []
            for instance in version.instances:
                state = self.states.get(instance.address)
                if state is None or state.version != version.name:
                    state = InstanceState(instance, version.name)
                state.drained = instance.drained
                states[instance.address] = state
                members.append(state)
            versions.append(VersionPlan(version, tuple(members), self.stats.recorder(version.name)))
        self.states = states
        self.plan = RoutePlan(table, revision, tuple(versions))
        return self.plan

"""A target that runs nothing: it records, in memory, what a strategy asks of it.

For tests of the controller and the strategies, as httpx's ``MockTransport`` is for clients:
it keeps the routes, the instances started and stopped, and can be told to fail health
checks, to fail or crash at a given step, or to run a test's action there. Never deploys.
"""

from __future__ import annotations

import itertools
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shipyard.cd.instances import InstanceRef
from shipyard.cd.router.stats import RouterStats, VersionRecorder
from shipyard.cd.settings import DeploySettings
from shipyard.cd.targets.interface import InstanceUnhealthy, Release, Target
from shipyard.cd.traffic.interface import TrafficRouter, Weights
from shipyard.core.state import StateDir

STEPS = ("prepare", "start", "wait_healthy", "alive", "stop", "route")
"""The target's steps, by the name of the method, where a test can make something happen."""


# Not a ShipyardError on purpose: the controller handles those; a crash must get past it.
class TargetCrash(Exception):
    """Raised where the fake was told to crash: stands for a driver killed during a step."""


@dataclass
class SimulatedTraffic:
    """Traffic a FakeRouter makes up at each read of its statistics (each read is a window).

    ``requests`` are split by the weights routed at that moment; a version answers 500 to its
    ``failing`` share of them (spread evenly) and takes ``latency`` seconds (10 ms if unset).
    ``crash_at_read`` raises TargetCrash at that read (1 is the first), as a driver killed
    while it reads the router would stop there. ``reads`` counts the reads so far.
    """

    requests: int = 1000
    failing: dict[str, float] = field(default_factory=dict)
    latency: dict[str, float] = field(default_factory=dict)
    crash_at_read: int | None = None
    reads: int = 0

    def read(self, weights: Mapping[str, int]) -> RouterStats:
        """One window of made-up traffic under ``weights``, recorded as the router records."""
        self.reads += 1
        if self.reads == self.crash_at_read:
            raise TargetCrash(f"crashed at read {self.reads} of the router's statistics")
        now = time.time()
        versions = {}
        for version, weight in weights.items():
            recorder = VersionRecorder(version, window_start=now - 1.0)
            count = round(self.requests * weight / 100)
            share = self.failing.get(version, 0.0)
            for index in range(count):
                failed = int((index + 1) * share) > int(index * share)
                recorder.record(500 if failed else 200, self.latency.get(version, 0.01))
            versions[version] = recorder.snapshot(now)
        return RouterStats(taken_at=now, versions=versions)


@dataclass(frozen=True)
class Call:
    """One call the target received: the step and the versions it concerned."""

    step: str
    versions: tuple[str, ...]


@dataclass(frozen=True)
class RouteChange:
    """One routing table given to an environment's router: weight and instances per version."""

    router: str
    weights: Mapping[str, int]
    instances: Mapping[str, tuple[str, ...]]


@dataclass
class _Action:
    step: str
    call: int
    after: bool
    run: Callable[[], None]


class Hold:
    """A step that blocks until the test releases it; ``reached`` is set once it blocks."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self._released = threading.Event()

    def release(self) -> None:
        """Let the blocked step go on."""
        self._released.set()

    def wait(self) -> None:
        """Block the calling step until released."""
        self.reached.set()
        self._released.wait()


class FakeTarget(Target):
    """Instances and routes as records in memory; failures and crashes on request."""

    def __init__(self, state: StateDir | None = None) -> None:
        base = state.root if state is not None else Path(tempfile.gettempdir())
        self.root = base / "fake-target"
        self.calls: list[Call] = []
        self.prepared: list[Release] = []
        self.started: list[InstanceRef] = []
        self.stopped: list[InstanceRef] = []
        self.running: dict[str, InstanceRef] = {}
        self.routes: list[RouteChange] = []
        self.problems: list[str] = []
        self.unhealthy: set[str] = set()
        self.statistics: dict[str, RouterStats] = {}
        self.traffic: dict[str, SimulatedTraffic] = {}
        """Made-up traffic by router key: when set, it answers instead of ``statistics``."""
        self.sticky: set[str] = set()
        """Router keys whose routers send a client's requests to one version (not at random)."""
        self._actions: list[_Action] = []
        self._counts: dict[str, int] = dict.fromkeys(STEPS, 0)
        self._ports = itertools.count(20000)
        self._lock = threading.RLock()

    # What a test tells the fake to do.

    def fail_health(self, version: str) -> None:
        """Instances of ``version`` never answer their health check."""
        self.unhealthy.add(version)

    def at(self, step: str, run: Callable[[], None], *, call: int = 1, after: bool = False) -> None:
        """Run ``run`` at the ``call``-th call of ``step``: before it acts, or after it acted."""
        if step not in STEPS:
            raise ValueError(f"{step!r} is not a step of a target; the steps are {STEPS}")
        self._actions.append(_Action(step, call, after, run))

    def crash_at(self, step: str, *, call: int = 1, after: bool = False) -> None:
        """Raise TargetCrash at that call of ``step`` (``after``: once its effect took place)."""

        def crash() -> None:
            raise TargetCrash(f"crashed {'after' if after else 'at'} {step} (call {call})")

        self.at(step, crash, call=call, after=after)

    def fail_at(self, step: str, error: BaseException, *, call: int = 1) -> None:
        """Raise ``error`` at that call of ``step``, before it acts (a target's own failure)."""

        def fail() -> None:
            raise error

        self.at(step, fail, call=call)

    def hold(self, step: str, *, call: int = 1) -> Hold:
        """Block that call of ``step`` until the returned Hold is released."""
        held = Hold()
        self.at(step, held.wait, call=call)
        return held

    # What a test reads.

    def weights(self, router: str) -> dict[str, int]:
        """The weights the router ``router`` (a ``router_key``) has now; empty if never routed."""
        with self._lock:
            for change in reversed(self.routes):
                if change.router == router:
                    return dict(change.weights)
        return {}

    def running_versions(self) -> dict[str, int]:
        """How many instances of each version run now."""
        with self._lock:
            counts: dict[str, int] = {}
            for instance in self.running.values():
                counts[instance.version] = counts.get(instance.version, 0) + 1
            return counts

    def steps(self) -> list[str]:
        """The steps called so far, in order."""
        with self._lock:
            return [call.step for call in self.calls]

    # The Target interface.

    def prepare(self, release: Release, settings: DeploySettings) -> Path:
        """Record the release as prepared; return where it would run from."""
        with self._step("prepare", (release.version,)):
            self.prepared.append(release)
        return self.root / "releases" / f"{release.project}-{release.version}"

    def start(
        self,
        release: Release,
        settings: DeploySettings,
        root: Path,
        tag: str,
        *,
        count: int | None = None,
        first: int = 0,
    ) -> list[InstanceRef]:
        """Start ``count`` instances (default ``settings.instances``) numbered from ``first``;
        one of the same name is replaced."""
        with self._step("start", (release.version,)):
            new = []
            number = settings.instances if count is None else count
            for index in range(first, first + number):
                name = f"{settings.project}.{settings.environment}.{tag}.{index}"
                replaced = self.running.pop(name, None)
                if replaced is not None:
                    self.stopped.append(replaced)
                instance = InstanceRef(name, release.version, "127.0.0.1", next(self._ports))
                self.running[name] = instance
                self.started.append(instance)
                new.append(instance)
        return new

    def wait_healthy(self, instances: Sequence[InstanceRef], settings: DeploySettings) -> None:
        """Return if every instance runs and its version is healthy; else InstanceUnhealthy."""
        with self._step("wait_healthy", _versions(instances)):
            gone = [i.name for i in instances if self.running.get(i.name) != i]
            if gone:
                raise InstanceUnhealthy(f"{', '.join(gone)} not running")
            sick = [i.name for i in instances if i.version in self.unhealthy]
            if sick:
                raise InstanceUnhealthy(
                    f"{', '.join(sick)} did not answer {settings.health_path} with 2xx"
                )

    def alive(self, instances: Sequence[InstanceRef], settings: DeploySettings) -> bool:
        """Whether every instance runs and its version is healthy."""
        with self._step("alive", _versions(instances)):
            return bool(instances) and all(
                self.running.get(i.name) == i and i.version not in self.unhealthy for i in instances
            )

    def stop(self, instances: Sequence[InstanceRef]) -> None:
        """Stop the instances that run; others are ignored, as already gone."""
        with self._step("stop", _versions(instances)):
            for instance in instances:
                if self.running.get(instance.name) == instance:
                    del self.running[instance.name]
                    self.stopped.append(instance)

    def router(self, settings: DeploySettings) -> TrafficRouter:
        """The environment's router: it records each table in ``routes`` (step ``route``)."""
        return FakeRouter(self, settings)

    def _route(self, settings: DeploySettings, weights: Weights) -> str:
        """Record the new table; flag weight on instances that do not run."""
        with self._step("route", tuple(weights)):
            for version, backend in weights.items():
                down = [i.name for i in backend.instances if self.running.get(i.name) != i]
                if backend.weight and down:
                    self.problems.append(f"{version} gets {backend.weight}% on stopped {down}")
                if backend.weight and not backend.instances:
                    self.problems.append(f"{version} gets {backend.weight}% and has no instance")
            self.routes.append(
                RouteChange(
                    router=settings.router_key,
                    weights=weights.percentages(),
                    instances={v: tuple(i.name for i in b.instances) for v, b in weights.items()},
                )
            )
        return f"http://fake.{settings.router_key}"

    def _step(self, step: str, versions: tuple[str, ...]) -> _Step:
        with self._lock:
            self._counts[step] += 1
            self.calls.append(Call(step, versions))
            number = self._counts[step]
            due = [a for a in self._actions if a.step == step and a.call == number]
        return _Step(self._lock, [a for a in due if not a.after], [a for a in due if a.after])


class FakeRouter(TrafficRouter):
    """The router of one environment of a FakeTarget; statistics are what a test put there."""

    def __init__(self, target: FakeTarget, settings: DeploySettings) -> None:
        self.target = target
        self.settings = settings

    def set_weights(self, weights: Weights) -> str:
        """Record the table with the target (where a test may make the step fail or crash)."""
        return self.target._route(self.settings, weights)

    def current_weights(self) -> dict[str, int]:
        """The weights of the last table recorded for this environment."""
        return self.target.weights(self.settings.router_key)

    def assigns_at_random(self) -> bool:
        """False for the environments a test made sticky (``target.sticky``)."""
        return self.settings.router_key not in self.target.sticky

    def statistics(self, *, reset: bool = False) -> RouterStats:
        """What the test set in ``target.statistics`` for this environment (else nothing)."""
        key = self.settings.router_key
        simulated = self.target.traffic.get(key)
        if simulated is not None:
            return simulated.read(self.current_weights())
        with self.target._lock:
            found = self.target.statistics.get(key) or RouterStats(taken_at=0.0, versions={})
            if reset:
                self.target.statistics.pop(key, None)
        return found


class _Step:
    """Runs a step's actions before it (outside the lock) and after it; the body holds the lock."""

    def __init__(self, lock: threading.RLock, before: list[_Action], after: list[_Action]) -> None:
        self._lock = lock
        self._before = before
        self._after = after

    def __enter__(self) -> None:
        for action in self._before:
            action.run()
        self._lock.acquire()

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        self._lock.release()
        if kind is None:
            for action in self._after:
                action.run()


def _versions(instances: Sequence[InstanceRef]) -> tuple[str, ...]:
    return tuple(sorted({i.version for i in instances}))

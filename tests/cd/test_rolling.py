"""The rolling strategy, driven by the controller against the fake target.

Each test reads what a real router would have been given (every routing table, in order) and
what ran: the batches, the weights at every step, a crash at every step then a resume, an
abort mid-roll and a new instance that never gets healthy. Real processes: test_rolling_e2e.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.cd import deployments
from shipyard.cd.controller import Controller, DeploymentFailed
from shipyard.cd.deployments import Deployment
from shipyard.cd.instances import InstanceRef
from shipyard.cd.settings import DeploySettings
from shipyard.cd.strategies.base import StrategyOptionsInvalid
from shipyard.cd.strategies.rolling import Rolling
from shipyard.cd.targets import FakeTarget, InstanceUnhealthy
from shipyard.cd.targets.fake import TargetCrash
from shipyard.cd.traffic import InvalidWeights, Weights
from shipyard.core.state import StateDir
from shipyard.core.store import Store, open_store

PROJECT = "webapp"
ROUTER = "webapp-staging"
ACTOR = "deployer@example.com"
OLD, NEW = "0.1.0", "0.2.0"


def rolling_settings(instances: int = 3, **options: int) -> DeploySettings:
    """A service of ``instances`` instances in staging, rolled with ``options``."""
    return DeploySettings(
        project=PROJECT,
        environment="staging",
        target="fake",
        strategy="rolling",
        setup=None,
        command="python3 -m app --port {port}",
        health_path="/healthz",
        health_timeout_s=5.0,
        health_interval_s=0.1,
        instances=instances,
        strategy_options={"max_surge": 1, "max_unavailable": 0, **options},
    )


class Stage:
    """A real store, a fake target, and deployments asked for as ``shipyard deploy`` does."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.target = FakeTarget()

    def controller(self) -> Controller:
        """A driver working on the fake target (a new one stands for a new process)."""
        return Controller(store=self.store, target_for=lambda _s: self.target, actor=ACTOR)

    def ask(self, version: str, config: DeploySettings) -> Deployment:
        """Record a pending deployment of ``version``, with what it replaces."""
        current = deployments.environment(self.store, PROJECT, "staging")
        previous = None
        if current.active_deployment is not None:
            previous = dict(
                deployments.get(self.store, current.active_deployment).settings["deploy"]
            )
        return deployments.create(
            self.store,
            project=PROJECT,
            environment="staging",
            version=version,
            kind="deploy",
            strategy=config.strategy,
            previous_version=current.active_version,
            settings={
                "deploy": config.as_json(),
                "bundle": f"sha256:{version}",
                "previous": previous,
                "previous_bundle": f"sha256:{current.active_version}"
                if current.active_version
                else None,
            },
            actor=ACTOR,
            on_busy="queue",
        )

    def deploy(self, version: str, config: DeploySettings) -> Deployment:
        """Ask for a deployment and drive it to its end."""
        return self.controller().drive(self.ask(version, config).id)

    def get(self, deployment: Deployment) -> Deployment:
        """The deployment as the store has it now."""
        return deployments.get(self.store, deployment.id)

    def state(self) -> deployments.EnvironmentState:
        """What the store says staging runs."""
        return deployments.environment(self.store, PROJECT, "staging")

    def routes_since(self, count: int) -> list[dict[str, int]]:
        """The weights of every routing table given since ``count`` tables were."""
        return [dict(change.weights) for change in self.target.routes[count:]]


@pytest.fixture
def stage(migrated: Path, tmp_path: Path) -> Iterator[Stage]:
    """A fresh store with 0.1.0 serving staging on three instances (rolled in)."""
    state = StateDir(root=tmp_path / "state", repo_root=None, git_common_dir=None).ensure()
    shutil.copy(migrated, state.database_path)
    store = open_store(state, migrate=False)
    try:
        stage = Stage(store)
        assert stage.deploy(OLD, rolling_settings()).status == "succeeded"
        assert stage.target.weights(ROUTER) == {OLD: 100}
        assert stage.target.running_versions() == {OLD: 3}
        yield stage
    finally:
        store.dispose()


def watch_capacity(target: FakeTarget, seen: list[int], calls: int = 20) -> None:
    """Record how many instances run after each start (the surge a user pays for)."""
    for call in range(1, calls + 1):
        target.at("start", lambda: seen.append(len(target.running)), call=call, after=True)


def serving_counts(target: FakeTarget, since: int) -> list[int]:
    """How many instances get weighted traffic in each table given since ``since``."""
    return [
        sum(len(change.instances[v]) for v, weight in change.weights.items() if weight)
        for change in target.routes[since:]
    ]


def assert_only_new_serves(stage: Stage, count: int = 3) -> None:
    """All traffic and every running instance are the new version's; the store agrees."""
    assert stage.target.weights(ROUTER) == {NEW: 100}
    assert stage.target.running_versions() == {NEW: count}
    state = stage.state()
    assert state.active_version == NEW
    recorded = {i["name"] for i in state.instances["active"]}
    assert recorded == set(stage.target.running)
    assert stage.target.problems == []


def assert_old_serves_again(stage: Stage) -> None:
    """All traffic on the old version's three instances; nothing of the new one runs."""
    assert stage.target.weights(ROUTER) == {OLD: 100}
    assert stage.target.running_versions() == {OLD: 3}
    state = stage.state()
    assert state.active_version == OLD
    recorded = {i["name"] for i in state.instances["active"]}
    assert recorded == set(stage.target.running)
    assert stage.target.problems == []


# The weights builder.


def _refs(version: str, count: int) -> list[InstanceRef]:
    return [InstanceRef(f"{version}.{i}", version, "127.0.0.1", 9000 + i) for i in range(count)]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (3, 1, {OLD: 75, NEW: 25}),
        (2, 1, {OLD: 67, NEW: 33}),
        (1, 2, {OLD: 33, NEW: 67}),
        (3, 3, {OLD: 50, NEW: 50}),
        (0, 3, {NEW: 100}),
        (1, 5, {OLD: 17, NEW: 83}),
    ],
)
def test_weights_follow_the_serving_instances_and_sum_to_100(
    old: int, new: int, expected: dict[str, int]
) -> None:
    weights = Weights.by_instances([(OLD, _refs(OLD, old)), (NEW, _refs(NEW, new))])
    assert weights.percentages() == expected
    assert sum(weights.percentages().values()) == 100


def test_weights_of_one_version_on_both_sides_merge_and_none_at_all_is_refused() -> None:
    merged = Weights.by_instances([(OLD, _refs(OLD, 2)), (OLD, _refs("x", 1))])
    assert merged.percentages() == {OLD: 100}
    assert len(merged[OLD].instances) == 3
    with pytest.raises(InvalidWeights, match="at least one instance"):
        Weights.by_instances([(OLD, []), (NEW, [])])


def test_options_that_could_replace_nothing_are_refused() -> None:
    assert Rolling.options(rolling_settings(max_surge=2)).max_surge == 2
    with pytest.raises(StrategyOptionsInvalid, match="cannot both be 0"):
        Rolling.options(rolling_settings(max_surge=0, max_unavailable=0))


# Batches and weights.


@pytest.mark.parametrize(
    ("options", "weights", "most_running", "least_serving"),
    [
        (
            {"max_surge": 1, "max_unavailable": 0},
            [
                {OLD: 75, NEW: 25},
                {OLD: 67, NEW: 33},
                {OLD: 50, NEW: 50},
                {OLD: 33, NEW: 67},
                {OLD: 25, NEW: 75},
                {NEW: 100},
            ],
            4,
            3,
        ),
        (
            {"max_surge": 2, "max_unavailable": 0},
            [{OLD: 60, NEW: 40}, {OLD: 33, NEW: 67}, {OLD: 25, NEW: 75}, {NEW: 100}],
            5,
            3,
        ),
        (
            {"max_surge": 0, "max_unavailable": 1},
            [
                {OLD: 100},
                {OLD: 67, NEW: 33},
                {OLD: 50, NEW: 50},
                {OLD: 33, NEW: 67},
                {NEW: 100},
                {NEW: 100},
            ],
            3,
            2,
        ),
    ],
    ids=["surge1", "surge2", "unavailable1"],
)
def test_a_roll_goes_batch_by_batch_within_surge_and_unavailable(
    stage: Stage,
    options: dict[str, int],
    weights: list[dict[str, int]],
    most_running: int,
    least_serving: int,
) -> None:
    tables = len(stage.target.routes)
    running: list[int] = []
    watch_capacity(stage.target, running)
    assert stage.deploy(NEW, rolling_settings(**options)).status == "succeeded"
    assert stage.routes_since(tables) == weights
    assert max(running) == most_running
    assert min(serving_counts(stage.target, tables)) == least_serving
    assert_only_new_serves(stage)


def test_each_new_instance_is_healthy_and_routed_before_an_old_one_leaves(stage: Stage) -> None:
    calls = len(stage.target.calls)
    assert stage.deploy(NEW, rolling_settings()).status == "succeeded"
    steps = [(c.step, c.versions) for c in stage.target.calls[calls:] if c.step != "prepare"]
    batch = [
        ("start", (NEW,)),
        ("wait_healthy", (NEW,)),
        ("route", (OLD, NEW)),
        ("route", (OLD, NEW)),
        ("stop", (OLD,)),
    ]
    assert steps == batch * 2 + batch[:3] + [("route", (NEW,)), ("stop", (OLD,))]


def test_a_warm_version_stays_reachable_during_the_roll_and_is_stopped_after(
    stage: Stage,
) -> None:
    blue_green = DeploySettings.from_json(
        {**rolling_settings().as_json(), "strategy": "blue_green", "strategy_options": {}}
    )
    assert stage.deploy("0.1.5", blue_green).status == "succeeded"
    assert stage.state().warm_version == OLD
    tables = len(stage.target.routes)
    stage.deploy(NEW, rolling_settings())
    during = stage.routes_since(tables)[:-1]
    assert all(table[OLD] == 0 for table in during)
    assert stage.target.weights(ROUTER) == {NEW: 100}
    assert stage.target.running_versions() == {NEW: 3}
    assert stage.state().warm_version is None


# Crashes, aborts, failures.

ROLL_STEPS = [
    "prepare",
    *["start", "wait_healthy", "route", "route", "stop"] * 2,
    "start",
    "wait_healthy",
    "route",
    "route",
    "stop",
]
"""A rolling deployment with max_surge 1 over three instances, step by step."""


def _points() -> list[tuple[str, int, bool]]:
    points = []
    for index, step in enumerate(ROLL_STEPS):
        nth = ROLL_STEPS[: index + 1].count(step)
        points += [(step, nth, False), (step, nth, True)]
    return points


CRASH_POINTS = _points()


@pytest.mark.parametrize(
    ("step", "nth", "after"),
    CRASH_POINTS,
    ids=[f"{step}{nth}{'-after' if after else ''}" for step, nth, after in CRASH_POINTS],
)
def test_a_driver_killed_at_any_step_is_resumed_by_the_next_one(
    stage: Stage, step: str, nth: int, after: bool
) -> None:
    tables = len(stage.target.routes)
    stage.target.crash_at(step, call=stage.target.steps().count(step) + nth, after=after)
    deployment = stage.ask(NEW, rolling_settings())
    with pytest.raises(TargetCrash):
        stage.controller().drive(deployment.id)
    assert stage.get(deployment).status == "progressing"
    assert stage.controller().drive(deployment.id).status == "succeeded"
    assert_only_new_serves(stage)
    # The roll never went back: the new version's share only grew, table after table.
    shares = [table.get(NEW, 0) for table in stage.routes_since(tables)]
    assert shares == sorted(shares)
    assert min(serving_counts(stage.target, tables)) >= 3


def _abort_at_route(stage: Stage, deployment: Deployment, nth: int) -> None:
    def abort() -> None:
        deployments.request(stage.store, deployment.id, "abort", actor=ACTOR)

    stage.target.at("route", abort, call=stage.target.steps().count("route") + nth, after=True)


@pytest.mark.parametrize("nth", [1, 2, 3, 4, 5])
def test_an_abort_mid_roll_puts_all_traffic_back_on_three_old_instances(
    stage: Stage, nth: int
) -> None:
    deployment = stage.ask(NEW, rolling_settings())
    tables = len(stage.target.routes)
    _abort_at_route(stage, deployment, nth)
    calls = len(stage.target.calls)
    assert stage.controller().drive(deployment.id).status == "rolled_back"
    # The first table after the abort is the old version's alone; the new ones stop after it.
    assert stage.routes_since(tables)[nth] == {OLD: 100}
    after = [(c.step, c.versions) for c in stage.target.calls[calls:]]
    back = max(index for index, (step, _) in enumerate(after) if step == "route")
    assert not [call for call in after[:back] if call[0] == "stop" and NEW in call[1]]
    assert ("stop", (NEW,)) in after[back:]
    assert_old_serves_again(stage)


def test_a_new_instance_failing_health_stops_the_roll_and_restores_the_old_version(
    stage: Stage,
) -> None:
    second = stage.target.steps().count("wait_healthy") + 2
    stage.target.fail_at("wait_healthy", InstanceUnhealthy("0.2.0 did not answer"), call=second)
    deployment = stage.ask(NEW, rolling_settings())
    with pytest.raises(DeploymentFailed, match="did not answer"):
        stage.controller().drive(deployment.id)
    assert stage.get(deployment).status == "failed"
    assert_old_serves_again(stage)
    # One old instance had been replaced: an old one was started again to make three.
    assert len([n for n in stage.target.running if f".d{deployment.id}r." in n]) == 1


def test_a_version_that_never_gets_healthy_never_receives_traffic(stage: Stage) -> None:
    stage.target.fail_health(NEW)
    tables = len(stage.target.routes)
    with pytest.raises(DeploymentFailed):
        stage.deploy(NEW, rolling_settings())
    assert all(NEW not in table for table in stage.routes_since(tables))
    assert_old_serves_again(stage)

"""The warm rollback (traffic back to the version kept warm) is a deployment like the others:
driven under a lease, resumable after its driver died, undone by an abort."""

from __future__ import annotations

from pathlib import Path

import pytest

from cd.deploysupport import make_store, settings
from shipyard.cd import deployments
from shipyard.cd.controller import Controller, DeploymentFailed
from shipyard.cd.settings import DeploySettings
from shipyard.cd.targets.fake import FakeTarget, TargetCrash
from shipyard.core.store import Store

ACTOR = "ops@example.com"
ROUTER = "webapp-staging"


def _deploy(store: Store, controller: Controller, version: str, config: DeploySettings) -> int:
    created = deployments.create(
        store,
        project=config.project,
        environment=config.environment,
        version=version,
        kind="deploy",
        strategy=config.strategy,
        previous_version=None,
        settings={"deploy": config.as_json(), "bundle": f"sha256:{version}", "previous": None},
        actor=ACTOR,
        on_busy="queue",
    )
    assert controller.drive(created.id).status == "succeeded"
    return created.id


def _switch_left_by_a_killed_rollback(store: Store, config: DeploySettings, version: str) -> int:
    """What ``shipyard rollback`` leaves when it is killed after it began to move the traffic:
    a warm-switch deployment, progressing, that nobody drives."""
    created = deployments.create(
        store,
        project=config.project,
        environment=config.environment,
        version=version,
        kind="rollback",
        strategy="switch",
        previous_version="0.2.0",
        settings={"deploy": config.as_json(), "bundle": "", "previous": None},
        actor=ACTOR,
        on_busy="refuse",
    )
    deployments.transition(store, created.id, "progressing", actor=ACTOR)
    return created.id


def _next_call(target: FakeTarget, step: str) -> int:
    return target.steps().count(step) + 1


@pytest.fixture
def two_versions(tmp_path: Path) -> tuple[Store, FakeTarget, Controller]:
    """0.2.0 serves staging, 0.1.0 is kept warm (blue-green)."""
    state, store = make_store(tmp_path / "state")
    target = FakeTarget(state)
    controller = Controller(store=store, target_for=lambda _s: target, actor=ACTOR)
    _deploy(store, controller, "0.1.0", settings())
    _deploy(store, controller, "0.2.0", settings())
    state = deployments.environment(store, "webapp", "staging")
    assert (state.active_version, state.warm_version) == ("0.2.0", "0.1.0")
    return store, target, controller


def test_the_next_deploy_finishes_an_interrupted_warm_rollback_then_deploys(
    two_versions: tuple[Store, FakeTarget, Controller],
) -> None:
    store, target, controller = two_versions
    switch = _switch_left_by_a_killed_rollback(store, settings(), "0.1.0")
    third = _deploy(store, controller, "0.3.0", settings())
    assert deployments.get(store, switch).status == "succeeded"
    assert deployments.get(store, third).status == "succeeded"
    state = deployments.environment(store, "webapp", "staging")
    # The rollback took effect (0.1.0 served), then 0.3.0 replaced it and 0.1.0 is warm.
    assert (state.active_version, state.warm_version) == ("0.3.0", "0.1.0")
    assert target.weights(ROUTER) == {"0.3.0": 100, "0.1.0": 0}
    assert target.running_versions() == {"0.1.0": 2, "0.3.0": 2}


def test_a_warm_rollback_whose_driver_was_killed_is_resumed(
    two_versions: tuple[Store, FakeTarget, Controller],
) -> None:
    store, target, controller = two_versions
    switch = _switch_left_by_a_killed_rollback(store, settings(), "0.1.0")
    target.crash_at("route", call=_next_call(target, "route"))
    with pytest.raises(TargetCrash):
        controller.drive(switch)
    assert deployments.get(store, switch).status == "progressing"
    assert target.weights(ROUTER) == {"0.2.0": 100, "0.1.0": 0}  # nothing moved yet
    resumed = Controller(store=store, target_for=lambda _s: target, actor=ACTOR).drive(switch)
    assert resumed.status == "succeeded"
    assert target.weights(ROUTER) == {"0.1.0": 100, "0.2.0": 0}
    state = deployments.environment(store, "webapp", "staging")
    assert (state.active_version, state.warm_version) == ("0.1.0", "0.2.0")
    assert state.warm_until is not None
    assert target.running_versions() == {"0.1.0": 2, "0.2.0": 2}


def test_aborting_a_warm_rollback_after_the_switch_puts_the_traffic_back(
    two_versions: tuple[Store, FakeTarget, Controller],
) -> None:
    store, target, controller = two_versions
    switch = _switch_left_by_a_killed_rollback(store, settings(), "0.1.0")
    target.crash_at(
        "route", call=_next_call(target, "route"), after=True
    )  # the router moved the traffic; nothing recorded it
    with pytest.raises(TargetCrash):
        controller.drive(switch)
    assert target.weights(ROUTER) == {"0.1.0": 100, "0.2.0": 0}
    # The driver died; the abort is driven by the next one from the stored progress.
    deployments.request(store, switch, "abort", actor=ACTOR)
    finished = Controller(store=store, target_for=lambda _s: target, actor=ACTOR).drive(switch)
    assert finished.status == "rolled_back"
    assert target.weights(ROUTER)["0.2.0"] == 100
    state = deployments.environment(store, "webapp", "staging")
    assert (state.active_version, state.warm_version) == ("0.2.0", "0.1.0")
    assert target.running_versions() == {"0.1.0": 2, "0.2.0": 2}  # nothing of either stopped


def test_a_warm_rollback_to_a_warm_version_that_died_fails_and_changes_nothing(
    two_versions: tuple[Store, FakeTarget, Controller],
) -> None:
    store, target, controller = two_versions
    target.fail_health("0.1.0")
    switch = _switch_left_by_a_killed_rollback(store, settings(), "0.1.0")
    with pytest.raises(DeploymentFailed, match=r"0\.1\.0"):
        controller.drive(switch)
    assert deployments.get(store, switch).status == "failed"
    assert target.weights(ROUTER) == {"0.2.0": 100, "0.1.0": 0}
    assert deployments.environment(store, "webapp", "staging").active_version == "0.2.0"

"""Deployment settings: the chosen strategy's own options, and records of the old flat shape."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from cd.deploysupport import make_store, settings
from shipyard.cd import deployments
from shipyard.cd.controller import Controller
from shipyard.cd.deployments import DeploymentStatus
from shipyard.cd.settings import DeploySettings
from shipyard.cd.strategies import BlueGreen
from shipyard.cd.targets.fake import FakeTarget
from shipyard.core.store import Store

ACTOR = "ops@example.com"


def old_flat(strategy: str = "blue_green") -> dict[str, Any]:
    """Settings as deployments stored them before each strategy owned its options."""
    data = settings(strategy=strategy).as_json()
    data.pop("strategy_options")
    data.update(rollback_window_s=120.0, preview=True)
    return data


def test_old_flat_settings_are_read_as_the_strategy_s_options() -> None:
    read = DeploySettings.from_json(old_flat())
    assert read.strategy_options == {"rollback_window": "120000ms", "preview": True}
    options = BlueGreen.options(read)
    assert (options.rollback_window, options.preview) == (timedelta(minutes=2), True)
    assert DeploySettings.from_json(old_flat("recreate")).strategy_options == {}
    assert DeploySettings.from_json(read.as_json()) == read


def _create(store: Store, version: str, strategy: str, deploy: dict[str, Any], kind: str) -> int:
    return deployments.create(
        store,
        project="webapp",
        environment="staging",
        version=version,
        kind=kind,
        strategy=strategy,
        previous_version=None,
        settings={"deploy": deploy, "bundle": f"sha256:{version}", "previous": None},
        actor=ACTOR,
        on_busy="queue",
    ).id


def test_deployments_stored_in_the_old_shape_still_run_and_roll_back(tmp_path: Path) -> None:
    state, store = make_store(tmp_path / "state")
    target = FakeTarget(state)
    controller = Controller(store, lambda _s: target, actor=ACTOR)
    try:
        for version in ("0.1.0", "0.2.0"):
            done = controller.drive(_create(store, version, "blue_green", old_flat(), "deploy"))
            assert done.status == DeploymentStatus.SUCCEEDED
        env = deployments.environment(store, "webapp", "staging")
        assert (env.active_version, env.warm_version) == ("0.2.0", "0.1.0")
        assert env.warm_until is not None and env.since is not None
        assert env.warm_until - env.since == timedelta(minutes=2)  # the window stored then
        back = controller.drive(_create(store, "0.1.0", "switch", old_flat(), "rollback"))
        assert back.status == DeploymentStatus.SUCCEEDED
        env = deployments.environment(store, "webapp", "staging")
        assert (env.active_version, env.warm_version) == ("0.1.0", "0.2.0")
        assert target.weights("webapp-staging") == {"0.1.0": 100, "0.2.0": 0}
    finally:
        store.dispose()

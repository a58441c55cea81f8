"""The deployment controller and the strategies, driven against the fake target.

Everything here is logic: the store is real (SQLite), the target records what a real one
would run. Pause, abort, resume, undo, a crash at every step, a lease taken over, deployments
queued or superseded — each in milliseconds. Real processes are in test_deploy.py.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shipyard.cd import deployments
from shipyard.cd.controller import (
    Controller,
    DeploymentFailed,
    DeploymentPaused,
    LeaseHeld,
    driver_alive,
)
from shipyard.cd.deployments import Deployment, EnvironmentBusy
from shipyard.cd.settings import DeploySettings
from shipyard.cd.targets import TARGETS, FakeTarget, TargetError, target_for
from shipyard.cd.targets.fake import TargetCrash
from shipyard.core import audit
from shipyard.core.errors import ConfigError
from shipyard.core.state import StateDir
from shipyard.core.store import Store, open_store

PROJECT = "webapp"
LONG_LEASE = timedelta(minutes=10)
"""A lease that does not expire during a test: only a dead driver's is taken over."""


def make_settings(environment: str, strategy: str, **changes: Any) -> DeploySettings:
    """A two-instance service in ``environment`` with ``strategy``, on the fake target."""
    values: dict[str, Any] = {
        "project": PROJECT,
        "environment": environment,
        "target": "fake",
        "strategy": strategy,
        "strategy_options": {"rollback_window": "10m", "preview": True}
        if strategy == "blue_green"
        else {},
        "setup": None,
        "command": "python3 -m app --port {port}",
        "health_path": "/healthz",
        "health_timeout_s": 5.0,
        "health_interval_s": 0.1,
        "instances": 2,
    }
    values.update(changes)
    return DeploySettings(**values)


class Stage:
    """A real store and a fake target, with the steps a deploy command takes."""

    def __init__(self, state: StateDir, store: Store) -> None:
        self.state = state
        self.store = store
        self.target = FakeTarget(state)
        self.events: list[str] = []

    def controller(self, owner: str = "") -> Controller:
        """A driver that works on this stage's fake target."""
        return Controller(
            store=self.store,
            target_for=lambda _settings: self.target,
            actor="deployer@example.com",
            on_event=self.events.append,
            owner=owner,
        )

    def ask(
        self,
        version: str,
        environment: str = "staging",
        strategy: str = "blue_green",
        **changes: Any,
    ) -> Deployment:
        """Record a pending deployment of ``version`` as ``shipyard deploy`` does."""
        settings = make_settings(environment, strategy, **changes)
        current = deployments.environment(self.store, PROJECT, environment)
        previous = None
        if current.active_deployment is not None:
            previous = dict(
                deployments.get(self.store, current.active_deployment).settings["deploy"]
            )
        return deployments.create(
            self.store,
            project=PROJECT,
            environment=environment,
            version=version,
            kind="deploy",
            strategy=strategy,
            previous_version=current.active_version,
            settings={
                "deploy": settings.as_json(),
                "bundle": f"sha256:{version}",
                "previous": previous,
                "previous_bundle": f"sha256:{current.active_version}"
                if current.active_version
                else None,
            },
            actor="deployer@example.com",
            on_busy=settings.on_busy,
        )

    def deploy(self, version: str, environment: str = "staging", **changes: Any) -> Deployment:
        """Ask for a deployment and drive it here to its end."""
        return self.controller().drive(self.ask(version, environment, **changes).id)

    def get(self, deployment: Deployment) -> Deployment:
        """The deployment as the store has it now."""
        return deployments.get(self.store, deployment.id)

    def weights(self, environment: str = "staging") -> dict[str, int]:
        """The weights the environment's router has now."""
        return self.target.weights(f"{PROJECT}-{environment}")

    def recorded_instances(self, environment: str = "staging") -> set[str]:
        """Every instance the environment's state says runs (active and warm)."""
        state = deployments.environment(self.store, PROJECT, environment)
        return {i["name"] for key in ("active", "warm") for i in state.instances.get(key, [])}

    def actions(self, deployment: Deployment) -> list[str]:
        """The audit log's actions about a deployment, in order."""
        with self.store.read() as conn:
            return [e.action for e in audit.events(conn, subject=deployment.subject)]


@pytest.fixture
def stage(migrated: Path, tmp_path: Path) -> Iterator[Stage]:
    """A fresh store (a copy of the migrated database) and a fresh fake target."""
    state = StateDir(root=tmp_path / "state", repo_root=None, git_common_dir=None).ensure()
    shutil.copy(migrated, state.database_path)
    store = open_store(state, migrate=False)
    try:
        yield Stage(state, store)
    finally:
        store.dispose()


def dead_owner() -> str:
    """The lease owner of a driver process of this host that has exited."""
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return f"{socket.gethostname()}:{process.pid}:deadbeef"


def ahead(stage: Stage, step: str, nth: int = 1) -> int:
    """The number of the ``nth`` call of ``step`` from now on (the fake counts from its start)."""
    return stage.target.steps().count(step) + nth


BLUE_GREEN_STEPS = ["prepare", "start", "wait_healthy", "route", "route", "stop"]
"""A blue-green deployment with preview, from an environment with a version active and one warm."""

RECREATE_STEPS = ["prepare", "stop", "start", "wait_healthy", "route"]
"""A recreate deployment from an environment with a version active."""


def _points(steps: list[str]) -> list[tuple[str, int]]:
    return [(step, steps[: index + 1].count(step)) for index, step in enumerate(steps)]


def with_history(stage: Stage, strategy: str, environment: str = "staging") -> None:
    """Deploy 0.0.9 then 0.1.0, so that one version is active (and, blue-green, one warm)."""
    for version in ("0.0.9", "0.1.0"):
        done = stage.deploy(version, environment, strategy=strategy)
        assert done.status == "succeeded"


def assert_serves(
    stage: Stage, version: str, *, warm: str | None, environment: str = "staging"
) -> None:
    """All traffic on ``version``; only its instances and the warm version's run; no orphans."""
    weights = stage.weights(environment)
    assert weights[version] == 100
    assert set(weights) <= {version, *([warm] if warm else [])}
    expected = {version: 2, **({warm: 2} if warm else {})}
    assert stage.target.running_versions() == expected
    assert set(stage.target.running) == stage.recorded_instances(environment)
    state = deployments.environment(stage.store, PROJECT, environment)
    assert (state.active_version, state.warm_version) == (version, warm)
    assert stage.target.problems == []


def test_the_registry_builds_targets_by_name_and_refuses_an_unknown_one(stage: Stage) -> None:
    assert isinstance(target_for(stage.state, make_settings("staging", "recreate")), FakeTarget)
    assert set(TARGETS) >= {"local", "fake"}
    with pytest.raises(ConfigError) as raised:
        target_for(stage.state, make_settings("staging", "recreate", target="k8s"))
    assert "unknown target 'k8s'" in raised.value.message
    assert "fake, local" in (raised.value.hint or "")


def test_blue_green_previews_switches_keeps_the_old_warm_and_retires_the_one_before(
    stage: Stage,
) -> None:
    with_history(stage, "blue_green")
    assert_serves(stage, "0.1.0", warm="0.0.9")
    before = len(stage.target.calls)
    done = stage.deploy("0.2.0")
    assert done.status == "succeeded"
    assert stage.target.steps()[before:] == BLUE_GREEN_STEPS
    previewed, switched = stage.target.routes[-2:]
    assert previewed.weights == {"0.2.0": 0, "0.1.0": 100}
    assert switched.weights == {"0.2.0": 100, "0.1.0": 0}
    assert_serves(stage, "0.2.0", warm="0.1.0")
    assert {i.version for i in stage.target.stopped} == {"0.0.9"}


def test_recreate_stops_the_old_version_before_it_starts_the_new(stage: Stage) -> None:
    with_history(stage, "recreate")
    before = len(stage.target.calls)
    done = stage.deploy("0.2.0", strategy="recreate")
    assert done.status == "succeeded"
    assert stage.target.steps()[before:] == RECREATE_STEPS
    assert stage.target.calls[before + 1].versions == ("0.1.0",)  # the stop
    assert_serves(stage, "0.2.0", warm=None)


@pytest.mark.parametrize("strategy", ["blue_green", "recreate"])
def test_a_version_that_never_gets_healthy_fails_and_the_old_one_serves(
    stage: Stage, strategy: str
) -> None:
    with_history(stage, strategy)
    stage.target.fail_health("0.2.0")
    with pytest.raises(DeploymentFailed) as raised:
        stage.deploy("0.2.0", strategy=strategy)
    assert "did not answer /healthz" in raised.value.message
    failed = deployments.for_environment(stage.store, PROJECT, "staging")[0]
    assert failed.status == "failed"
    assert failed.lease_owner is None
    assert_serves(stage, "0.1.0", warm="0.0.9" if strategy == "blue_green" else None)
    if strategy == "recreate":  # the old version was stopped first: it is started again
        assert failed.progress["restored"]


def test_an_undo_that_fails_too_says_so(stage: Stage) -> None:
    with_history(stage, "blue_green")
    stage.target.fail_health("0.2.0")
    stage.target.fail_at("stop", TargetError("the supervisor is gone"), call=ahead(stage, "stop"))
    with pytest.raises(DeploymentFailed):
        stage.deploy("0.2.0")
    failed = deployments.for_environment(stage.store, PROJECT, "staging")[0]
    assert failed.status == "failed"
    assert "putting the previous version back also failed: the supervisor is gone" in str(
        failed.message
    )


@pytest.mark.parametrize("after", [False, True], ids=["before-it-acts", "after-it-acted"])
@pytest.mark.parametrize(
    ("strategy", "step", "nth"),
    [("blue_green", step, nth) for step, nth in _points(BLUE_GREEN_STEPS)]
    + [("recreate", step, nth) for step, nth in _points(RECREATE_STEPS)],
)
def test_a_driver_that_dies_at_any_step_is_taken_over_and_the_deployment_finishes(
    stage: Stage, strategy: str, step: str, nth: int, after: bool
) -> None:
    with_history(stage, strategy)
    stage.target.crash_at(step, call=ahead(stage, step, nth), after=after)
    asked = stage.ask("0.2.0", strategy=strategy)
    with pytest.raises(TargetCrash):
        stage.controller().drive(asked.id)
    # The process died holding its lease: as if killed, not as if it had let go.
    owner = dead_owner()
    assert deployments.acquire_lease(stage.store, asked.id, owner, LONG_LEASE)
    assert stage.get(asked).status == "progressing"
    done = stage.controller().drive(asked.id)
    assert done.status == "succeeded"
    assert_serves(stage, "0.2.0", warm="0.1.0" if strategy == "blue_green" else None)
    assert "deployment.lease_broken" in stage.actions(asked)
    assert any(owner in event for event in stage.events)


def test_pause_stops_the_driver_and_resume_carries_on_from_there(stage: Stage) -> None:
    with_history(stage, "blue_green")
    asked = stage.ask("0.2.0")
    stage.target.at(
        "wait_healthy",
        lambda: deployments.request(stage.store, asked.id, "pause", actor="ops@example.com"),
        call=ahead(stage, "wait_healthy"),
    )
    with pytest.raises(DeploymentPaused):
        stage.controller().drive(asked.id)
    paused = stage.get(asked)
    assert (paused.status, paused.lease_owner) == ("paused", None)
    assert stage.weights() == {"0.1.0": 100, "0.0.9": 0}  # nothing switched yet
    started = stage.target.steps().count("start")
    deployments.request(stage.store, asked.id, "resume", actor="ops@example.com")
    assert stage.controller().drive(asked.id).status == "succeeded"
    assert stage.target.steps().count("start") == started  # not started twice
    assert_serves(stage, "0.2.0", warm="0.1.0")
    actions = stage.actions(asked)
    assert actions.index("deployment.paused") < actions.index("deployment.succeeded")


ABORT_POINTS = {
    "blue_green": [("prepare", 1), ("start", 1), ("wait_healthy", 1), ("route", 1)],
    "recreate": [("prepare", 1), ("stop", 1), ("start", 1)],
}
"""Steps with a checkpoint after them, where an abort asked during the step takes effect."""


@pytest.mark.parametrize("pause_first", [False, True], ids=["running", "paused"])
@pytest.mark.parametrize(
    ("strategy", "step", "nth"),
    [(strategy, step, nth) for strategy, points in ABORT_POINTS.items() for step, nth in points],
)
def test_an_abort_at_any_step_puts_the_old_version_back(
    stage: Stage, strategy: str, step: str, nth: int, pause_first: bool
) -> None:
    with_history(stage, strategy)
    asked = stage.ask("0.2.0", strategy=strategy)
    action = "pause" if pause_first else "abort"
    stage.target.at(
        step,
        lambda: deployments.request(stage.store, asked.id, action, actor="ops@example.com"),
        call=ahead(stage, step, nth),
    )
    if pause_first:
        with pytest.raises(DeploymentPaused):
            stage.controller().drive(asked.id)
        deployments.request(stage.store, asked.id, "abort", actor="ops@example.com")
    done = stage.controller().drive(asked.id)
    assert done.status == "rolled_back"
    assert_serves(stage, "0.1.0", warm="0.0.9" if strategy == "blue_green" else None)
    assert "0.2.0" not in stage.target.running_versions()
    assert stage.actions(asked)[-2:] == ["deployment.aborted", "deployment.rolled_back"]


def test_a_live_driver_keeps_its_deployment_and_a_second_one_gives_up(stage: Stage) -> None:
    with_history(stage, "blue_green")
    asked = stage.ask("0.2.0")
    held = stage.target.hold("wait_healthy", call=ahead(stage, "wait_healthy"))
    outcome: list[Deployment] = []
    first = threading.Thread(target=lambda: outcome.append(stage.controller().drive(asked.id)))
    first.start()
    try:
        assert held.reached.wait(timeout=60)
        with pytest.raises(LeaseHeld) as raised:
            stage.controller().drive(asked.id)
        assert "is driven by" in raised.value.message
    finally:
        held.release()
        first.join()
    assert [d.status for d in outcome] == ["succeeded"]
    assert "deployment.lease_broken" not in stage.actions(asked)
    assert stage.target.steps().count("start") == 3  # two before, one here: never twice
    assert_serves(stage, "0.2.0", warm="0.1.0")


@pytest.mark.parametrize(
    ("owner", "expires_in", "taken_over"),
    [
        (f"{socket.gethostname()}:{os.getpid()}:0ther0wn", LONG_LEASE, False),
        ("elsewhere.example.com:4242:abcdef12", LONG_LEASE, False),
        ("elsewhere.example.com:4242:abcdef12", -timedelta(seconds=1), True),
    ],
    ids=["live-here", "live-elsewhere", "expired-elsewhere"],
)
def test_another_host_s_lease_is_taken_over_only_once_it_expired(
    stage: Stage, owner: str, expires_in: timedelta, taken_over: bool
) -> None:
    asked = stage.ask("0.1.0")
    assert deployments.acquire_lease(stage.store, asked.id, owner, expires_in)
    if not taken_over:
        with pytest.raises(LeaseHeld):
            stage.controller().drive(asked.id)
        assert stage.get(asked).lease_owner == owner
        assert stage.target.calls == []
        return
    assert stage.controller().drive(asked.id).status == "succeeded"


def test_deployments_asked_while_one_runs_queue_and_run_in_order(stage: Stage) -> None:
    with_history(stage, "blue_green")
    second, third = stage.ask("0.2.0"), stage.ask("0.3.0")
    done = stage.controller().drive(third.id)  # drives the one ahead of it first
    assert done.status == "succeeded"
    assert stage.get(second).status == "succeeded"
    assert stage.get(second).finished_at <= done.finished_at  # type: ignore[operator]
    assert any(f"taking over deployment {second.id}" in e for e in stage.events)
    assert_serves(stage, "0.3.0", warm="0.2.0")


def test_a_superseding_deployment_aborts_the_one_before_it(stage: Stage) -> None:
    with_history(stage, "blue_green")
    second = stage.ask("0.2.0")
    third = stage.ask("0.3.0", on_busy="supersede")
    assert stage.controller().drive(third.id).status == "succeeded"
    assert stage.get(second).status == "rolled_back"
    assert "deployment.superseded" in stage.actions(second)
    assert "0.2.0" not in {i.version for i in stage.target.started}
    assert_serves(stage, "0.3.0", warm="0.1.0")


def test_a_busy_environment_that_refuses_says_which_deployment_is_in_the_way(
    stage: Stage,
) -> None:
    second = stage.ask("0.2.0")
    with pytest.raises(EnvironmentBusy) as raised:
        stage.ask("0.3.0", on_busy="refuse")
    assert f"busy with deployment {second.id}" in raised.value.message


def test_a_deployment_queued_behind_a_paused_one_waits_for_a_person(stage: Stage) -> None:
    with_history(stage, "blue_green")
    second = stage.ask("0.2.0")
    stage.target.at(
        "prepare",
        lambda: deployments.request(stage.store, second.id, "pause", actor="ops@example.com"),
        call=ahead(stage, "prepare"),
    )
    with pytest.raises(DeploymentPaused):
        stage.controller().drive(second.id)
    third = stage.ask("0.3.0")
    with pytest.raises(DeploymentPaused) as raised:
        stage.controller().drive(third.id)
    assert f"deployment {second.id} of staging is paused" in raised.value.message
    assert stage.get(third).status == "pending"


def test_a_driver_whose_lease_was_taken_over_stops_without_touching_anything(
    stage: Stage,
) -> None:
    with_history(stage, "blue_green")
    asked = stage.ask("0.2.0")
    first = stage.controller(owner=f"{socket.gethostname()}:{os.getpid()}:f1rst000")
    other = "elsewhere.example.com:4242:abcdef12"

    def taken_over() -> None:  # the lease expired meanwhile and another host's driver took it
        deployments.break_lease(stage.store, asked.id, first.owner, actor="test")
        assert deployments.acquire_lease(stage.store, asked.id, other, LONG_LEASE)

    stage.target.at("wait_healthy", taken_over, call=ahead(stage, "wait_healthy"), after=True)
    routed = len(stage.target.routes)
    with pytest.raises(LeaseHeld) as raised:
        first.drive(asked.id)
    assert other in raised.value.message
    assert stage.target.steps()[-1] == "wait_healthy"  # nothing after: no switch, no undo
    assert len(stage.target.routes) == routed
    now = stage.get(asked)
    assert (now.status, now.lease_owner) == ("progressing", other)


def test_a_driver_whose_lease_was_broken_never_takes_it_back(stage: Stage) -> None:
    """Between a break and the next driver's take-over the lease is free: the old one stops."""
    with_history(stage, "blue_green")
    asked = stage.ask("0.2.0")
    first = stage.controller(owner=f"{socket.gethostname()}:{os.getpid()}:f1rst000")

    def broken() -> None:  # judged gone (its lease ran out); the next driver is not there yet
        deployments.break_lease(stage.store, asked.id, first.owner, actor="test")

    stage.target.at("wait_healthy", broken, call=ahead(stage, "wait_healthy"), after=True)
    routed = len(stage.target.routes)
    with pytest.raises(LeaseHeld, match=r"lease of deployment .* was broken"):
        first.drive(asked.id)
    assert stage.target.steps()[-1] == "wait_healthy"  # nothing after: no switch, no undo
    assert len(stage.target.routes) == routed
    now = stage.get(asked)
    assert (now.status, now.lease_owner) == ("progressing", None)  # free for the next driver


@pytest.mark.parametrize(("action", "status"), [("abort", "rolled_back"), ("resume", "succeeded")])
def test_an_action_asked_while_the_driver_pauses_is_not_lost(
    stage: Stage, action: str, status: str
) -> None:
    with_history(stage, "blue_green")
    asked = stage.ask("0.2.0")
    stage.target.at(
        "wait_healthy",
        lambda: deployments.request(stage.store, asked.id, "pause", actor="ops@example.com"),
        call=ahead(stage, "wait_healthy"),
    )
    seen_alive: list[bool] = []

    def on_event(text: str) -> None:
        # Somebody acts just as the driver says it paused: it still holds the lease, so the
        # command only records the request and starts no driver of its own.
        if f"deployment {asked.id} paused" in text and not seen_alive:
            found = deployments.request(stage.store, asked.id, action, actor="ops@example.com")
            seen_alive.append(driver_alive(found))

    driver = stage.controller()
    driver.on_event = on_event
    done = driver.drive(asked.id)
    assert seen_alive == [True]
    assert done.status == status
    assert stage.get(asked).lease_owner is None

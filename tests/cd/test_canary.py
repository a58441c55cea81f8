"""The canary strategy on the fake target: the weights it steps through, a driver killed at any
step resuming there, an abort at any step sending all traffic back to stable first, and the
pauses (timed, and waiting for a person)."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from cd.deploysupport import settings
from cd.test_controller import dead_owner
from shipyard.cd import deployments
from shipyard.cd.controller import Controller, DeploymentFailed, DeploymentPaused, LeaseHeld
from shipyard.cd.deployments import Deployment, DeploymentStatus
from shipyard.cd.targets import TargetError
from shipyard.cd.targets.fake import FakeTarget, TargetCrash
from shipyard.core.errors import WaitingForPerson
from shipyard.core.state import StateDir
from shipyard.core.store import Store, open_store
from shipyard.core.store.tables import deployments as table

ACTOR = "ops@example.com"
ROUTER = "webapp-staging"
STABLE, CANARY = "0.1.0", "0.2.0"
LONG_LEASE = timedelta(minutes=10)
HOUR = "1h"


class Stage:
    """A store and a fake target, with 0.1.0 serving staging (two instances)."""

    def __init__(self, store: Store, target: FakeTarget) -> None:
        self.store = store
        self.target = target

    def controller(self, owner: str = "") -> Controller:
        """A driver on this stage's fake target."""
        return Controller(self.store, lambda _s: self.target, actor=ACTOR, owner=owner)

    def ask(self, version: str, steps: list[dict[str, Any]]) -> Deployment:
        """Record a pending canary deployment of ``version`` with ``steps``."""
        config = settings(strategy="canary", strategy_options={"steps": steps})
        current = deployments.environment(self.store, "webapp", "staging")
        return deployments.create(
            self.store,
            project="webapp",
            environment="staging",
            version=version,
            kind="deploy",
            strategy="canary",
            previous_version=current.active_version,
            settings={"deploy": config.as_json(), "bundle": f"sha256:{version}", "previous": None},
            actor=ACTOR,
            on_busy="queue",
        )

    def get(self, deployment: Deployment) -> Deployment:
        """The deployment as stored now."""
        return deployments.get(self.store, deployment.id)

    def request(self, deployment: Deployment, action: str) -> None:
        """Ask the driver to pause, resume or abort, as the CLI does."""
        deployments.request(self.store, deployment.id, action, actor=ACTOR)

    def weights_since(self, start: int) -> list[dict[str, int]]:
        """The routing tables given since the ``start``-th, as weights."""
        return [dict(change.weights) for change in self.target.routes[start:]]

    def starts(self, version: str) -> int:
        """How many times the instances of ``version`` were started (two each time)."""
        return sum(1 for i in self.target.started if i.version == version) // 2


@pytest.fixture
def stage(migrated: Path, tmp_path: Path) -> Iterator[Stage]:
    """A fresh store and fake target, with 0.1.0 deployed (the canary's stable version)."""
    state = StateDir(root=tmp_path / "state", repo_root=None, git_common_dir=None).ensure()
    shutil.copy(migrated, state.database_path)
    store = open_store(state, migrate=False)
    try:
        made = Stage(store, FakeTarget(state))
        first = made.ask(STABLE, [{"weight": 10}])
        assert made.controller().drive(first.id).status == DeploymentStatus.SUCCEEDED
        assert made.target.weights(ROUTER) == {STABLE: 100}  # nothing to compare: all at once
        yield made
    finally:
        store.dispose()


THREE_STEPS = [{"weight": 10}, {"weight": 50}, {"weight": 100}]
EXPECTED = [
    {STABLE: 90, CANARY: 10},
    {STABLE: 50, CANARY: 50},
    {STABLE: 0, CANARY: 100},
    {CANARY: 100},
]
"""The tables THREE_STEPS gives: stable leaves the router before it is stopped."""


def _distinct(tables: list[dict[str, int]]) -> list[dict[str, int]]:
    """The tables without a repeat of the one just before (a step applied again after a crash)."""
    return [t for i, t in enumerate(tables) if i == 0 or tables[i - 1] != t]


def assert_canary_serves(stage: Stage) -> None:
    """All traffic on the canary, only its instances run, the environment says so."""
    assert stage.target.weights(ROUTER) == {CANARY: 100}
    assert stage.target.running_versions() == {CANARY: 2}
    state = deployments.environment(stage.store, "webapp", "staging")
    assert (state.active_version, state.warm_version) == (CANARY, None)
    assert stage.target.problems == []


def assert_stable_serves(stage: Stage) -> None:
    """All traffic back on stable, the canary stopped, the environment unchanged."""
    assert stage.target.weights(ROUTER) == {STABLE: 100}
    assert stage.target.running_versions() == {STABLE: 2}
    state = deployments.environment(stage.store, "webapp", "staging")
    assert state.active_version == STABLE
    assert stage.target.problems == []


def test_the_weights_are_stepped_as_configured_then_stable_is_stopped(stage: Stage) -> None:
    start, calls = len(stage.target.routes), len(stage.target.calls)
    asked = stage.ask(CANARY, [{"weight": 10, "pause": "50ms"}, {"weight": 50}, {"pause": "1ms"}])
    done = stage.controller().drive(asked.id)
    assert done.status == DeploymentStatus.SUCCEEDED
    assert stage.weights_since(start) == EXPECTED  # the pause alone, and 100 implied
    assert stage.target.steps()[calls:] == [
        "prepare",
        "start",
        "wait_healthy",
        *["route"] * 4,
        "stop",
    ]
    assert stage.target.calls[-1].versions == (STABLE,)
    assert_canary_serves(stage)
    assert done.progress["step"] == 4


def test_every_step_keeps_the_canary_beside_the_stable_instances(stage: Stage) -> None:
    start = len(stage.target.routes)
    stage.controller().drive(stage.ask(CANARY, [{"weight": 25}]).id)
    first = stage.target.routes[start]
    assert first.weights == {STABLE: 75, CANARY: 25}
    assert len(first.instances[STABLE]) == len(first.instances[CANARY]) == 2


# Each point where a driver dies: the steps of a three-step canary, by the call of each.
CRASH_POINTS = [("prepare", 1), ("start", 1), ("wait_healthy", 1)] + [
    ("route", n) for n in range(1, 5)
]


@pytest.mark.parametrize("after", [False, True], ids=["before-it-acts", "after-it-acted"])
@pytest.mark.parametrize(("step", "nth"), CRASH_POINTS)
def test_a_driver_killed_at_any_step_resumes_in_that_step(
    stage: Stage, step: str, nth: int, after: bool
) -> None:
    start = len(stage.target.routes)
    stage.target.crash_at(step, call=stage.target.steps().count(step) + nth, after=after)
    asked = stage.ask(CANARY, THREE_STEPS)
    with pytest.raises(TargetCrash):
        stage.controller().drive(asked.id)
    crashed = len(stage.target.routes)
    # Killed holding its lease (the process is gone): the next driver takes over.
    assert deployments.acquire_lease(stage.store, asked.id, dead_owner(), LONG_LEASE)
    done = stage.controller().drive(asked.id)
    assert done.status == DeploymentStatus.SUCCEEDED
    tables = stage.weights_since(start)
    assert _distinct(tables) == EXPECTED  # never an earlier step again
    later = tables[crashed - start :]
    if step == "route" and later:  # the next driver begins in the step the first one was in
        assert later[0] == EXPECTED[nth - 1]
    # Instances are started once; killed between starting them and recording it, the next
    # driver starts them again under the same names (replacing them, nothing orphaned).
    assert stage.starts(CANARY) == (2 if (step, after) == ("start", True) else 1)
    assert_canary_serves(stage)


@pytest.mark.parametrize("nth", [1, 2, 3])
def test_an_abort_at_any_step_puts_all_traffic_on_stable_first_then_stops_the_canary(
    stage: Stage, nth: int
) -> None:
    # The step aborted in has a long pause: the abort must end it at once, not wait it out.
    steps = [{"weight": w} for w in (10, 50, 100)]
    steps[nth - 1]["pause"] = HOUR
    asked = stage.ask(CANARY, steps)
    routes = stage.target.steps().count("route")
    stage.target.at("route", lambda: stage.request(asked, "abort"), call=routes + nth, after=True)
    done = stage.controller().drive(asked.id)
    assert done.status == DeploymentStatus.ROLLED_BACK
    aborted_at = routes + nth  # the table the abort came after
    after_abort = [c.step for c in stage.target.calls[_index_of_route(stage, aborted_at) + 1 :]]
    assert after_abort == ["route", "stop"]
    assert stage.target.routes[-1].weights == {STABLE: 100}
    assert stage.target.calls[-1].versions == (CANARY,)
    assert_stable_serves(stage)
    assert stage.get(asked).message == "aborted; the previous version serves again"


def _index_of_route(stage: Stage, number: int) -> int:
    """Where the ``number``-th route call is in the target's calls."""
    seen = 0
    for index, call in enumerate(stage.target.calls):
        if call.step == "route":
            seen += 1
            if seen == number:
                return index
    raise AssertionError(f"no route call {number}")


@pytest.mark.parametrize("step", ["prepare", "start", "wait_healthy"])
def test_an_abort_before_any_weight_stops_the_canary_and_leaves_the_routes(
    stage: Stage, step: str
) -> None:
    asked = stage.ask(CANARY, THREE_STEPS)
    routes = len(stage.target.routes)
    stage.target.at(step, lambda: stage.request(asked, "abort"), call=2)
    assert stage.controller().drive(asked.id).status == DeploymentStatus.ROLLED_BACK
    assert len(stage.target.routes) == routes
    assert_stable_serves(stage)


def test_a_failure_at_a_step_sends_everything_back_to_stable(stage: Stage) -> None:
    asked = stage.ask(CANARY, THREE_STEPS)
    routes = stage.target.steps().count("route")
    stage.target.fail_at("route", TargetError("the router went away"), call=routes + 2)
    with pytest.raises(DeploymentFailed) as failed:
        stage.controller().drive(asked.id)
    assert "the router went away" in failed.value.message
    assert stage.target.routes[-1].weights == {STABLE: 100}
    assert_stable_serves(stage)


def test_a_pause_for_a_person_waits_exit_3_and_resume_continues_with_the_next_step(
    stage: Stage,
) -> None:
    start = len(stage.target.routes)
    asked = stage.ask(CANARY, [{"weight": 10}, {"pause": {}}, {"weight": 50}])
    with pytest.raises(DeploymentPaused) as paused:
        stage.controller().drive(asked.id)
    assert isinstance(paused.value, WaitingForPerson)  # the CLI exits 3
    assert "step 2 of 4 (10%)" in paused.value.message
    assert f"shipyard deployments resume {asked.id}" in (paused.value.hint or "")
    waiting = stage.get(asked)
    assert (waiting.status, waiting.lease_owner) == (DeploymentStatus.PAUSED, None)
    assert stage.weights_since(start) == [{STABLE: 90, CANARY: 10}]
    # Another driver of a paused deployment does not go on by itself: a person resumes it.
    stage.request(asked, "resume")
    done = stage.controller().drive(asked.id)
    assert done.status == DeploymentStatus.SUCCEEDED
    assert stage.weights_since(start) == [
        {STABLE: 90, CANARY: 10},
        {STABLE: 50, CANARY: 50},
        {STABLE: 0, CANARY: 100},
        {CANARY: 100},
    ]
    assert stage.starts(CANARY) == 1
    assert_canary_serves(stage)


def test_abort_while_waiting_for_a_person_returns_to_stable(stage: Stage) -> None:
    asked = stage.ask(CANARY, [{"weight": 30, "pause": {}}])
    with pytest.raises(DeploymentPaused):
        stage.controller().drive(asked.id)
    stage.request(asked, "abort")
    assert stage.controller().drive(asked.id).status == DeploymentStatus.ROLLED_BACK
    assert stage.target.routes[-1].weights == {STABLE: 100}
    assert_stable_serves(stage)


def test_a_pause_asked_during_a_timed_pause_stops_the_driver_and_resume_finishes(
    stage: Stage,
) -> None:
    asked = stage.ask(CANARY, [{"weight": 10, "pause": "200ms"}, {"weight": 60, "pause": HOUR}])
    routes = stage.target.steps().count("route")
    stage.target.at("route", lambda: stage.request(asked, "pause"), call=routes + 2, after=True)
    with pytest.raises(DeploymentPaused):
        stage.controller().drive(asked.id)
    assert stage.get(asked).progress["routed_step"] == 1
    assert stage.target.weights(ROUTER) == {STABLE: 40, CANARY: 60}
    stage.request(asked, "abort")
    assert stage.controller().drive(asked.id).status == DeploymentStatus.ROLLED_BACK
    assert_stable_serves(stage)


def test_a_timed_pause_resumes_with_the_time_left_after_a_takeover(stage: Stage) -> None:
    asked = stage.ask(CANARY, [{"weight": 10, "pause": HOUR}, {"weight": 50}])
    first = stage.controller(owner="first")
    outcome: list[BaseException] = []

    def drive_first() -> None:
        try:
            first.drive(asked.id)
        except LeaseHeld as error:
            outcome.append(error)

    thread = threading.Thread(target=drive_first, daemon=True)
    thread.start()
    _wait_until(lambda: stage.get(asked).progress.get("routed_step") == 0)
    # The first driver's lease is taken over (it expired): the first stops in its pause.
    deployments.break_lease(stage.store, asked.id, "first", actor=ACTOR)
    assert deployments.acquire_lease(stage.store, asked.id, dead_owner(), LONG_LEASE)
    thread.join(timeout=60)
    assert not thread.is_alive() and isinstance(outcome[0], LeaseHeld)
    # Nearly all the hour passed while nobody drove it: what is left is a moment.
    progress = dict(stage.get(asked).progress)
    began = datetime.now(UTC) - timedelta(minutes=59, seconds=59, milliseconds=800)
    progress["pause_began"] = began.isoformat()
    deployments.save_progress(stage.store, asked.id, progress)
    routes = len(stage.target.routes)
    done = _drive_in_thread(stage, asked)  # fails if it waits out the hour again
    assert done.status == DeploymentStatus.SUCCEEDED
    assert stage.weights_since(routes)[0] == {STABLE: 50, CANARY: 50}  # step 1 not done again
    assert stage.starts(CANARY) == 1
    assert_canary_serves(stage)


def _drive_in_thread(stage: Stage, asked: Deployment) -> Deployment:
    """Drive in a thread; if it is still waiting after a minute, abort it and fail."""
    result: list[Deployment] = []
    thread = threading.Thread(
        target=lambda: result.append(stage.controller().drive(asked.id)), daemon=True
    )
    thread.start()
    thread.join(timeout=60)
    if thread.is_alive():
        stage.request(asked, "abort")
        thread.join(timeout=10)
        raise AssertionError("the driver waited out the whole pause again")
    return result[0]


def _wait_until(condition: Any) -> None:
    event = threading.Event()
    for _ in range(600):
        if condition():
            return
        event.wait(0.05)
    raise AssertionError("the condition never held")


def test_stored_steps_that_do_not_parse_fail_clearly(stage: Stage) -> None:
    asked = stage.ask(CANARY, [{"weight": 10}])
    bad = {**asked.settings["deploy"], "strategy_options": {"steps": [{"weight": "x"}]}}
    stored = json.dumps({**asked.settings, "deploy": bad})
    with stage.store.write() as conn:  # as a record damaged by hand would be
        conn.execute(update(table).where(table.c.id == asked.id).values(settings=stored))
    with pytest.raises(DeploymentFailed) as failed:
        stage.controller().drive(asked.id)
    assert "the canary options recorded with the deployment are not valid" in failed.value.message
    assert "steps.0.weight" in failed.value.message
    assert_stable_serves(stage)

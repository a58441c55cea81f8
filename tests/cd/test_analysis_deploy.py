"""The analysis of deployments on the fake target, with traffic the fake router makes up: a bad
canary rolled back with an incident, a good one promoted, no traffic pausing for a person, a
driver killed during the analysis resuming it, and the watch window after full rollout."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from cd.deploysupport import settings
from cd.test_controller import dead_owner
from shipyard.cd import deployments
from shipyard.cd.controller import Controller, DeploymentFailed, DeploymentPaused
from shipyard.cd.deployments import Deployment, DeploymentStatus
from shipyard.cd.targets.fake import FakeTarget, SimulatedTraffic, TargetCrash
from shipyard.core import incidents, measurements
from shipyard.core.state import StateDir
from shipyard.core.store import Store, open_store
from shipyard.core.store.tables import deployments as table

ACTOR = "ops@example.com"
ROUTER = "webapp-staging"
STABLE, NEW = "0.1.0", "0.2.0"
CANARY_STEPS = [{"weight": 20, "pause": "2s"}, {"weight": 100}]


def analysis(**changes: Any) -> dict[str, Any]:
    """An analysis looking every second at the error rate (max 5 %)."""
    return {
        "interval": "1s",
        "failure_limit": 0,
        "inconclusive_limit": 0,
        "metrics": [{"name": "error_rate", "provider": "builtin", "max": 0.05}],
        **changes,
    }


class Site:
    """A store and a fake target whose router makes up traffic, with 0.1.0 serving staging."""

    def __init__(self, store: Store, target: FakeTarget) -> None:
        self.store = store
        self.target = target
        self.traffic = SimulatedTraffic()
        target.traffic[ROUTER] = self.traffic
        self.events: list[str] = []

    def controller(self, owner: str = "") -> Controller:
        return Controller(
            self.store,
            lambda _s: self.target,
            actor=ACTOR,
            owner=owner,
            on_event=self.events.append,
        )

    def ask(
        self,
        version: str,
        strategy: str = "canary",
        steps: list[dict[str, Any]] | None = None,
        **changes: Any,
    ) -> Deployment:
        options: dict[str, Any] = {"steps": steps or CANARY_STEPS} if strategy == "canary" else {}
        if strategy == "blue_green":
            options = {"rollback_window": "10m", "preview": False}
        config = settings(strategy=strategy, strategy_options=options, **changes)
        current = deployments.environment(self.store, "webapp", "staging")
        previous = settings(strategy="blue_green")
        return deployments.create(
            self.store,
            project="webapp",
            environment="staging",
            version=version,
            kind="deploy",
            strategy=strategy,
            previous_version=current.active_version,
            settings={
                "deploy": config.as_json(),
                "bundle": f"sha256:{version}",
                "previous": previous.as_json() if current.active_version else None,
                "previous_bundle": f"sha256:{current.active_version}",
            },
            actor=ACTOR,
            on_busy="queue",
        )

    def get(self, deployment: Deployment) -> Deployment:
        return deployments.get(self.store, deployment.id)

    def measured(self, deployment: Deployment) -> list[measurements.RecordedMeasurement]:
        with self.store.read() as conn:
            return measurements.for_deployment(conn, deployment.id)

    def incidents(self, deployment: Deployment) -> list[incidents.Incident]:
        with self.store.read() as conn:
            return incidents.for_deployment(conn, deployment.id)

    def weights(self) -> dict[str, int]:
        return self.target.weights(ROUTER)


@pytest.fixture
def site(migrated: Path, tmp_path: Path) -> Iterator[Site]:
    state = StateDir(root=tmp_path / "state", repo_root=None, git_common_dir=None).ensure()
    shutil.copy(migrated, state.database_path)
    store = open_store(state, migrate=False)
    try:
        made = Site(store, FakeTarget(state))
        first = made.ask(STABLE, "blue_green")
        assert made.controller().drive(first.id).status == DeploymentStatus.SUCCEEDED
        yield made
    finally:
        store.dispose()


def test_a_canary_failing_a_fifth_of_its_requests_is_rolled_back_with_an_incident(
    site: Site,
) -> None:
    site.traffic.failing[NEW] = 0.2
    asked = site.ask(NEW, analysis=analysis())
    with pytest.raises(DeploymentFailed) as failed:
        site.controller().drive(asked.id)
    assert "error_rate 0.2 > max 0.05" in failed.value.message
    assert f"shipyard analysis show {asked.id}" in (failed.value.hint or "")
    stored = site.get(asked)
    assert stored.status == DeploymentStatus.ROLLED_BACK
    assert site.weights() == {STABLE: 100}
    assert [i.version for i in site.target.stopped if i.version == NEW]  # the canary stopped
    [first] = site.measured(asked)  # failure_limit 0: the first failure ends it
    assert (first.phase, first.metric, first.verdict) == ("step 1", "error_rate", "fail")
    assert first.value == pytest.approx(0.2)
    assert first.threshold == "max 0.05"
    [incident] = site.incidents(asked)
    assert incident.caused_by_version == NEW
    assert incident.restored_by_version == STABLE
    assert incident.status == incidents.IncidentStatus.RESTORED
    assert incident.source == incidents.IncidentSource.ANALYSIS
    assert "error_rate 0.2 > max 0.05" in incident.reason
    assert deployments.environment(site.store, "webapp", "staging").active_version == STABLE


def test_a_good_canary_passes_every_look_and_takes_over(site: Site) -> None:
    site.traffic.failing[STABLE] = 0.01
    site.traffic.failing[NEW] = 0.01
    asked = site.ask(NEW, analysis=analysis())
    assert site.controller().drive(asked.id).status == DeploymentStatus.SUCCEEDED
    found = site.measured(asked)
    assert len(found) == 2  # a 2 s pause, looked at every second
    assert {m.verdict for m in found} == {"pass"}
    assert site.weights() == {NEW: 100}
    assert site.incidents(asked) == []


def test_a_canary_without_traffic_is_inconclusive_and_waits_for_a_person(site: Site) -> None:
    site.traffic.requests = 0
    asked = site.ask(NEW, analysis=analysis(inconclusive_limit=1))
    with pytest.raises(DeploymentPaused) as paused:
        site.controller().drive(asked.id)
    assert "inconclusive 2 times in a row" in paused.value.message
    assert "no requests to version 0.2.0" in paused.value.message
    stored = site.get(asked)
    assert stored.status == DeploymentStatus.PAUSED
    assert site.weights() == {STABLE: 80, NEW: 20}  # nothing moved while nobody can tell
    assert [m.verdict for m in site.measured(asked)] == ["inconclusive", "inconclusive"]

    site.traffic.requests = 1000  # traffic comes; a person looked and resumes
    deployments.request(site.store, asked.id, "resume", actor=ACTOR)
    assert site.controller().drive(asked.id).status == DeploymentStatus.SUCCEEDED
    assert site.weights() == {NEW: 100}


def test_a_provider_error_is_inconclusive_and_says_why(site: Site) -> None:
    metric = {
        "name": "p99",
        "provider": "http",
        "url": "http://127.0.0.1:9/x",
        "path": "a",
        "max": 1,
    }
    asked = site.ask(NEW, analysis=analysis(metrics=[metric]))
    with pytest.raises(DeploymentPaused) as paused:
        site.controller().drive(asked.id)
    assert "p99: no data (" in paused.value.message
    assert "127.0.0.1:9" in paused.value.message
    assert site.get(asked).status == DeploymentStatus.PAUSED


def test_a_driver_killed_during_the_analysis_resumes_it_where_it_was(site: Site) -> None:
    site.traffic.failing[NEW] = 0.2
    site.traffic.crash_at_read = 3  # before, then the first look; killed reading the second
    asked = site.ask(NEW, analysis=analysis(failure_limit=1))
    with pytest.raises(TargetCrash):
        site.controller().drive(asked.id)
    assert [m.verdict for m in site.measured(asked)] == ["fail"]
    with site.store.write() as conn:  # the killed driver's lease stays behind
        conn.execute(update(table).where(table.c.id == asked.id).values(lease_owner=dead_owner()))
    with pytest.raises(DeploymentFailed):
        site.controller().drive(asked.id)
    # The failure before the crash counts: the second failure in a row ends the analysis.
    assert [m.verdict for m in site.measured(asked)] == ["fail", "fail"]
    assert site.get(asked).status == DeploymentStatus.ROLLED_BACK
    assert site.weights() == {STABLE: 100}
    assert len(site.incidents(asked)) == 1


@pytest.mark.parametrize("strategy", ["blue_green", "canary", "rolling", "recreate"])
def test_the_watch_window_rolls_back_a_regression_after_full_rollout(
    site: Site, strategy: str
) -> None:
    site.traffic.failing[NEW] = 0.5
    # The canary goes to 100 % at once: only the watch judges it, stable still at hand.
    steps = [{"weight": 100}] if strategy == "canary" else None
    asked = site.ask(NEW, strategy, steps, analysis=analysis(), watch_s=1.0)
    with pytest.raises(DeploymentFailed) as failed:
        site.controller().drive(asked.id)
    assert "error_rate 0.5 > max 0.05" in failed.value.message
    assert site.get(asked).status == DeploymentStatus.ROLLED_BACK
    [only] = site.measured(asked)
    assert only.phase == "watch"
    [incident] = site.incidents(asked)
    assert incident.source == incidents.IncidentSource.WATCH
    assert incident.restored_by_version == STABLE
    assert site.weights() == {STABLE: 100}
    assert deployments.environment(site.store, "webapp", "staging").active_version == STABLE


SEQUENTIAL = {"kind": "sequential", "alpha": 0.01, "min_effect": 0.01}


def test_the_sequential_judge_fails_a_worse_canary_on_evidence_and_says_it_in_numbers(
    site: Site,
) -> None:
    site.traffic.failing[STABLE] = 0.01
    site.traffic.failing[NEW] = 0.05
    steps = [{"weight": 20, "pause": "20s"}, {"weight": 100}]
    asked = site.ask(NEW, steps=steps, analysis=analysis(judge=SEQUENTIAL, failure_limit=5))
    with pytest.raises(DeploymentFailed) as failed:
        site.controller().drive(asked.id)
    assert "likelihood ratio" in failed.value.message
    assert site.weights() == {STABLE: 100}
    found = site.measured(asked)
    assert found[-1].verdict == "fail"
    assert len(found) < 6  # strong evidence ends it at once, failure_limit or not
    evidence = found[-1].evidence
    assert evidence is not None
    # The counts since the step began: every look's 200 canary requests, 10 of them errors.
    assert evidence["window_canary_requests"] == 200
    assert evidence["canary_requests"] == 200 * len(found)
    assert evidence["canary_errors"] == 10 * len(found)


def test_the_sequential_judge_ends_a_step_early_once_the_effect_is_ruled_out(
    site: Site,
) -> None:
    site.traffic.requests = 20000
    site.traffic.failing[STABLE] = 0.01
    site.traffic.failing[NEW] = 0.01
    steps = [{"weight": 50, "pause": "30s"}, {"weight": 100}]
    asked = site.ask(NEW, steps=steps, analysis=analysis(judge=SEQUENTIAL))
    assert site.controller().drive(asked.id).status == DeploymentStatus.SUCCEEDED
    found = site.measured(asked)
    assert found[-1].verdict == "pass"
    assert "min_effect 0.01" in found[-1].reason
    assert len(found) < 30  # a 30 s step, over once the evidence sufficed
    assert {m.verdict for m in found} <= {"pass", "undecided"}
    assert site.weights() == {NEW: 100}


def test_an_undecided_sequential_test_is_inconclusive_when_its_step_ends(site: Site) -> None:
    site.traffic.requests = 200
    site.traffic.failing[STABLE] = 0.01
    site.traffic.failing[NEW] = 0.01
    asked = site.ask(NEW, analysis=analysis(judge=SEQUENTIAL, inconclusive_limit=0))
    with pytest.raises(DeploymentPaused) as paused:
        site.controller().drive(asked.id)
    assert "the step ended before the evidence decided" in paused.value.message
    assert [m.verdict for m in site.measured(asked)] == ["undecided", "inconclusive"]


def test_the_conditional_test_is_refused_while_the_router_routes_sticky(site: Site) -> None:
    site.target.sticky.add(ROUTER)
    judge = {**SEQUENTIAL, "test": "conditional"}
    asked = site.ask(NEW, analysis=analysis(judge=judge))
    with pytest.raises(DeploymentFailed) as failed:
        site.controller().drive(asked.id)
    assert "the conditional test assumes that requests go to a version at random" in (
        failed.value.message
    )
    assert site.weights() == {STABLE: 100}
    assert site.measured(asked) == []

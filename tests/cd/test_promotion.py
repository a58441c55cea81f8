"""Promotion with soak: a release reaches an environment with ``promote_from`` only after it has
run healthy where that names for the soak time.

The rule is read from deployments in a real store, driven on the fake target, and judged at
chosen instants (no clock in the assertions). The command line is tested with the example
service released and deployed as real processes.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cd.deploysupport import copy_example
from cd.test_deploy import shut_down
from shipyard.cd import deployments
from shipyard.cd.controller import Controller, DeploymentFailed
from shipyard.cd.deployments import Deployment
from shipyard.cd.promotion import Soak, promotion_order, soak_of
from shipyard.cd.settings import DeploySettings
from shipyard.cd.targets import FakeTarget
from shipyard.core.config import load_config
from shipyard.core.state import StateDir
from shipyard.core.store import Store, open_store
from support import CliResult, git, run_cli

PROJECT = "webapp"
SOAK = timedelta(minutes=10)


class History:
    """A real store whose deployments are driven on the fake target, as ``deploy`` would."""

    def __init__(self, state: StateDir, store: Store) -> None:
        self.store = store
        self.target = FakeTarget(state)

    def deploy(
        self, version: str, environment: str = "staging", kind: str = "deploy"
    ) -> Deployment:
        settings = DeploySettings(
            project=PROJECT,
            environment=environment,
            target="fake",
            strategy="blue_green",
            setup=None,
            command="python3 -m app --port {port}",
            health_path="/healthz",
            health_timeout_s=5.0,
            health_interval_s=0.1,
            instances=1,
            strategy_options={"rollback_window": "10m", "preview": False},
        )
        current = deployments.environment(self.store, PROJECT, environment)
        previous = None
        if current.active_deployment is not None:
            previous = dict(
                deployments.get(self.store, current.active_deployment).settings["deploy"]
            )
        created = deployments.create(
            self.store,
            project=PROJECT,
            environment=environment,
            version=version,
            kind=kind,
            strategy="blue_green",
            previous_version=current.active_version,
            settings={
                "deploy": settings.as_json(),
                "bundle": f"sha256:{version}",
                "previous": previous,
            },
            actor="deployer@example.com",
            on_busy="queue",
        )
        controller = Controller(
            store=self.store, target_for=lambda _s: self.target, actor="deployer@example.com"
        )
        try:
            return controller.drive(created.id)
        except DeploymentFailed:
            return deployments.get(self.store, created.id)

    def soak(self, version: str, at: Any) -> Soak:
        return soak_of(self.store, PROJECT, "production", "staging", SOAK, version, now=at)


@pytest.fixture
def history(migrated: Path, tmp_path: Path) -> Iterator[History]:
    state = StateDir(root=tmp_path / "state", repo_root=None, git_common_dir=None).ensure()
    shutil.copy(migrated, state.database_path)
    store = open_store(state, migrate=False)
    try:
        yield History(state, store)
    finally:
        store.dispose()


def finished(deployment: Deployment) -> Any:
    assert deployment.status == "succeeded", deployment.message
    assert deployment.finished_at is not None
    return deployment.finished_at


def test_promotion_is_refused_before_the_soak_with_the_time_left_and_allowed_after(
    history: History,
) -> None:
    done = finished(history.deploy("0.2.0"))
    early = history.soak("0.2.0", done + timedelta(minutes=3, seconds=30))
    assert not early.ready
    assert early.since == done
    assert early.left == timedelta(minutes=6, seconds=30)
    assert early.describe() == (
        "0.2.0 may reach production only after it has run healthy in staging for 10m: "
        f"6m30s left (healthy there since {done:%Y-%m-%d %H:%M:%S} UTC)"
    )
    assert early.as_json()["left_s"] == 390.0
    assert history.soak("0.2.0", done + SOAK).ready


def test_a_release_that_does_not_run_in_the_source_environment_does_not_qualify(
    history: History,
) -> None:
    nothing = history.soak("0.2.0", None)
    assert (nothing.ready, nothing.why_not) == (False, "staging runs nothing")
    done = finished(history.deploy("0.1.0"))
    other = history.soak("0.2.0", done + timedelta(days=1))
    assert (other.ready, other.why_not) == (False, "staging runs 0.1.0, not 0.2.0")


def test_a_rollback_in_staging_resets_the_soak(history: History) -> None:
    finished(history.deploy("0.1.0"))
    first = finished(history.deploy("0.2.0"))
    back = finished(history.deploy("0.1.0", kind="rollback"))
    assert history.soak("0.2.0", back + SOAK).why_not == "staging runs 0.1.0, not 0.2.0"
    again = finished(history.deploy("0.2.0"))
    soak = history.soak("0.2.0", first + SOAK)  # long enough after the first time: not now
    assert soak.since == again
    assert not soak.ready
    assert soak.left == again - first
    assert history.soak("0.2.0", again + SOAK).ready


def test_a_failed_deployment_of_the_release_since_restarts_the_soak(history: History) -> None:
    done = finished(history.deploy("0.2.0"))
    history.target.fail_health("0.2.0")
    failed = history.deploy("0.2.0")  # deployed again, it does not get healthy this time
    assert failed.status == "failed"
    assert failed.finished_at is not None
    assert deployments.environment(history.store, PROJECT, "staging").active_version == "0.2.0"
    soak = history.soak("0.2.0", done + SOAK)
    assert soak.since == failed.finished_at
    assert not soak.ready
    assert history.soak("0.2.0", failed.finished_at + SOAK).ready


ORDER_CONFIG = """project: webapp
service:
  command: python3 -m app --port {port}
environments:
  production:
    promote_from: {env: staging, soak: 10m}
  dev:
    auto: true
  staging:
    promote_from: {env: qa, soak: 1m}
  qa:
    auto: true
  sandbox: {}
"""


def test_promotion_goes_through_promote_from_order_else_the_auto_environments(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shipyard.yaml"
    path.write_text(ORDER_CONFIG)
    assert promotion_order(load_config(path)) == ["qa", "staging", "production"]
    unlinked = ORDER_CONFIG.replace(
        "    promote_from: {env: staging, soak: 10m}\n", "    auto: false\n"
    )
    path.write_text(
        unlinked.replace("    promote_from: {env: qa, soak: 1m}\n", "    auto: false\n")
    )
    assert promotion_order(load_config(path)) == ["dev", "qa"]


@pytest.mark.parametrize(
    ("rule", "line", "message"),
    [
        ("{env: prod}", 8, "environments.staging.promote_from.env: 'prod' is not an environment"),
        ("{env: staging}", 8, "'staging' cannot be promoted from itself"),
        (
            "{env: production, soak: 1m}",
            8,
            "promote_from goes round in a circle: production -> staging -> production",
        ),
        ("{env: production, soak: soon}", 8, "'soon' is not a duration"),
    ],
)
def test_a_bad_promote_from_is_a_clear_error_at_its_line(
    repo: Path, rule: str, line: int, message: str
) -> None:
    (repo / "shipyard.yaml").write_text(
        "project: webapp\n"
        "service:\n"
        "  command: python3 -m app --port {port}\n"
        "environments:\n"
        "  production:\n"
        "    promote_from: {env: staging, soak: 10m}\n"
        "  staging:\n"
        f"    promote_from: {rule}\n"
    )
    refused = run_cli("promote", "0.1.0", cwd=repo)
    assert refused.code == 2, refused.output
    assert f"shipyard.yaml:{line}:" in refused.stderr
    assert message in refused.stderr
    assert "Traceback" not in refused.output


# Through the real command line: the example service, released, deployed as real processes.


CONFIG = """project: webapp
release:
  version_files: [VERSION]
service:
  command: python3 -m app --port {{port}}
  instances: 1
  health: {{http: /healthz, timeout: 15s, interval: 100ms}}
  stop: {{signal: TERM, grace: 5s}}
environments:
  staging:
    strategy: {{recreate: {{}}}}
{staging}
  production:
    strategy: {{recreate: {{}}}}
    promote_from: {{env: staging, soak: {soak}}}
{production}"""


class Site:
    """The example service in a repository with a signing key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def configure(self, soak: str, staging: str = "", production: str = "") -> None:
        text = CONFIG.format(soak=soak, staging=staging, production=production)
        (self.path / "shipyard.yaml").write_text(text)

    def cli(self, *args: str) -> CliResult:
        return run_cli(*args, cwd=self.path)

    def json(self, *args: str) -> tuple[int, Any]:
        result = self.cli(*args, "--json")
        return result.code, json.loads(result.stdout)

    def release(self, message: str) -> dict[str, Any]:
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "--allow-empty", "-m", message)
        code, outcome = self.json("release")
        assert code == 0, outcome
        return dict(outcome)

    def active(self, env: str) -> str | None:
        code, status = self.json("status", "--env", env)
        assert code == 0
        return status[0]["active_version"]  # type: ignore[no-any-return]


@pytest.fixture
def site(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("SHIPYARD_USER", "deployer@example.com")
    copy_example(repo)
    site = Site(repo)
    site.configure(soak="1h")
    assert site.cli("keys", "generate").code == 0
    try:
        yield site
    finally:
        shut_down(repo)


@pytest.mark.slow  # real processes end to end: started first (conftest)
def test_production_waits_for_the_soak_unless_forced_and_a_release_holds_back_auto_production(
    site: Site,
) -> None:
    # 'promote' and 'deploy' refuse production before the soak, unless forced with a reason.
    version = site.release("feat: the service")["version"]
    code, refused = site.json("promote", version, "--to", "production")
    assert code == 1
    assert refused["error"]["message"] == (
        f"{version} may reach production only after it has run healthy in staging for 1h: "
        "staging runs nothing"
    )
    code, walked = site.json("promote", version)  # staging first, then production: not yet
    assert code == 1
    assert [(s["environment"], s["outcome"]) for s in walked["steps"]] == [
        ("staging", "succeeded"),
        ("production", "held"),
    ]
    assert walked["complete"] is False
    held = walked["steps"][1]["promotion"]
    assert held["ready"] is False
    assert 3500 < held["left_s"] <= 3600
    assert "left (healthy there since" in held["message"]
    assert site.active("staging") == version

    deploy = site.cli("deploy", version, "--env", "production")  # every path is checked
    assert deploy.code == 1
    assert "only after it has run healthy in staging for 1h:" in deploy.stderr
    assert "--force --reason" in deploy.stderr
    assert "Traceback" not in deploy.output
    assert site.active("production") is None

    no_reason = site.cli("promote", version, "--to", "production", "--force")
    assert no_reason.code == 2
    assert "--force needs --reason" in no_reason.stderr

    code, forced = site.json(
        "promote", version, "--to", "production", "--force", "--reason", "hotfix for INC-42"
    )
    assert code == 0, forced
    step = forced["steps"][0]
    assert (step["outcome"], step["promotion"]["forced"]) == ("succeeded", "hotfix for INC-42")
    assert site.active("production") == version
    code, events = site.json("audit", "list", "--subject", f"deployment:{step['deployment']['id']}")
    overrides = [e for e in events if e["action"] == "deployment.promotion_forced"]
    assert len(overrides) == 1
    assert overrides[0]["details"]["reason"] == "hotfix for INC-42"

    # A release holds back an auto environment until its soak, then 'promote' takes it on.
    first = version
    site.configure(soak="1h", staging="    auto: true", production="    auto: true")
    outcome = site.release("feat: a second feature")
    version = outcome["version"]
    assert [(d["environment"], d["status"]) for d in outcome["deployments"]] == [
        ("staging", "succeeded")
    ]
    assert [(h["environment"], h["ready"]) for h in outcome["held_back"]] == [("production", False)]
    assert site.active("production") == first  # held back: what ran there still runs

    site.configure(soak="0s", staging="    auto: true", production="    auto: true")
    code, promoted = site.json("promote", version)
    assert code == 0, promoted
    assert [(s["environment"], s["outcome"]) for s in promoted["steps"]] == [
        ("staging", "already"),
        ("production", "succeeded"),
    ]
    assert promoted["steps"][1]["promotion"]["ready"] is True
    assert site.active("production") == version


@pytest.mark.slow  # real processes end to end: started first (conftest)
def test_promote_stops_at_the_first_environment_whose_deployment_fails(site: Site) -> None:
    site.configure(
        soak="0s",
        staging="    env: {APP_FAIL_RATE: 'unusable'}",  # the service refuses to start here
    )
    version = site.release("feat: the service")["version"]
    code, walked = site.json("promote", version)
    assert code == 1
    assert [(s["environment"], s["outcome"]) for s in walked["steps"]] == [("staging", "failed")]
    assert walked["steps"][0]["deployment"]["status"] == "failed"
    assert site.active("production") is None
    text_run = site.cli("promote", version)
    assert text_run.code == 1
    assert f"promotion of {version} stopped" in text_run.stderr

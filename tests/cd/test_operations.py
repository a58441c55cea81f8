"""Operating deployed services: the configuration's short forms, stopping environments and
everything of a state directory, warm versions stopped on time."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cd.deploysupport import copy_example
from cd.test_deploy import shut_down
from shipyard.cd import deployments
from shipyard.cd.settings import settings_for
from shipyard.cd.supervisor import Supervisor
from shipyard.core import state as state_dir
from shipyard.core.config.loader import load_config_text
from shipyard.core.errors import ConfigError
from shipyard.core.store import Store, open_store
from support import CliResult, git, run_cli

pytestmark = pytest.mark.slow  # real processes end to end: started first (conftest)

SERVICE = """project: webapp
service:
  command: python3 -m app --port {{port}}
  health: {health}
environments:
  staging: {{}}
"""


def test_a_health_path_written_alone_is_the_http_path() -> None:
    config = load_config_text(SERVICE.format(health="/ready"))
    settings = settings_for(config, "staging")
    assert settings.health_path == "/ready"
    assert settings.health_timeout_s == 30.0  # the other health settings keep their defaults


def test_a_health_string_that_is_no_path_names_the_key() -> None:
    with pytest.raises(ConfigError) as raised:
        load_config_text(SERVICE.format(health="healthz"))
    text = str(raised.value)
    assert "service.health" in text
    assert "must be a URL path" in text


SITE = """project: webapp
release:
  version_files: [VERSION]
service:
  command: python3 -m app --port {port}
  health: {http: /healthz, timeout: 15s, interval: 100ms}
  stop: {signal: TERM, grace: 5s}
environments:
  staging:
    strategy: {blue_green: {rollback_window: 1s, preview: false}}
  production:
    strategy: {recreate: {}}
"""
ACTOR = "operator@example.com"


def cli(repo: Path, *args: str) -> CliResult:
    return run_cli(*args, cwd=repo, env={"SHIPYARD_USER": ACTOR})


def _wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.1)


@pytest.fixture
def site(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The example service released twice (0.1.0, 0.2.0), nothing deployed yet."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    copy_example(repo)
    (repo / "shipyard.yaml").write_text(SITE)
    assert cli(repo, "keys", "generate").code == 0
    for message in ("feat: one", "feat: two"):
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "--allow-empty", "-m", message)
        assert cli(repo, "release").code == 0
    try:
        yield repo
    finally:
        shut_down(repo)


def _programs(repo: Path, *, running: bool = True) -> set[str]:
    """The programs the supervisor runs (``running``), or knows in any state."""
    supervisor = Supervisor.for_state(state_dir.locate(repo))
    if not supervisor.is_running():
        return set()
    return {p.name for p in supervisor.list() if p.running or not running}


def _audit(repo: Path, action: str) -> list[dict[str, Any]]:
    events = json.loads(cli(repo, "audit", "list", "--json").stdout)
    return [e for e in events if e["action"] == action]


def test_warm_versions_are_stopped_when_their_window_ends_and_env_stop_and_down_stop_the_rest(
    site: Path,
) -> None:
    assert cli(site, "deploy", "0.1.0", "--env", "staging").code == 0
    assert cli(site, "deploy", "0.2.0", "--env", "staging").code == 0
    # 0.1.0 is kept warm for 1s. No Shipyard command runs from here on: the reaper stops it.
    _wait_for(lambda: bool(_audit(site, "environment.warm_stopped")))
    # Its instances are stopped, and removed, after the event is recorded.
    _wait_for(lambda: not any(".d1." in p for p in _programs(site, running=False)))
    event = _audit(site, "environment.warm_stopped")[0]
    assert event["subject"] == "environment:webapp/staging"
    assert event["details"]["version"] == "0.1.0"
    _, store = open_state(site)
    state = deployments.environment(store, "webapp", "staging")
    assert (state.active_version, state.warm_version, state.instances["warm"]) == (
        "0.2.0",
        None,
        [],
    )
    assert any(".d2." in p for p in _programs(site))  # what serves is untouched

    # 'env stop' stops one environment, 'down' everything.
    assert cli(site, "deploy", "0.1.0", "--env", "production").code == 0
    stopped = cli(site, "env", "stop", "staging", "--json")
    assert stopped.code == 0, stopped.output
    outcome = json.loads(stopped.stdout)
    assert outcome["stopped_versions"] == ["0.2.0"]
    assert outcome["state"]["active_version"] is None
    left = _programs(site)
    assert not any(".staging." in p or p == "router.webapp-staging" for p in left), left
    assert any(".production." in p for p in left) and "router.webapp-production" in left
    event = _audit(site, "environment.stopped")[0]
    assert (event["actor"], event["subject"]) == (ACTOR, "environment:webapp/staging")
    unknown = cli(site, "env", "stop", "nowhere")
    assert unknown.code == 2 and "staging, production" in unknown.stderr
    assert cli(site, "status", "--env", "staging", "--json").code == 0
    down = cli(site, "down", "--json")
    assert down.code == 0, down.output
    assert "router.webapp-production" in json.loads(down.stdout)["programs_stopped"]
    assert not Supervisor.for_state(state_dir.locate(site)).is_running()
    _, store = open_state(site)
    assert deployments.environment(store, "webapp", "production").active_version is None
    assert [e["subject"] for e in _audit(site, "environment.stopped")] == [
        "environment:webapp/staging",
        "environment:webapp/production",
    ]
    assert len(_audit(site, "state.down")) == 1
    again = cli(site, "deploy", "0.2.0", "--env", "staging", "--json")  # and it starts again
    assert again.code == 0, again.output

    # The reaper stopped with everything: the auto-deploy that leaves a version warm starts it.
    (site / "shipyard.yaml").write_text(
        SITE.replace("  staging:\n", "  staging:\n    auto: true\n")
    )
    git(site, "add", "-A")
    git(site, "commit", "-q", "--allow-empty", "-m", "feat: three")
    assert cli(site, "release").code == 0  # released and deployed by 'release' alone
    # 0.2.0 was left warm by the auto-deploy of 0.3.0; no command runs from here on.
    _wait_for(lambda: len(_audit(site, "environment.warm_stopped")) > 1)
    warm = f".d{json.loads(again.stdout)['id']}."
    _wait_for(lambda: not any(warm in p for p in _programs(site, running=False)))
    assert [e["details"]["version"] for e in _audit(site, "environment.warm_stopped")] == [
        "0.1.0",
        "0.2.0",
    ]
    _, store = open_state(site)
    state = deployments.environment(store, "webapp", "staging")
    assert (state.active_version, state.warm_version) == ("0.3.0", None)


def open_state(repo: Path) -> tuple[state_dir.StateDir, Store]:
    located = state_dir.locate(repo)
    return located, open_store(located)

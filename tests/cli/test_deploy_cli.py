"""The delivery commands as a user types them: ``router`` by environment name, ``service logs``,
``env stop`` and ``down``, with real processes and real routers."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shipyard.cd.router.client import RouterClient
from shipyard.cd.router.routes import RouteTable
from shipyard.cd.router.state import RouterFiles
from support import CliResult, run_cli

ACTOR = "operator@example.com"
CONFIG = """project: shop
service:
  command: python3 -m app --port {port}
environments:
  staging: {}
  production: {}
"""


@pytest.fixture
def shop(repo: Path) -> Path:
    """A repository whose shipyard.yaml has the environments staging and production."""
    (repo / "shipyard.yaml").write_text(CONFIG)
    return repo


def cli(repo: Path, *args: str, timeout: float = 60) -> CliResult:
    return run_cli(*args, cwd=repo, env={"SHIPYARD_USER": ACTOR}, timeout=timeout)


def _wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


@pytest.fixture
def routers(shop: Path) -> Iterator[Callable[[list[str]], subprocess.Popen[bytes]]]:
    """Start router processes; every one is stopped at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str]) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            argv, cwd=shop, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            process.terminate()
            process.wait(30)


def _announced(state: Path, key: str, process: subprocess.Popen[bytes]) -> RouterClient:
    files = RouterFiles.at(state, key)

    def ready() -> bool:
        assert process.poll() is None, "the router exited"
        try:
            return files.read_address().pid == process.pid
        except Exception:  # noqa: BLE001 - not written yet
            return False

    _wait_for(ready)
    return RouterClient.for_environment(state, key)


def _table(weights: dict[str, int]) -> RouteTable:
    return RouteTable.from_json(
        {
            "versions": [
                {"name": name, "weight": weight, "instances": [f"127.0.0.1:{1000 + n}"]}
                for n, (name, weight) in enumerate(weights.items())
            ]
        }
    )


def test_router_commands_name_the_environment_as_shipyard_yaml_does(
    shop: Path, routers: Callable[[list[str]], subprocess.Popen[bytes]]
) -> None:
    state = shop / ".shipyard"
    state.mkdir()
    # The router a deployment starts: named <project>-<env> under the state directory.
    router = [sys.executable, "-m", "shipyard.cd.router", "--env", "shop-staging", "--port", "0"]
    deployed = routers([*router, "--state-dir", str(state)])
    client = _announced(state, "shop-staging", deployed)
    client.set_routes(_table({"1.0.0": 100, "1.1.0": 0}))
    shown = cli(shop, "router", "status", "--env", "staging", "--json")
    assert shown.code == 0, shown.output
    assert [v["name"] for v in json.loads(shown.stdout)["routes"]["versions"]] == [
        "1.0.0",
        "1.1.0",
    ]
    # One run by hand is the same environment's router, under the same name.
    by_hand = routers(
        [sys.executable, "-m", "shipyard", "router", "--env", "production", "--port", "0"]
    )
    _announced(state, "shop-production", by_hand).health()
    never = cli(shop, "router", "status", "--env", "production", "--json")
    assert never.code == 0, never.output


def test_a_router_of_an_unknown_environment_is_refused_naming_the_known_ones(shop: Path) -> None:
    for args in (
        ("router", "--env", "nonexistent", "--port", "0"),
        ("router", "status", "--env", "nonexistent"),
        ("router", "weights", "--env", "nonexistent", "a=100"),
    ):
        refused = cli(shop, *args, timeout=30)
        assert refused.code == 2, refused.output
        assert "nonexistent" in refused.stderr
        assert "staging, production" in refused.stderr
        assert "Traceback" not in refused.output
    assert not (shop / ".shipyard" / "router" / "nonexistent").exists()


def test_a_router_that_does_not_run_says_how_to_start_it(shop: Path) -> None:
    result = cli(shop, "router", "status", "--env", "staging")
    assert result.code == 2
    assert "router of staging is not running" in result.stderr
    assert "shipyard router --env staging --port" in result.stderr


def test_changing_weights_by_hand_is_audited_with_the_old_and_new_weights(
    shop: Path, routers: Callable[[list[str]], subprocess.Popen[bytes]]
) -> None:
    state = shop / ".shipyard"
    process = routers(
        [sys.executable, "-m", "shipyard", "router", "--env", "staging", "--port", "0"]
    )
    client = _announced(state, "shop-staging", process)
    client.set_routes(_table({"1.0.0": 100, "1.1.0": 0}))
    changed = cli(shop, "router", "weights", "--env", "staging", "1.0.0=10", "1.1.0=90")
    assert changed.code == 0, changed.output
    assert client.routes().table.weights == {"1.0.0": 10, "1.1.0": 90}
    events = json.loads(cli(shop, "audit", "list", "--json").stdout)
    weight_events = [e for e in events if e["action"] == "router.weights_changed"]
    assert len(weight_events) == 1
    event = weight_events[0]
    assert event["actor"] == ACTOR
    assert event["subject"] == "environment:shop/staging"
    assert event["details"]["environment"] == "staging"
    assert event["details"]["old"] == {"1.0.0": 100, "1.1.0": 0}
    assert event["details"]["new"] == {"1.0.0": 10, "1.1.0": 90}
    refused = cli(shop, "router", "weights", "--env", "staging", "1.0.0=50")
    assert refused.code == 2  # weights that do not add up change nothing, and are no event
    events = json.loads(cli(shop, "audit", "list", "--json").stdout)
    assert [e["action"] for e in events].count("router.weights_changed") == 1

"""The delivery commands as a user types them: ``router`` by environment name, ``service logs``,
``env stop`` and ``down``, with real processes and real routers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cd.deploysupport import copy_example
from shipyard.cd.router.client import RouterClient
from shipyard.cd.router.routes import RouteTable
from shipyard.cd.router.state import RouterFiles
from shipyard.cd.supervisor import Supervisor
from shipyard.core import state as state_dir
from support import CliResult, git, run_cli

pytestmark = pytest.mark.slow  # real processes end to end: started first (conftest)

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


def cli(repo: Path, *args: str, timeout: float | None = None) -> CliResult:
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
        refused = cli(shop, *args)
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


SITE_CONFIG = """project: webapp
release:
  version_files: [VERSION]
service:
  command: {command}
  instances: 2
  health: {{http: /healthz, timeout: 15s, interval: 100ms}}
  stop: {{signal: TERM, grace: 5s}}
environments:
  staging:
    strategy: {{blue_green: {{rollback_window: 10m, preview: false}}}}
"""
SERVE = "python3 -m app --port {port}"


@pytest.fixture
def site(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The example service released as 0.1.0 in a repository with a signing key."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    copy_example(repo)
    (repo / "shipyard.yaml").write_text(SITE_CONFIG.format(command=SERVE))
    assert cli(repo, "keys", "generate").code == 0
    _release(repo, "feat: the service")
    try:
        yield repo
    finally:
        Supervisor.for_state(state_dir.locate(repo)).shutdown()


def _release(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    released = cli(repo, "release", "--json")
    assert released.code == 0, released.output
    return str(json.loads(released.stdout)["version"])


def test_service_logs_show_stdout_and_stderr_follow_and_failed_instances(site: Path) -> None:
    deployed = cli(site, "deploy", "0.1.0", "--env", "staging", "--json")
    assert deployed.code == 0, deployed.output
    shown = cli(site, "service", "logs", "--env", "staging")
    assert shown.code == 0, shown.output
    # The example service writes to stderr: each line says which instance and which stream.
    listening = [line for line in shown.stdout.splitlines() if "listening on" in line]
    assert len(listening) == 2, shown.stdout
    assert all(" err] webapp: version 0.1.0 listening on" in line for line in listening)
    as_json = json.loads(cli(site, "service", "logs", "--env", "staging", "--json").stdout)
    assert {(i["version"], i["stream"]) for i in as_json if "listening" in i["line"]} == {
        ("0.1.0", "stderr")
    }
    following = ("service", "logs", "--env", "staging", "--follow", "--json")
    followed = site / "followed.jsonl"
    with followed.open("w") as sink:
        follower = subprocess.Popen(
            [sys.executable, "-m", "shipyard", *following], cwd=site, stdout=sink
        )
    try:

        def listening() -> int:
            return followed.read_text().count("listening on")

        _wait_for(lambda: listening() == 2)
        # An instance killed is started again by the supervisor: its new lines are followed.
        supervisor = Supervisor.for_state(state_dir.locate(site))
        instance = as_json[0]["instance"]
        killed = supervisor.status(instance).pid
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        _wait_for(lambda: listening() == 3, timeout=60)
        lines = [json.loads(line) for line in followed.read_text().splitlines()]
        assert [i["instance"] for i in lines if "listening on" in i["line"]].count(instance) == 2
        assert {i["stream"] for i in lines if "listening on" in i["line"]} == {"stderr"}
    finally:
        follower.terminate()
        follower.wait(30)
    # A version that cannot start: its instances are gone, their output is still shown.
    # It prints a secret of the state directory's secrets file: the logs show it masked.
    secrets = state_dir.locate(site).root / "secrets"
    secrets.write_text("LOG_TOKEN=tok-4b1f9e07c2d3a8\n")
    secrets.chmod(0o600)
    crash = (
        'python3 -c \'import sys; print("up on stdout tok-4b1f9e07c2d3a8", flush=True); '
        'sys.exit("down on stderr")\' --port {port}'
    )
    (site / "shipyard.yaml").write_text(SITE_CONFIG.format(command=crash))
    _release(site, "feat: two")
    failed = cli(site, "deploy", "0.2.0", "--env", "staging", "--json")
    assert failed.code == 1, failed.output
    after = cli(site, "service", "logs", "--env", "staging")
    assert after.code == 0, after.output
    assert " out] up on stdout ***" in after.stdout
    assert "tok-4b1f9e07c2d3a8" not in after.stdout
    assert " err] down on stderr" in after.stdout
    assert "listening on" in after.stdout  # and the version that still serves
    failed_id = str(json.loads(failed.stdout)["error"]["message"]).split()[1]
    only = json.loads(
        cli(site, "service", "logs", "--env", "staging", "--deployment", failed_id, "--json").stdout
    )
    assert only and {i["version"] for i in only} == {"0.2.0"}

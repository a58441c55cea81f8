"""``shipyard status`` during a rollout: both versions with their live weights and the step the
deployment is in, plain and ``--json``, with the example service under the real supervisor and
router (a canary held by pauses that wait for a person)."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cd.deploysupport import copy_example
from shipyard.cd.supervisor import Supervisor
from shipyard.core import state as state_dir
from support import CliResult, git, run_cli

pytestmark = pytest.mark.slow  # real processes end to end: started first (conftest)

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
    router: {{port: {port}}}
    strategy:
      canary:
        steps: [{{pause: {{}}}}, {{weight: 50, pause: {{}}}}]
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def site(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The example service released twice (0.1.0, 0.2.0) in a repository with a signing key."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("SHIPYARD_USER", "deployer@example.com")
    copy_example(repo)
    (repo / "shipyard.yaml").write_text(CONFIG.format(port=_free_port()))
    assert cli(repo, "keys", "generate").code == 0
    try:
        for message in ("feat: the service", "feat: more of it"):
            git(repo, "add", "-A")
            git(repo, "commit", "-q", "--allow-empty", "-m", message)
            released = cli(repo, "release", "--json")
            assert released.code == 0, released.output
        yield repo
    finally:
        Supervisor.for_state(state_dir.locate(repo)).shutdown()


def cli(repo: Path, *args: str) -> CliResult:
    return run_cli(*args, cwd=repo)


def _status(repo: Path) -> dict[str, Any]:
    result = cli(repo, "status", "--env", "staging", "--json")
    assert result.code == 0, result.output
    value = json.loads(result.stdout)[0]
    assert isinstance(value, dict)
    return value


def _wait(condition: Callable[[], bool], seen: Callable[[], object], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout}s; last seen: {seen()}")
        time.sleep(0.2)


def _served(url: str, count: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(count):
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - our http URL
            seen[response.read().decode().strip()] += 1
    return seen


def test_status_shows_both_versions_live_weights_and_the_canary_step(site: Path) -> None:
    first = cli(site, "deploy", "0.1.0", "--env", "staging")
    assert first.code == 0, first.output  # nothing to compare with: 100 % at once
    held = cli(site, "deploy", "0.2.0", "--env", "staging")
    assert held.code == 3, held.output  # waiting for a person at the first step

    # Step 1 of 3: the canary is up at weight 0 (previewable only), stable takes everything.
    shown = _status(site)
    assert [(v["version"], v["weight"], v["role"], v["healthy"]) for v in shown["versions"]] == [
        ("0.1.0", 100, "active", True),
        ("0.2.0", 0, "deploying", True),
    ]
    (rollout,) = shown["in_progress"]
    assert rollout["version"] == "0.2.0"
    assert rollout["rollout"]["step"] == {
        "index": 0,
        "number": 1,
        "total": 3,
        "weight": 0,
        "finished": False,
    }
    assert rollout["rollout"]["weight"] == 0
    url = str(shown["router"]["address"])
    assert _served(url, 10) == Counter({"0.1.0": 10})

    plain = cli(site, "status", "--env", "staging")
    assert plain.code == 0, plain.output
    lines = plain.stdout.splitlines()
    assert any(line.split()[:3] == ["0.1.0", "100%", "healthy"] for line in lines), plain.stdout
    assert any(line.split()[:3] == ["0.2.0", "0%", "healthy"] for line in lines), plain.stdout
    assert "step 1 of 3 (0%)" in plain.stdout

    # Resumed: the next step puts half the traffic on the canary and waits again.
    deployment = rollout["id"]
    assert cli(site, "deployments", "resume", str(deployment)).code == 0

    def at_second_step() -> bool:
        found = _status(site)["in_progress"]
        return (
            bool(found)
            and (found[0]["rollout"]["step"] or {}).get("number") == 2
            and found[0]["status"] == "paused"
        )

    _wait(at_second_step, seen=lambda: _status(site)["in_progress"])
    shown = _status(site)
    assert {v["version"]: v["weight"] for v in shown["versions"]} == {"0.1.0": 50, "0.2.0": 50}
    assert shown["in_progress"][0]["rollout"]["step"]["weight"] == 50
    plain = cli(site, "status", "--env", "staging")
    assert "step 2 of 3 (50%)" in plain.stdout
    assert any(line.split()[:2] == ["0.2.0", "50%"] for line in plain.stdout.splitlines())
    assert set(_served(url, 40)) == {"0.1.0", "0.2.0"}

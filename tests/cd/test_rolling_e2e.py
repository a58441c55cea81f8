"""A rolling deployment end to end: the example service on three instances under the
supervisor, behind the real router, replaced one instance at a time under steady load.

The batches, crashes and aborts are tested on the fake target in test_rolling.py; this test
shows what only real processes can: no request fails while instances come and go.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from cd.deploysupport import copy_example
from shipyard.cd.router.client import RouterClient
from shipyard.cd.supervisor import Supervisor
from shipyard.core import state as state_dir
from support import CliResult, git, run_cli

pytestmark = pytest.mark.slow  # real processes end to end: started first (conftest)

CONFIG = """project: webapp
release:
  version_files: [VERSION]
service:
  command: python3 -m app --port {{port}}
  instances: 3
  health: {{http: /healthz, timeout: 30s, interval: 100ms}}
  stop: {{signal: TERM, grace: 10s}}
environments:
  staging:
    strategy: {{rolling: {{max_surge: 1, max_unavailable: 0}}}}
    router: {{port: {port}}}
"""

LOAD_WORKERS = 4
MOST_REQUESTS = 100_000
"""A bound on the load, whatever happens: it stops by itself."""
LONGEST_LOAD_S = 300.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Site:
    """The example service in a repository: release it, deploy it, read its status."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.port = _free_port()
        (path / "shipyard.yaml").write_text(CONFIG.format(port=self.port))

    def cli(self, *args: str, timeout: float | None = None) -> CliResult:
        return run_cli(*args, cwd=self.path, timeout=timeout)

    def release(self, message: str) -> str:
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "--allow-empty", "-m", message)
        result = self.cli("release", "--json")
        assert result.code == 0, result.output
        return str(json.loads(result.stdout)["version"])

    def deploy(self, version: str) -> CliResult:
        return self.cli("deploy", version, "--env", "staging", "--json")

    def state(self) -> dict[str, object]:
        result = self.cli("status", "--env", "staging", "--json")
        assert result.code == 0, result.output
        value = json.loads(result.stdout)[0]
        assert isinstance(value, dict)
        return value


def get(url: str, timeout: float = 10) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback
            return int(response.status), response.read().decode().strip()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode().strip()


@pytest.fixture
def site(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    """The example service, released as 0.1.0 and rolled out to staging on three instances."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("SHIPYARD_USER", "deployer@example.com")
    copy_example(repo)
    site = Site(repo)
    assert site.cli("keys", "generate").code == 0
    assert site.release("feat: the service") == "0.1.0"
    try:
        first = site.deploy("0.1.0")
        assert first.code == 0, first.output
        yield site
    finally:
        Supervisor.for_state(state_dir.locate(repo)).shutdown()


def test_a_rolling_deploy_under_steady_load_fails_no_request(site: Site) -> None:
    url = f"http://127.0.0.1:{site.port}/"
    assert Counter(get(url)[1] for _ in range(30)) == Counter({"0.1.0": 30})
    assert site.release("feat: two") == "0.2.0"
    done = threading.Event()
    results: list[tuple[int, str]] = []
    errors: list[str] = []
    give_up = time.monotonic() + LONGEST_LOAD_S

    def load() -> None:
        while not done.is_set() and len(results) < MOST_REQUESTS and time.monotonic() < give_up:
            try:
                results.append(get(url))
            except OSError as error:  # a refused or reset connection is a failed request
                errors.append(repr(error))

    workers = [threading.Thread(target=load) for _ in range(LOAD_WORKERS)]
    for worker in workers:
        worker.start()
    try:
        deployed = site.deploy("0.2.0")
    finally:
        done.set()
        for worker in workers:
            worker.join(timeout=60)
    assert deployed.code == 0, deployed.output
    assert json.loads(deployed.stdout)["status"] == "succeeded"
    assert errors == []
    failed = Counter(f"{code} {body[:80]}" for code, body in results if code != 200)
    assert failed == Counter()
    seen = Counter(body for _, body in results)
    assert set(seen) == {"0.1.0", "0.2.0"}  # both answered while the roll went on
    # Not even a retry hid a failure: the router never met an instance that was stopping.
    router = RouterClient.for_environment(state_dir.locate(site.path).root, "webapp-staging")
    troubles = {
        name: (stats.connect_failures, stats.upstream_error_count)
        for name, stats in router.stats().versions.items()
    }
    assert troubles == {"0.1.0": (0, 0), "0.2.0": (0, 0)}
    # Afterwards only the new version answers, from three instances of it alone.
    assert Counter(get(url)[1] for _ in range(30)) == Counter({"0.2.0": 30})
    state = site.state()
    assert state["active_version"] == "0.2.0"
    assert state["weights"] == {"0.2.0": 100}
    supervisor = Supervisor.for_state(state_dir.locate(site.path))
    instances = [p for p in supervisor.list() if not p.name.startswith("router.")]
    assert len(instances) == 3
    assert all(p.running for p in instances)

"""Deployments end to end: the example service, released, deployed with real processes under
the supervisor, behind the real router, checked with real HTTP requests.

Only what needs real processes is here; the controller's and the strategies' logic (pause,
abort, a crash at every step, leases, queueing) is tested on the fake target in
test_controller.py."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from cd.deploysupport import copy_example
from shipyard.cd.supervisor import Supervisor, SupervisorError
from shipyard.core import state as state_dir
from support import CliResult, git, run_cli

pytestmark = pytest.mark.slow  # real processes end to end: started first (conftest)

CONFIG = """project: webapp
release:
  version_files: [VERSION]
service:
  command: python3 -m app --port {{port}}
  instances: 2
  health: {{http: /healthz, timeout: 15s, interval: 100ms}}
  stop: {{signal: TERM, grace: 5s}}
environments:
  staging:
    strategy: {{blue_green: {{rollback_window: 10m, preview: true}}}}
    router: {{port: {staging_port}}}
  production:
    strategy: {{recreate: {{}}}}
{extra}"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Site:
    """A released example service in a repository, and helpers to deploy and ask it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.staging_port = _free_port()
        self.extra = ""

    def write_config(self, extra: str = "") -> None:
        self.extra = extra
        text = CONFIG.format(staging_port=self.staging_port, extra=extra)
        (self.path / "shipyard.yaml").write_text(text)

    def cli(
        self, *args: str, env: dict[str, str] | None = None, timeout: float | None = None
    ) -> CliResult:
        return run_cli(*args, cwd=self.path, env=env, timeout=timeout)

    def release(self, message: str) -> str:
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "--allow-empty", "-m", message)
        result = self.cli("release", "--json")
        assert result.code == 0, result.output
        return str(json.loads(result.stdout)["version"])

    def deploy(self, version: str, env: str = "staging", *extra: str) -> CliResult:
        return self.cli("deploy", version, "--env", env, "--json", *extra)

    def url(self, env: str = "staging") -> str:
        status = json.loads(self.cli("status", "--env", env, "--json").stdout)
        return str(status[0]["router"]["address"])

    def state(self, env: str = "staging") -> dict[str, object]:
        result = self.cli("status", "--env", env, "--json")
        assert result.code == 0, result.output
        value = json.loads(result.stdout)[0]
        assert isinstance(value, dict)
        return value


def get(url: str, headers: dict[str, str] | None = None, timeout: float = 5) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - our http URL
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status), response.read().decode().strip()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode().strip()


def versions_seen(url: str, count: int = 40) -> Counter[str]:
    return Counter(get(url)[1] for _ in range(count))


def shut_down(repo: Path) -> None:
    """Stop the supervisord of ``repo``'s state directory and everything it runs (a fixture's
    end).

    ``Supervisor.shutdown`` waits until supervisord has seen its programs stop, which it looks
    at once a turn of its loop, and an idle loop turns once a second: a question asked meanwhile
    turns it at once, so a thread asks one every 50 ms until the shutdown is over."""
    state = state_dir.locate(repo)
    over = threading.Event()

    def nudge() -> None:
        asker = Supervisor.for_state(state)
        while not over.wait(0.05):
            with contextlib.suppress(SupervisorError):
                asker.is_running()

    nudger = threading.Thread(target=nudge, name="nudge supervisord", daemon=True)
    nudger.start()
    try:
        Supervisor.for_state(state).shutdown()
    finally:
        over.set()
        nudger.join()


@pytest.fixture
def site(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    """The example service in a repository with a signing key and two releases."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("SHIPYARD_USER", "deployer@example.com")
    copy_example(repo)
    site = Site(repo)
    site.write_config()
    assert site.cli("keys", "generate").code == 0
    site.release("feat: the service")
    try:
        yield site
    finally:
        shut_down(repo)


def test_a_blue_green_switch_under_load_loses_no_request_and_rollback_returns_it(
    site: Site,
) -> None:
    first = site.deploy("0.1.0")
    assert first.code == 0, first.output
    assert json.loads(first.stdout)["status"] == "succeeded"
    url = site.url()
    assert url.endswith(f":{site.staging_port}")
    assert versions_seen(url) == Counter({"0.1.0": 40})
    second_version = site.release("feat: a second feature")
    assert second_version == "0.2.0"
    stop = threading.Event()
    results: list[tuple[int, str]] = []
    errors: list[str] = []

    def load() -> None:
        while not stop.is_set() or len(results) < 5000:
            try:
                results.append(get(url, timeout=10))
            except OSError as error:  # a refused or reset connection is a lost request
                errors.append(repr(error))

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    second = site.deploy("0.2.0")
    stop.set()
    for worker in workers:
        worker.join(timeout=300)
    assert second.code == 0, second.output
    assert errors == []
    assert len(results) >= 5000
    assert all(code == 200 for code, _ in results)
    seen = Counter(body for _, body in results)
    assert set(seen) <= {"0.1.0", "0.2.0"} and seen["0.2.0"] > 0
    assert versions_seen(url) == Counter({"0.2.0": 40})
    state = site.state()
    assert state["warm_version"] == "0.1.0"
    assert state["weights"] == {"0.1.0": 0, "0.2.0": 100}
    assert get(url, {"X-Shipyard-Version": "0.1.0"})[1] == "0.1.0"  # warm, reachable on purpose
    back = site.cli("rollback", "--env", "staging", "--json")
    assert back.code == 0, back.output
    assert json.loads(back.stdout)["kind"] == "rollback"
    assert versions_seen(url) == Counter({"0.1.0": 40})
    assert site.state()["warm_version"] == "0.2.0"


def test_recreate_replaces_the_version_and_a_deploy_starts_the_notification_agent(
    site: Site,
) -> None:
    receiver = _free_port()  # nothing listens: the agent retries; it runs all the same
    site.write_config(
        "notifications:\n"
        f"  - {{url: http://127.0.0.1:{receiver}/hook, on: [deployment.succeeded]}}\n"
    )
    before = site.cli("agent", "status", "--json")
    assert before.code == 0, before.output
    assert json.loads(before.stdout)["state"] != "RUNNING"
    deployed = site.deploy("0.1.0", "production")
    assert deployed.code == 0, deployed.output
    status = site.cli("agent", "status", "--json")
    assert status.code == 0, status.output
    assert json.loads(status.stdout)["state"] == "RUNNING"
    url = site.url("production")
    assert versions_seen(url, 10) == Counter({"0.1.0": 10})
    site.release("fix: a bug")
    assert site.deploy("0.1.1", "production").code == 0
    assert versions_seen(url, 10) == Counter({"0.1.1": 10})
    assert site.state("production")["warm_version"] is None


def _wait(
    predicate: Callable[[], bool], timeout: float = 60, seen: Callable[[], object] | None = None
) -> None:
    """Poll ``predicate`` until it holds; ``timeout`` is a bound for a hung run, not a measure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(
        f"condition not reached in {timeout:g}s" + (f"; seen: {seen()}" if seen else "")
    )


def _deployments(site: Site) -> list[dict[str, object]]:
    value = json.loads(site.cli("deployments", "list", "--json").stdout)
    assert isinstance(value, list)
    return value


GATED = """#!/bin/sh
# Run the service only once the test opens the gate: until then it answers no health check,
# so the deployment cannot get past its health step whatever the machine's load.
until [ -e "$GATE" ]; do sleep 0.05; done
exec python3 -m app "$@"
"""


def _release_gated(site: Site, message: str) -> tuple[str, Path]:
    """Release the next version with instances that wait for a gate file of their own; returns
    the version and its (closed) gate.

    The deploys of it use these settings: the health timeout is only a bound the test never
    reaches, because the test opens the gate as soon as it has checked what it checks.
    """
    (site.path / "gated").write_text(GATED)
    version = site.release(message)
    gate = site.path.parent / f"gate-{version}"
    text = (
        CONFIG.format(staging_port=site.staging_port, extra=site.extra)
        .replace("command: python3 -m app --port {port}", "command: sh gated --port {port}")
        .replace("instances: 2", f"instances: 2\n  env: {{GATE: '{gate}'}}")
        .replace("timeout: 15s", "timeout: 10m")
    )
    (site.path / "shipyard.yaml").write_text(text)
    return version, gate


def _deploy_in_background(site: Site, version: str, env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "shipyard", "deploy", version, "--env", env],
        cwd=site.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


def _started(site: Site, version: str) -> bool:
    for deployment in _deployments(site):
        if deployment["version"] == version:
            # Held at the gate, it cannot end: if it did, say how at once.
            assert deployment["status"] in ("pending", "progressing"), deployment
            return "started" in (deployment.get("progress") or {}).get("steps", [])
    return False


def _drive_gated_in_background(
    site: Site, message: str, env: str
) -> tuple[str, Path, subprocess.Popen[str]]:
    """Release a gated version and deploy it to ``env`` with a command of its own; returns
    once that command has started the new instances (which wait at the gate, still closed)."""
    version, gate = _release_gated(site, message)
    driver = _deploy_in_background(site, version, env)
    _wait(lambda: _started(site, version), seen=lambda: _deployments(site))
    return version, gate, driver


def test_a_paused_deploy_aborts_to_the_old_version_and_a_killed_driver_is_resumed_by_one(
    site: Site,
) -> None:
    assert site.deploy("0.1.0").code == 0
    url = site.url()

    # Pause, then abort: the old version serves all along and is put back.
    # Closed, the gate keeps the driver before its health step: the pause lands in time.
    version, gate, driver = _drive_gated_in_background(site, "feat: two", "staging")
    assert version == "0.2.0"
    deployment = next(d for d in _deployments(site) if d["version"] == "0.2.0")
    assert site.cli("deployments", "pause", str(deployment["id"])).code == 0
    gate.touch()
    out, err = driver.communicate(timeout=120)
    assert driver.returncode == 3, out + err  # stopped, waiting for a person
    assert next(d for d in _deployments(site) if d["id"] == deployment["id"])["status"] == "paused"
    assert versions_seen(url, 10) == Counter({"0.1.0": 10})
    aborted = site.cli("deployments", "abort", str(deployment["id"]), "--json")
    assert aborted.code == 0, aborted.output
    driver_log = Path(json.loads(aborted.stdout)["driver_log"])  # nobody drove it: one started
    _wait(
        lambda: (
            next(d for d in _deployments(site) if d["id"] == deployment["id"])["status"]
            == "rolled_back"
        ),
        timeout=90,
        seen=lambda: (_deployments(site)[0], driver_log.read_text(errors="replace")[-2000:]),
    )
    assert versions_seen(url, 10) == Counter({"0.1.0": 10})
    audit = json.loads(
        site.cli("audit", "list", "--subject", f"deployment:{deployment['id']}", "--json").stdout
    )
    actions = [event["action"] for event in audit]
    for action in (
        "deployment.created",
        "deployment.progressing",
        "deployment.paused",
        "deployment.aborted",
        "deployment.rolled_back",
    ):
        assert action in actions

    # The driver of the next version is killed once it has started the new instances: one of
    # two drivers racing for it takes it on, the other gives up.
    version, gate, driver = _drive_gated_in_background(site, "feat: three", "staging")
    assert version == "0.3.0"
    driver.send_signal(signal.SIGKILL)
    driver.communicate()
    deployment = next(d for d in _deployments(site) if d["version"] == "0.3.0")
    assert deployment["status"] == "progressing"
    assert versions_seen(url, 10) == Counter({"0.1.0": 10})  # the old one still serves
    racers = [
        subprocess.Popen(
            [sys.executable, "-m", "shipyard", "deployments", "drive", str(deployment["id"])],
            cwd=site.path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        for _ in range(2)
    ]
    # The gate holds whichever racer took over at the health step, so the other one meets
    # its live lease for sure: it must give up, and only then may the deployment go on.
    _wait(lambda: any(racer.poll() is not None for racer in racers), timeout=120)
    loser = next(racer for racer in racers if racer.poll() is not None)
    winner = next(racer for racer in racers if racer is not loser)
    _, loser_err = loser.communicate()
    assert loser.returncode == 2, loser_err
    assert "is driven by" in loser_err
    driving = next(d for d in _deployments(site) if d["id"] == deployment["id"])
    assert f":{winner.pid}:" in str(driving["driver"])
    gate.touch()
    winner_out, winner_err = winner.communicate(timeout=120)
    assert winner.returncode == 0, winner_out + winner_err
    assert (
        next(d for d in _deployments(site) if d["id"] == deployment["id"])["status"] == "succeeded"
    )
    assert versions_seen(url, 10) == Counter({"0.3.0": 10})


def _pid_of(name: str, site: Site) -> int:
    status = Supervisor.for_state(state_dir.locate(site.path)).status(name)
    assert status.pid is not None
    return status.pid


def _repaired_after_kills(site: Site, url: str) -> None:
    """Kill the router, then an instance, and see the supervisor start each again."""
    supervisor = Supervisor.for_state(state_dir.locate(site.path))
    router = next(p.name for p in supervisor.list() if p.name.startswith("router."))
    old = _pid_of(router, site)
    os.kill(old, signal.SIGKILL)
    _wait(
        lambda: (
            supervisor.status(router).pid not in (None, old) and supervisor.status(router).running
        ),
        timeout=30,
    )
    _wait(lambda: _safe_get(url) == "0.1.0", timeout=30)
    instance = next(p.name for p in supervisor.list() if not p.name.startswith("router."))
    old = _pid_of(instance, site)
    os.kill(old, signal.SIGKILL)
    _wait(
        lambda: (
            supervisor.status(instance).pid not in (None, old)
            and supervisor.status(instance).running
        ),
        timeout=30,
    )
    assert versions_seen(url, 20) == Counter({"0.1.0": 20})


def _safe_get(url: str) -> str | None:
    try:
        return get(url, timeout=2)[1]
    except OSError:
        return None


def test_a_tampered_bundle_is_refused_before_anything_starts(site: Site) -> None:
    record = json.loads(site.cli("releases", "show", "0.1.0", "--json").stdout)
    digest = record["bundle"].split(":")[1]
    blob = site.path / ".shipyard" / "blobs" / "sha256" / digest[:2] / digest
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[-10] ^= 0xFF
    blob.write_bytes(bytes(data))
    refused = site.deploy("0.1.0")
    assert refused.code == 1
    assert "does not verify" in json.loads(refused.stdout)["error"]["message"]
    supervisor = Supervisor.for_state(state_dir.locate(site.path))
    assert not supervisor.is_running() or supervisor.list() == []


def test_bad_input_and_kills_leave_what_runs_the_supervisor_repairing_what_was_killed(
    site: Site,
) -> None:
    unknown_version = site.deploy("9.9.9")
    assert unknown_version.code == 2
    assert "not a release of webapp" in unknown_version.output
    unknown_env = site.deploy("0.1.0", "nowhere")
    assert unknown_env.code == 2
    assert "no environment 'nowhere'" in unknown_env.output
    assert site.deploy("0.1.0").code == 0
    url = site.url()
    _repaired_after_kills(site, url)
    site.release("feat: two")
    # The health timeout bounds the wait for an exit (a slow machine may start the process late)
    # and is all the wait for an instance that never gets healthy.
    for broken, timeout, words in (
        ("command: python3 -c 'import sys; sys.exit(3)' --port {port}", "3s", "exited"),
        ("setup: exit 4\n  command: python3 -m app --port {port}", "3s", "service.setup failed"),
        (
            "command: python3 -m app --port {port}\n  env: {APP_HEALTHY: '0'}",
            "500ms",
            "did not answer /healthz with 2xx within 0.5s",
        ),
    ):
        text = (
            CONFIG.format(staging_port=site.staging_port, extra="")
            .replace("command: python3 -m app --port {port}", broken)
            .replace("timeout: 15s", f"timeout: {timeout}")
        )
        (site.path / "shipyard.yaml").write_text(text)
        failed = site.deploy("0.2.0")
        assert failed.code in (1, 2), failed.output
        assert words in failed.output, failed.output
        assert versions_seen(url, 10) == Counter({"0.1.0": 10})
    statuses = [d["status"] for d in _deployments(site) if d["version"] == "0.2.0"]
    assert statuses == ["failed"] * 3


def test_a_router_port_in_use_is_a_clear_error(site: Site) -> None:
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", site.staging_port))
        holder.listen()
        failed = site.deploy("0.1.0")
        assert failed.code in (1, 2)
        assert str(site.staging_port) in failed.output or "router" in failed.output
    supervisor = Supervisor.for_state(state_dir.locate(site.path))
    assert all(p.name.startswith("router.") for p in supervisor.list())  # no instance left
    # Only this test's instances: they run from its state directory (others run in parallel).
    releases = str(state_dir.locate(site.path).root / "deploy")
    leftover = [
        p
        for p in psutil.process_iter(["cmdline", "cwd"])
        if "app" in (p.info["cmdline"] or []) and (p.info["cwd"] or "").startswith(releases)
    ]
    assert leftover == []


def test_a_release_goes_to_the_auto_environments(site: Site) -> None:
    text = (
        (site.path / "shipyard.yaml")
        .read_text()
        .replace("  staging:\n", "  staging:\n    auto: true\n")
    )
    (site.path / "shipyard.yaml").write_text(text)
    git(site.path, "commit", "-q", "-am", "feat: deploy releases to staging")
    released = site.cli("release", "--json")
    assert released.code == 0, released.output
    outcome = json.loads(released.stdout)
    assert [(d["environment"], d["status"]) for d in outcome["deployments"]] == [
        ("staging", "succeeded")
    ]
    assert versions_seen(site.url(), 10) == Counter({outcome["version"]: 10})
    assert site.state("production")["active_version"] is None  # not auto: untouched

"""Delivery benchmarks: a rollback to the warm version, and a blue-green deployment.

Run with ``python bench/run.py cd``. The example service (``examples/webapp``) is released
twice in a scratch repository and deployed with blue-green; a client polls the router as
fast as it can while ``shipyard rollback`` runs as a whole process.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "webapp"
ROUNDS = 3

CONFIG = """project: webapp
release:
  version_files: [VERSION]
service:
  command: python3 -m app --port {port}
  instances: 2
  health: {http: /healthz, timeout: 15s, interval: 50ms}
environments:
  staging:
    strategy: {blue_green: {rollback_window: 1h, preview: false}}
"""


def bench_env(tmp: Path) -> dict[str, str]:
    """The environment the benchmarks run the CLI and git in: this one, with a throwaway
    config home, CI output and a fixed identity."""
    return {
        **os.environ,
        "XDG_CONFIG_HOME": str(tmp / "xdg"),
        "CI": "1",
        "SHIPYARD_USER": "bench@example.com",
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@example.com",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@example.com",
    }


def run(report: object) -> None:
    """Measure rollback-while-warm and blue-green deployment times."""
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-cd-") as tmp:
        repo = Path(tmp) / "repo"
        env = bench_env(Path(tmp))
        release_example_twice(repo, env)
        try:
            deploys, phases = [], []
            whole, admin = [], []
            version_a, version_b = "0.1.0", "0.2.0"
            seconds, _ = shipyard(repo, env, "deploy", version_a, "--env", "staging")
            for _ in range(ROUNDS):
                seconds, output = shipyard(
                    repo, env, "deploy", version_b, "--env", "staging", "--json"
                )
                deploys.append(seconds)
                phases.append(json.loads(output))
                host, port = _router(repo, env)
                total, admin_s = _timed_rollback(repo, env, host, port, version_a)
                whole.append(total)
                admin.append(admin_s)
            report.figure(  # type: ignore[attr-defined]
                "rollback while warm: command to every request on the old version (median)",
                statistics.median(whole),
                unit="s",
                max_value=1.0,
                note="whole `shipyard rollback` process, seen by a polling client",
            )
            report.figure(  # type: ignore[attr-defined]
                "rollback while warm: gap between the last old and first new answer (median)",
                statistics.median(admin) * 1000,
                unit="ms",
                max_value=50,
            )
            report.figure(  # type: ignore[attr-defined]
                "admin call that moves the weights (median of 20)",
                _admin_calls(repo) * 1000,
                unit="ms",
                max_value=50,
            )
            report.figure(  # type: ignore[attr-defined]
                "blue-green deploy, command to switched traffic (median)",
                statistics.median(deploys),
                unit="s",
                note="2 instances of the example service; see RESULTS.md for what dominates",
            )
        finally:
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "from shipyard.cd.supervisor import "
                    "Supervisor; from shipyard.core import state; "
                    "Supervisor.for_state(state.locate()).shutdown()",
                ],
                cwd=repo,
                env=env,
                check=False,
            )


def _admin_calls(repo: Path) -> float:
    """Median seconds of the router admin call that flips all traffic between versions."""
    sys.path.insert(0, str(ROOT / "src"))
    from shipyard.cd.router.client import RouterClient

    client = RouterClient.for_environment(repo / ".shipyard", "webapp-staging")
    names = sorted(client.routes().table.versions, key=lambda v: -v.weight)
    first, second = names[0].name, names[1].name
    timings = []
    for index in range(20):
        weights = {first: 0, second: 100} if index % 2 == 0 else {first: 100, second: 0}
        started = time.perf_counter()
        client.set_weights(weights)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def release_example_twice(repo: Path, env: dict[str, str], config: str = CONFIG) -> None:
    """A repository around examples/webapp with ``config``, released as 0.1.0 and 0.2.0."""
    repo.mkdir()
    for item in ("app", "VERSION", "pyproject.toml"):
        source = EXAMPLE / item
        if source.is_dir():
            shutil.copytree(source, repo / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, repo / item)
    (repo / "shipyard.yaml").write_text(config)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "feat: a"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)
    shipyard(repo, env, "keys", "generate")
    shipyard(repo, env, "release")
    subprocess.run(
        ["git", "commit", "-q", "--allow-empty", "-m", "feat: b"], cwd=repo, env=env, check=True
    )
    shipyard(repo, env, "release")


def shipyard(repo: Path, env: dict[str, str], *args: str) -> tuple[float, str]:
    """Run ``shipyard ARGS`` in ``repo``: its wall time and stdout; RuntimeError if it fails."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "shipyard", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"shipyard {' '.join(args)} (exit {result.returncode}): {result.stderr}")
    return time.perf_counter() - started, result.stdout


def _router(repo: Path, env: dict[str, str]) -> tuple[str, int]:
    _, output = shipyard(repo, env, "status", "--env", "staging", "--json")
    address = json.loads(output)[0]["router"]["address"].removeprefix("http://")
    host, _, port = address.partition(":")
    return host, int(port)


def _timed_rollback(
    repo: Path, env: dict[str, str], host: str, port: int, expected: str
) -> tuple[float, float]:
    """Seconds from starting the command to the first answer after which all are ``expected``,
    and the time of the admin call, from the router's own revision timestamps."""
    seen: list[tuple[float, str]] = []
    stop = threading.Event()

    def poll() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=5)
        while not stop.is_set():
            connection.request("GET", "/")
            body = connection.getresponse().read().decode().strip()
            seen.append((time.perf_counter(), body))

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.2)
    started = time.perf_counter()
    command = subprocess.Popen(
        [sys.executable, "-m", "shipyard", "rollback", "--env", "staging", "--json"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, err = command.communicate()
    time.sleep(0.2)
    stop.set()
    poller.join()
    if command.returncode != 0:
        raise RuntimeError(f"rollback failed: {err}")
    last_other = max((t for t, body in seen if body != expected), default=started)
    first_after = min((t for t, body in seen if t > last_other), default=last_other)
    # The admin call's share: the gap between the last old answer and the first new one.
    admin = first_after - last_other
    return first_after - started, admin

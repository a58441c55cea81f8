"""Canary benchmark: a 3-step canary of the example service under steady load, and its abort.

Run with ``python bench/run.py canary``. ``examples/webapp`` is released twice (0.1.0, the
stable version, and 0.2.0, the canary) in a scratch repository and deployed with
``strategy: {canary: {steps: [{weight: 10, pause: 3s}, {weight: 50, pause: 3s}, {weight: 100}]}}``
by whole ``shipyard`` processes, while client threads keep a steady load on the router.
The abort's router-side instant is the router's own: the admin API's ``installed_at``.
"""

from __future__ import annotations

import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench_cd import bench_env, release_example_twice, shipyard

STABLE, CANARY = "0.1.0", "0.2.0"
ABORTS = 3
"""Aborted canaries per invocation (each during step 2, at 50 %)."""
CLIENTS = 2
PACE_S = 0.004
"""Each client thread sends one request per PACE_S at most: ≈ 500 req/s in all."""

CONFIG = """project: webapp
release:
  version_files: [VERSION]
service:
  command: python3 -m app --port {port}
  instances: 2
  health: {http: /healthz, timeout: 15s, interval: 50ms}
environments:
  staging:
    strategy: {canary: {steps: [{weight: 10, pause: 3s}, {weight: 50, pause: 3s}, {weight: 100}]}}
  production:
    strategy: {canary: {steps: [{weight: 10, pause: 3s}, {weight: 50, pause: 3s}, {weight: 100}]}}
"""
FINAL = {"succeeded", "failed", "rolled_back", "aborted", "superseded"}


def run(report: Any) -> None:
    """Measure a whole canary under load, then aborts during its second step."""
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-canary-") as tmp:
        repo = Path(tmp) / "repo"
        env = bench_env(Path(tmp))
        release_example_twice(repo, env, CONFIG)
        try:
            _whole_canary(report, repo, env)
            _aborts(report, repo, env)
        finally:
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "from shipyard.cd.supervisor import Supervisor; from shipyard.core import "
                    "state; Supervisor.for_state(state.locate()).shutdown()",
                ],
                cwd=repo,
                env=env,
                check=False,
            )


def _whole_canary(report: Any, repo: Path, env: dict[str, str]) -> None:
    """0.1.0 stable, then the canary of 0.2.0 through its three steps, under load."""
    shipyard(repo, env, "deploy", STABLE, "--env", "staging")
    router = Router.of(repo, "webapp-staging")
    with Load(router) as load, RouteWatch(router) as watch:
        time.sleep(0.5)
        seconds, _ = shipyard(repo, env, "deploy", CANARY, "--env", "staging", "--json")
        time.sleep(0.5)
    report.figure(
        "whole canary under load: failed requests",
        load.failures,
        unit="requests",
        max_value=0,
        note=f"{len(load.answers)} answered in {seconds:.1f}s of `shipyard deploy`",
    )
    steps: list[RouteChange] = []  # the first table of each canary weight (a step)
    for change in watch.changes:
        weight = change.weights.get(CANARY, 0)
        if weight > 0 and (not steps or steps[-1].weights.get(CANARY) != weight):
            steps.append(change)
    for index, change in enumerate(steps):
        following = steps[index + 1].installed_at if index + 1 < len(steps) else float("inf")
        seen = Counter(
            version for sent, _, version in load.answers if change.installed_at <= sent < following
        )
        total = sum(seen.values())
        share = 100 * seen[CANARY] / total if total else 0.0
        report.figure(
            f"whole canary, step {index + 1} at {change.weights[CANARY]}%: canary's share of "
            "the requests sent in it",
            share,
            unit="%",
            note=", ".join(f"{v}: {n}" for v, n in sorted(seen.items())),
        )


def _aborts(report: Any, repo: Path, env: dict[str, str]) -> None:
    """Canaries aborted during step 2, under load: when stable had all of the traffic again."""
    shipyard(repo, env, "deploy", STABLE, "--env", "production")
    router = Router.of(repo, "webapp-production")
    from_request, from_driver, client_side = [], [], []
    failures = answered = 0
    for _ in range(ABORTS):
        with Load(router) as load, RouteWatch(router) as watch:
            _, output = shipyard(
                repo, env, "deploy", CANARY, "--env", "production", "--no-wait", "--json"
            )
            deployment = int(json.loads(output)["id"])
            watch.wait_for(lambda w: w.get(CANARY) == 50, timeout=60)
            time.sleep(1.0)  # well inside step 2's pause of 3 s
            shipyard(repo, env, "deployments", "abort", str(deployment))
            _wait_final(repo, env, deployment)
            time.sleep(0.3)
        requested = _audit_time(repo, env, "deployment.abort_requested", deployment)
        acted = _audit_time(repo, env, "deployment.aborted", deployment)
        back = [
            c for c in watch.changes if c.installed_at > requested and c.weights.get(STABLE) == 100
        ]
        if not back:
            raise RuntimeError(f"no route change to all-stable after the abort: {watch.changes}")
        installed = back[0].installed_at
        from_request.append(installed - requested)
        from_driver.append(installed - acted)
        last_canary = max((at for _, at, v in load.answers if v != STABLE), default=requested)
        first_stable_for_good = min(at for _, at, _ in load.answers if at > last_canary)
        client_side.append(first_stable_for_good - requested)
        failures += load.failures
        answered += len(load.answers)
    note = "ms: " + ", ".join(f"{s * 1000:.1f}" for s in from_request)
    report.figure(
        "abort at step 2: abort request written to 100% stable in the router (max)",
        max(from_request) * 1000,
        unit="ms",
        max_value=100,
        note=note + f"; median {statistics.median(from_request) * 1000:.1f}",
    )
    report.figure(
        "abort at step 2: driver acts on it to 100% stable in the router (max)",
        max(from_driver) * 1000,
        unit="ms",
        max_value=100,
        note="ms: " + ", ".join(f"{s * 1000:.1f}" for s in from_driver),
    )
    report.figure(
        "abort at step 2: request written to stable-only answers at the client (max)",
        max(client_side) * 1000,
        unit="ms",
        note="ms: " + ", ".join(f"{s * 1000:.1f}" for s in client_side),
    )
    report.figure(
        f"abort at step 2 under load: failed requests ({ABORTS} aborts)",
        failures,
        unit="requests",
        max_value=0,
        note=f"{answered} answered",
    )


@dataclass(frozen=True)
class Router:
    """One environment's router: its public address and its admin API."""

    public: tuple[str, int]
    admin: tuple[str, int]
    token: str

    @classmethod
    def of(cls, repo: Path, key: str) -> Router:
        """The router ``key`` of the scratch repository's state directory."""
        folder = repo / ".shipyard" / "router" / key
        address = json.loads((folder / "admin.json").read_text())
        token = (folder / "admin.token").read_text().strip()
        return cls(
            (address["public_host"], address["public_port"]),
            (address["host"], address["port"]),
            token,
        )

    def routes(self) -> dict[str, Any]:
        """The admin API's routes answer (with ``installed_at``)."""
        connection = http.client.HTTPConnection(*self.admin, timeout=5)
        try:
            connection.request("GET", "/routes", headers={"Authorization": f"Bearer {self.token}"})
            answer: dict[str, Any] = json.loads(connection.getresponse().read())
            return answer
        finally:
            connection.close()


@dataclass(frozen=True)
class RouteChange:
    """A table the router installed: its revision, weights, and when (router clock)."""

    revision: int
    weights: dict[str, int]
    installed_at: float


@dataclass
class RouteWatch:
    """Polls the router's admin API and keeps every revision it saw."""

    router: Router
    changes: list[RouteChange] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> RouteWatch:
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.wait(0.01):
            answer = self.router.routes()
            if self.changes and self.changes[-1].revision == answer["revision"]:
                continue
            weights = {v["name"]: v["weight"] for v in answer["routes"]["versions"]}
            installed = answer["installed_at"] or 0.0
            self.changes.append(RouteChange(answer["revision"], weights, installed))

    def wait_for(self, condition: Any, *, timeout: float) -> None:
        """Until the latest table's weights satisfy ``condition``."""
        deadline = time.monotonic() + timeout
        while not (self.changes and condition(self.changes[-1].weights)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the router never reached the weights awaited: {self.changes}")
            time.sleep(0.02)


@dataclass
class Load:
    """Client threads, each one request per PACE_S on a keep-alive connection to the router."""

    router: Router
    answers: list[tuple[float, float, str]] = field(default_factory=list)
    """(Unix time the request was sent, of its answer, the version that gave it)."""
    failures: int = 0
    problems: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Load:
        self._threads = [threading.Thread(target=self._client) for _ in range(CLIENTS)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        if self.problems:
            print(f"[bench] failed requests: {self.problems[:5]}", file=sys.stderr)

    def _client(self) -> None:
        connection = http.client.HTTPConnection(*self.router.public, timeout=5)
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                sent = time.time()
                connection.request("GET", "/")
                response = connection.getresponse()
                body = response.read().decode().strip()
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {body[:80]}")
                with self._lock:
                    self.answers.append((sent, time.time(), body))
            except (OSError, http.client.HTTPException, RuntimeError) as error:
                with self._lock:
                    self.failures += 1
                    self.problems.append(repr(error))
                connection.close()
                connection = http.client.HTTPConnection(*self.router.public, timeout=5)
            next_at += PACE_S
            time.sleep(max(0.0, next_at - time.monotonic()))
        connection.close()


def _wait_final(repo: Path, env: dict[str, str], deployment: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _, output = shipyard(repo, env, "deployments", "show", str(deployment), "--json")
        if json.loads(output)["status"] in FINAL:
            return
        time.sleep(0.2)
    raise RuntimeError(f"deployment {deployment} did not finish after its abort")


def _audit_time(repo: Path, env: dict[str, str], action: str, deployment: int) -> float:
    """Unix time of the newest audit event ``action`` (of this deployment)."""
    _, output = shipyard(repo, env, "audit", "list", "--action", action, "--json")
    events = json.loads(output)
    if not events:
        raise RuntimeError(f"no audit event {action} for deployment {deployment}")
    return datetime.fromisoformat(events[-1]["time"]).timestamp()

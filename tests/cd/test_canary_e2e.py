"""A canary of the example service end to end: real processes behind the real router, the
weights a client sees at each step, and an abort under load that loses no request."""

from __future__ import annotations

import json
import math
import threading
import urllib.request
from collections import Counter

import pytest

from cd.test_deploy import Site, _free_port, _wait, site  # noqa: F401 - the fixture
from support import CliResult

pytestmark = pytest.mark.slow  # real processes end to end: started first (conftest)

CANARY_ENV = """  live:
    strategy: {{canary: {{steps: [{{weight: 25, pause: {{}}}}, {{weight: 75, pause: {{}}}}]}}}}
    router: {{port: {port}}}
"""


def _ask(url: str) -> tuple[int, str, str]:
    """One request: the status, the version the router says served it, and the body."""
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our http URL
        header = response.headers.get("X-Shipyard-Version", "")
        return int(response.status), header, response.read().decode().strip()


def _versions_seen(url: str, count: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(count):
        status, header, body = _ask(url)
        assert (status, header) == (200, body)  # the header names the version that answered
        seen[header] += 1
    return seen


def _assert_split(seen: Counter[str], canary: str, weight: int, count: int) -> None:
    """The canary got ``weight`` percent of ``count`` requests (within 6 standard deviations)."""
    expected = count * weight / 100
    spread = 6 * math.sqrt(count * weight / 100 * (1 - weight / 100))
    assert abs(seen[canary] - expected) <= spread, (seen, weight)


def _deployment(at: Site, deployment_id: int) -> dict[str, object]:
    shown = at.cli("deployments", "show", str(deployment_id), "--json")
    assert shown.code == 0, shown.output
    value = json.loads(shown.stdout)
    assert isinstance(value, dict)
    return value


def _paused_at(at: Site, deployment_id: int, step: int) -> bool:
    found = _deployment(at, deployment_id)
    progress = found.get("progress") or {}
    assert isinstance(progress, dict)
    return found["status"] == "paused" and progress.get("routed_step") == step


def test_a_canary_steps_the_weights_a_client_sees_and_an_abort_loses_no_request(
    site: Site,  # noqa: F811 - the fixture imported above
) -> None:
    port = _free_port()
    site.write_config(CANARY_ENV.format(port=port))
    stable = site.release("feat: canary environment")
    assert site.deploy(stable, "live").code == 0  # nothing ran: all at once
    url = site.url("live")
    assert _versions_seen(url, 20) == Counter({stable: 20})
    canary = site.release("feat: the canary")

    paused: CliResult = site.deploy(canary, "live")
    assert paused.code == 3, paused.output  # waiting for a person at the first step
    listed = json.loads(site.cli("deployments", "list", "--json").stdout)
    deployment_id = int(next(d["id"] for d in listed if d["version"] == canary))
    assert _paused_at(site, deployment_id, 0)
    assert site.state("live")["weights"] == {stable: 75, canary: 25}
    _assert_split(_versions_seen(url, 400), canary, 25, 400)

    resumed = site.cli("deployments", "resume", str(deployment_id))
    assert resumed.code == 0, resumed.output
    _wait(lambda: _paused_at(site, deployment_id, 1), timeout=120)
    assert site.state("live")["weights"] == {stable: 25, canary: 75}
    _assert_split(_versions_seen(url, 400), canary, 75, 400)

    # An abort under a small steady load: every request answered, then all on stable.
    stop = threading.Event()
    results: list[tuple[int, str, str]] = []
    errors: list[str] = []

    def load() -> None:
        while not stop.is_set() and len(results) < 20000:
            try:
                results.append(_ask(url))
            except OSError as error:  # a refused or reset connection is a lost request
                errors.append(repr(error))

    workers = [threading.Thread(target=load) for _ in range(3)]
    for worker in workers:
        worker.start()
    try:
        aborted = site.cli("deployments", "abort", str(deployment_id))
        assert aborted.code == 0, aborted.output
        _wait(lambda: _deployment(site, deployment_id)["status"] == "rolled_back", timeout=120)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
    assert errors == []
    assert results and all(status == 200 for status, _, _ in results)
    assert {header for _, header, _ in results} <= {stable, canary}
    assert site.state("live")["weights"] == {stable: 100}
    assert _versions_seen(url, 40) == Counter({stable: 40})

"""The analysis end to end: the example service released and deployed with real processes
behind the real router, under steady load; the builtin provider reads the router's statistics.

A canary answering 500 to a fifth of its requests is rolled back by itself, a good one takes
over, a canary without traffic waits for a person, a driver killed with SIGKILL during the
analysis is taken over and the analysis goes on, and a regression that appears some seconds
after the new version took all the traffic is rolled back by the watch window.

The analysis looks every second, the least it accepts; waits are bounds, not measures.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from cd.test_deploy import Site, _free_port, _wait, site  # noqa: F401 - the fixture
from loadsupport import Load
from monitor.test_prometheus import IN_CI, PROMETHEUS, _documented_scrape_config, _ready, _stop

pytestmark = pytest.mark.slow  # real processes end to end: started first (conftest)

ANALYSIS = """    analysis:
      interval: 1s
      failure_limit: {failure_limit}
      inconclusive_limit: {inconclusive_limit}
      metrics:
        - {{name: error_rate, provider: builtin, max: 0.05, min_requests: 10}}
"""


def _canary_env(
    port: int,
    *,
    pause: str = "3s",
    failure_limit: int = 0,
    inconclusive_limit: int = 30,
    env: str = "",
) -> str:
    """A canary environment analysed every second. Looks without enough requests (a loaded
    machine's load generator can fall behind) are inconclusive and tolerated unless a test
    is about them."""
    return (
        "  live:\n"
        f"    strategy: {{canary: {{steps: [{{weight: 50, pause: {pause}}}, {{weight: 100}}]}}}}\n"
        f"    router: {{port: {port}}}\n"
        + (f"    env: {{{env}}}\n" if env else "")
        + ANALYSIS.format(failure_limit=failure_limit, inconclusive_limit=inconclusive_limit)
    )


def _json(at: Site, *args: str) -> Any:
    shown = at.cli(*args, "--json")
    assert shown.code == 0, shown.output
    return json.loads(shown.stdout)


def _looks(at: Site, deployment_id: int) -> list[dict[str, Any]]:
    shown = _json(at, "analysis", "show", str(deployment_id))
    return [m for metric in shown["metrics"] for m in metric["measurements"]]


def _stored_fails(at: Site, deployment_id: int) -> int:
    """Failed looks of a deployment, read from the state directory's SQLite store."""
    with contextlib.closing(sqlite3.connect(at.path / ".shipyard" / "shipyard.db")) as db:
        (count,) = db.execute(
            "SELECT count(*) FROM measurements WHERE deployment_id = ? AND verdict = 'fail'",
            (deployment_id,),
        ).fetchone()
    return int(count)


def _fails(looks: list[dict[str, Any]]) -> int:
    return len([look for look in looks if look["verdict"] == "fail"])


def _deployment_of(at: Site, version: str) -> dict[str, Any]:
    listed = _json(at, "deployments", "list")
    found = next(d for d in listed if d["version"] == version)
    assert isinstance(found, dict)
    return found


def _started_stable(at: Site, port: int, **options: Any) -> tuple[str, str]:
    at.write_config(_canary_env(port, **options))
    stable = at.release("feat: canary environment with analysis")
    first = at.deploy(stable, "live")  # nothing to compare with: all at once
    assert first.code == 0, first.output
    return stable, at.url("live")


def test_a_canary_failing_a_fifth_of_its_requests_is_rolled_back_by_itself(
    site: Site,  # noqa: F811 - the fixture imported above
) -> None:
    port = _free_port()
    stable, url = _started_stable(site, port)
    bad = site.release("feat: a release that fails under traffic")
    site.write_config(_canary_env(port, env="APP_FAIL_RATE: '0.2'"))
    with Load(url, workers=2, rate=100) as load:
        deployed = site.deploy(bad, "live")
        after = load.count()
        load.wait_for(lambda: load.count() >= after + 50)  # served on after the rollback
    assert deployed.code == 1, deployed.output
    assert "was rolled back" in deployed.output
    assert "> max 0.05" in deployed.output
    found = _deployment_of(site, bad)
    assert found["status"] == "rolled_back"
    assert site.state("live")["weights"] == {stable: 100}
    assert load.count(status=500, version=stable) == 0
    assert load.errors == []
    *before, look = _looks(site, found["id"])  # failure_limit 0: the first failure ends it
    assert {earlier["verdict"] for earlier in before} <= {"inconclusive"}
    assert look["verdict"] == "fail" and look["phase"] == "step 1"
    assert 0.1 < look["value"] < 0.3
    [incident] = _json(site, "incident", "list")
    assert (incident["caused_by_version"], incident["restored_by_version"]) == (bad, stable)
    assert incident["status"] == "restored"


def test_a_good_canary_passes_its_looks_and_takes_all_traffic(
    site: Site,  # noqa: F811 - the fixture imported above
) -> None:
    port = _free_port()
    _stable, url = _started_stable(site, port, pause="2s")
    good = site.release("feat: a good release")
    with Load(url, workers=2, rate=100) as load:
        deployed = site.deploy(good, "live")
    assert deployed.code == 0, deployed.output
    assert json.loads(deployed.stdout)["status"] == "succeeded"
    assert site.state("live")["weights"] == {good: 100}
    looks = _looks(site, _deployment_of(site, good)["id"])
    assert len(looks) == 2  # a 2 s pause, 1 s looks
    assert "pass" in {look["verdict"] for look in looks} <= {"pass", "inconclusive"}
    assert load.count(status=500) == 0 and load.errors == []
    assert _json(site, "incident", "list") == []


def test_a_canary_without_traffic_is_inconclusive_and_waits_for_a_person(
    site: Site,  # noqa: F811 - the fixture imported above
) -> None:
    port = _free_port()
    stable, _url = _started_stable(site, port, inconclusive_limit=0)
    idle = site.release("feat: nobody is calling")
    paused = site.deploy(idle, "live")
    assert paused.code == 3, paused.output
    assert "no requests to version" in paused.output
    found = _deployment_of(site, idle)
    assert found["status"] == "paused"
    assert site.state("live")["weights"] == {stable: 50, idle: 50}
    # inconclusive_limit 0: the first inconclusive look hands it to a person.
    assert [look["verdict"] for look in _looks(site, found["id"])] == ["inconclusive"]


FAILURE_LIMIT = 3
"""Failed looks the killed driver's analysis tolerates: the kill comes after the first."""


def test_a_driver_killed_during_the_analysis_is_taken_over_and_the_analysis_goes_on(
    site: Site,  # noqa: F811 - the fixture imported above
) -> None:
    port = _free_port()
    # failure_limit 3: the analysis cannot end before its fourth failed look, 3 s of looks
    # after the first one the test waits for and kills the driver at.
    stable, url = _started_stable(site, port, pause="40s", failure_limit=FAILURE_LIMIT)
    bad = site.release("feat: a release that fails under traffic")
    env = "APP_FAIL_RATE: '0.2'"
    site.write_config(_canary_env(port, pause="40s", failure_limit=FAILURE_LIMIT, env=env))
    with Load(url, workers=2, rate=100):
        started = site.deploy(bad, "live", "--no-wait")
        assert started.code == 0, started.output
        deployment_id = int(_deployment_of(site, bad)["id"])

        pid = int(json.loads(started.stdout)["driver_pid"])
        # Read the store directly while waiting: the CLI is too slow on a loaded machine to
        # catch the driver between its first failed look and its last.
        _wait(lambda: _stored_fails(site, deployment_id) >= 1, timeout=120)
        os.kill(pid, signal.SIGKILL)
        before = _looks(site, deployment_id)
        assert 1 <= _fails(before) <= FAILURE_LIMIT
        assert _deployment_of(site, bad)["status"] == "progressing"  # nobody drives it now
        resumed = site.cli("deployments", "resume", str(deployment_id), "--json")
        assert resumed.code == 0, resumed.output  # a new driver, in the background
        _wait(lambda: _deployment_of(site, bad)["status"] == "rolled_back", timeout=120)
    looks = _looks(site, deployment_id)
    # The fourth failure in a row ends it, counting those made before the kill.
    assert _fails(looks) == FAILURE_LIMIT + 1
    assert {look["verdict"] for look in looks} <= {"fail", "inconclusive"}
    assert len(looks) > len(before)
    assert _deployment_of(site, bad)["status"] == "rolled_back"
    assert site.state("live")["weights"] == {stable: 100}


REGRESS_AFTER_S = 8
"""When the watched release goes bad, counted from its start: the version takes all the
traffic about 1 s after it starts (its instances must stay up 1 s), so the watch sees it good
for several looks first."""


def test_a_regression_after_full_rollout_is_rolled_back_by_the_watch_window(
    site: Site,  # noqa: F811 - the fixture imported above
) -> None:
    port = _free_port()

    def watched(env: str = "") -> str:
        return (
            "  live:\n"
            "    strategy: {blue_green: {rollback_window: 10m}}\n"
            f"    router: {{port: {port}}}\n"
            "    watch: 30s\n" + env + ANALYSIS.format(failure_limit=0, inconclusive_limit=30)
        )

    site.write_config(watched())
    stable = site.release("feat: a watched environment")
    assert site.deploy(stable, "live").code == 0
    bad = site.release("feat: a release that goes bad after a few seconds")
    regress = f"    env: {{APP_REGRESS_AFTER: '{REGRESS_AFTER_S}', APP_FAIL_RATE: '0.5'}}\n"
    site.write_config(watched(regress))
    with Load(site.url("live"), workers=2, rate=100) as load:
        deployed = site.deploy(bad, "live")
    assert deployed.code == 1, deployed.output
    found = _deployment_of(site, bad)
    assert found["status"] == "rolled_back"
    looks = _looks(site, found["id"])
    assert {look["phase"] for look in looks} == {"watch"}
    assert looks[-1]["verdict"] == "fail"
    assert len([look for look in looks if look["verdict"] == "pass"]) >= 3  # good at first
    assert site.state("live")["weights"] == {stable: 100}
    assert load.count(version=bad, status=200) > 0 and load.count(version=bad, status=500) > 0
    [incident] = _json(site, "incident", "list")
    assert incident["source"] == "watch"


PROMETHEUS_ANALYSIS = """    analysis:
      interval: 1s
      failure_limit: 0
      inconclusive_limit: 20
      metrics:
        - name: error_ratio
          provider: prometheus
          url: {url}
          query: >-
            sum(rate(shipyard_router_requests_total{{environment="{{{{env}}}}",
            version="{{{{version}}}}",traffic="weighted",code="5xx"}}[6s]))
            / sum(rate(shipyard_router_requests_total{{environment="{{{{env}}}}",
            version="{{{{version}}}}",traffic="weighted"}}[6s]))
          max: 0.05
"""


@dataclass(frozen=True)
class Prometheus:
    """Where Prometheus will listen, and how to start it."""

    url: str
    start: Callable[[], None]


@pytest.fixture
def prometheus(site: Site, tmp_path: Path) -> Iterator[Prometheus]:  # noqa: F811 - the fixture
    """A real Prometheus (1 s scrapes) on the documented scrape configuration for webapp/live,
    started by the test once the first deployment wrote the file of targets it reads: read at
    start, it is not waited for until the next refresh (the documented 10 s)."""
    if PROMETHEUS is None:
        if IN_CI:
            pytest.fail("the prometheus binary is missing in CI (.ci/run installs it)")
        pytest.skip("the prometheus binary is not installed (apt-get install prometheus)")
    documented = _documented_scrape_config(site.path / ".shipyard")
    text = yaml.safe_dump(documented).replace("demo-service-production", "webapp-live")
    config = {"global": {"scrape_interval": "1s"}, **yaml.safe_load(text)}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    url = f"http://127.0.0.1:{_free_port()}"
    processes: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        with (tmp_path / "prometheus.log").open("wb") as log:
            processes.append(
                subprocess.Popen(
                    [
                        PROMETHEUS,
                        f"--config.file={tmp_path / 'prometheus.yml'}",
                        f"--web.listen-address={url.removeprefix('http://')}",
                        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                        "--log.level=warn",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            )
        _wait(lambda: _ready(url), timeout=60)

    try:
        yield Prometheus(url, start)
    finally:
        for process in processes:
            _stop(process)


def test_a_canary_failing_a_fifth_of_its_requests_is_rolled_back_on_prometheus_figures(
    site: Site,  # noqa: F811 - the fixture imported above
    prometheus: Prometheus,
) -> None:
    port = _free_port()

    def environment(env: str = "") -> str:
        return (
            "  live:\n"
            "    strategy: {canary: {steps: [{weight: 50, pause: 60s}, {weight: 100}]}}\n"
            f"    router: {{port: {port}}}\n" + env + PROMETHEUS_ANALYSIS.format(url=prometheus.url)
        )

    site.write_config(environment())
    stable = site.release("feat: a canary judged on Prometheus's figures")
    assert site.deploy(stable, "live").code == 0
    prometheus.start()
    url = site.url("live")

    def scraped() -> bool:  # Prometheus found the router (its file came with the first deploy)
        with urllib.request.urlopen(url) as served:  # noqa: S310 - the router's http URL
            served.read()
        query = urllib.parse.urlencode({"query": "shipyard_router_requests_total"})
        with urllib.request.urlopen(f"{prometheus.url}/api/v1/query?{query}") as answer:  # noqa: S310
            return bool(json.loads(answer.read())["data"]["result"])

    _wait(scraped, timeout=120)
    bad = site.release("feat: a release that fails under traffic")
    site.write_config(environment("    env: {APP_FAIL_RATE: '0.2'}\n"))
    with Load(site.url("live"), workers=2, rate=100):
        deployed = site.deploy(bad, "live")
    assert deployed.code == 1, deployed.output
    found = _deployment_of(site, bad)
    assert found["status"] == "rolled_back"
    assert site.state("live")["weights"] == {stable: 100}
    looks = _looks(site, found["id"])
    assert looks[-1]["verdict"] == "fail"
    assert 0.1 < looks[-1]["value"] < 0.3  # the canary's share of 500s, as Prometheus saw it
    assert {look["verdict"] for look in looks[:-1]} <= {"inconclusive"}  # until it had data

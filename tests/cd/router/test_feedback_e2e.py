"""Users' feedback end to end: the example service released and deployed as a canary with real
processes behind the real router; complaints posted through the router move the builtin
provider's complaint_rate of the canary, and a canary users complain about is rolled back by
its analysis on its own."""

from __future__ import annotations

import http.client
import json
import threading
from collections import Counter
from urllib.parse import urlsplit

import pytest

from cd.test_analysis_e2e import _deployment_of, _json
from cd.test_deploy import Site, _free_port, site  # noqa: F401 - the fixture
from loadsupport import Load
from shipyard.cd.observe import traffic_snapshot
from shipyard.cd.router.client import RouterClient
from shipyard.core import state as state_dir
from shipyard.monitor.providers import BuiltinProvider, MetricQuery

pytestmark = pytest.mark.slow  # real processes end to end: started first (conftest)

FEEDBACK = "/.shipyard/feedback"


def _live(port: int, *, steps: str, analysis: str = "") -> str:
    return (
        "  live:\n"
        f"    strategy: {{canary: {{steps: {steps}}}}}\n"
        f"    router: {{port: {port}}}\n"
        "    feedback: true\n" + analysis
    )


def _connection(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    assert parts.hostname is not None
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)


def _post(connection: http.client.HTTPConnection, body: dict[str, object]) -> int:
    connection.request("POST", FEEDBACK, body=json.dumps(body).encode())
    response = connection.getresponse()
    response.read()
    return response.status


def test_complaints_posted_through_the_router_move_the_canarys_complaint_rate(
    site: Site,  # noqa: F811 - the fixture imported above
) -> None:
    port = _free_port()
    site.write_config(_live(port, steps="[{weight: 50, pause: {}}, {weight: 100}]"))
    stable = site.release("feat: an environment that takes feedback")
    assert site.deploy(stable, "live").code == 0
    canary = site.release("feat: a release users will dislike")
    paused = site.deploy(canary, "live")
    assert paused.code == 3, paused.output  # at 50 %, waiting for a person
    url = site.url("live")
    client = RouterClient.for_environment(state_dir.locate(site.path).root, "webapp-live")
    provider = BuiltinProvider(lambda: traffic_snapshot(client.stats()))

    def measured(metric: str, version: str) -> float | None:
        return provider.measure(MetricQuery(metric, "live", version, min_requests=20)).value

    client.reset_stats()
    connection = _connection(url)
    served: Counter[str] = Counter()
    for _ in range(200):
        connection.request("GET", "/")
        response = connection.getresponse()
        response.read()
        served[str(response.getheader("X-Shipyard-Version"))] += 1
    assert set(served) == {stable, canary}
    assert measured("complaint_rate", canary) == 0.0
    assert measured("feedback_score", canary) is None

    for index in range(10):
        assert _post(connection, {"complaint": f"broken page {index}", "version": canary}) == 202
    for score in (1, 2):
        assert _post(connection, {"score": score, "version": canary}) == 202
    assert _post(connection, {"score": 5, "version": stable}) == 202
    connection.close()

    assert measured("complaint_rate", canary) == 10 / served[canary]
    assert measured("complaint_rate", stable) == 0.0
    assert measured("feedback_score", canary) == 1.5
    assert measured("feedback_score", stable) == 5.0
    listed = _json(site, "feedback", "list", "--env", "live")
    assert len(listed) == 13
    assert listed[0]["version"] == stable and listed[0]["score"] == 5


def test_a_canary_users_complain_about_is_rolled_back_by_its_analysis(
    site: Site,  # noqa: F811 - the fixture imported above
) -> None:
    port = _free_port()
    analysis = (
        "    analysis:\n"
        "      interval: 1s\n"
        "      failure_limit: 0\n"
        "      metrics:\n"
        "        - {name: complaint_rate, provider: builtin, max: 0.05, min_requests: 10}\n"
    )
    steps = "[{weight: 50, pause: 20s}, {weight: 100}]"
    site.write_config(_live(port, steps=steps, analysis=analysis))
    stable = site.release("feat: feedback judges the canary")
    assert site.deploy(stable, "live").code == 0
    disliked = site.release("feat: a redesign nobody asked for")
    url = site.url("live")
    stop = threading.Event()
    accepted: Counter[int] = Counter()

    def complain() -> None:
        connection = _connection(url)
        try:
            while not stop.wait(0.05):
                body = {"complaint": "where did the button go?", "version": disliked}
                accepted[_post(connection, body)] += 1  # 400 until the canary is routed
        finally:
            connection.close()

    complainer = threading.Thread(target=complain, daemon=True)
    with Load(url, workers=2, rate=100) as load:
        complainer.start()
        try:
            deployed = site.deploy(disliked, "live")
        finally:
            stop.set()
            complainer.join(30)
    assert deployed.code == 1, deployed.output
    assert "was rolled back" in deployed.output
    assert "complaint_rate" in deployed.output
    assert accepted[202] > 0
    assert _deployment_of(site, disliked)["status"] == "rolled_back"
    assert site.state("live")["weights"] == {stable: 100}
    assert load.count(version=disliked) > 0 and load.errors == []
    [incident] = _json(site, "incident", "list")
    assert incident["caused_by_version"] == disliked

"""The sequential judge end to end: the same bad canary, deployed twice in one site with real
processes behind the real router under the same steady load, is rolled back by the sequential
judge after far fewer of its requests than by an Argo-like threshold analysis.

The stable version fails 1 % of its requests, the canary 10 % (``APP_FAIL_RATE`` spreads them
evenly), the canary takes half of the traffic. How soon is counted in what users felt, the
canary's answers before its rollback, and in the analysis's own evidence time (looks ×
interval): no wall-clock time is asserted.
"""

from __future__ import annotations

from typing import Any

import pytest

from cd.test_analysis_e2e import _deployment_of, _looks
from cd.test_deploy import Site, _free_port, site  # noqa: F401 - the fixture
from loadsupport import Load
from support import CliResult

pytestmark = pytest.mark.slow  # real processes end to end: started first (conftest)

STABLE_ENV = "    env: {APP_FAIL_RATE: '0.01'}\n"
CANARY_ENV = "    env: {APP_FAIL_RATE: '0.1'}\n"

THRESHOLD_INTERVAL_S = 4
THRESHOLD = f"""    analysis:
      interval: {THRESHOLD_INTERVAL_S}s
      failure_limit: 2
      metrics:
        - {{name: error_rate, provider: builtin, max: 0.02}}
"""
"""Argo-like: the canary's error rate over each interval against twice the stable's rate;
three failed checks in a row (failure_limit 2) roll it back."""

SEQUENTIAL_INTERVAL_S = 1
SEQUENTIAL = f"""    analysis:
      interval: {SEQUENTIAL_INTERVAL_S}s
      failure_limit: 2
      judge: {{kind: sequential}}
      metrics:
        - {{name: error_rate, provider: builtin, max: 0.02}}
"""
"""The same analysis judged by the sequential test (mSPRT, alpha 0.01), looking every second:
an always-valid test may look as often as it likes."""

WORKERS, RATE = 8, 200
"""The steady load: ~200 requests/s, ~100 of them to the canary, from workers that each wait
40 ms between requests (a slow answer on a loaded machine does not slow the load down). The
sequential test needs about 250 of the canary's requests to fail it (and looks once a second,
so up to ~100 more come before it decides), the threshold analysis three 4-s checks (~1,200
requests at this rate): the comparison holds down to half of the rate, as on a loaded
machine."""


def _environment(port: int, env: str, analysis: str) -> str:
    """The live environment: a 50 % canary step long enough for either judge to decide."""
    return (
        "  live:\n"
        "    strategy: {canary: {steps: [{weight: 50, pause: 60s}, {weight: 100}]}}\n"
        f"    router: {{port: {port}}}\n" + env + analysis
    )


def _rolled_back(at: Site, version: str, stable: str, deployed: CliResult) -> dict[str, Any]:
    """The deployment of ``version`` after its rollback, checked as a user would check it."""
    assert deployed.code == 1, deployed.output
    assert "was rolled back" in deployed.output
    found = _deployment_of(at, version)
    assert found["status"] == "rolled_back"
    assert at.state("live")["weights"] == {stable: 100}
    return found


def test_the_sequential_judge_rolls_a_bad_canary_back_sooner_than_the_threshold_judge(
    site: Site,  # noqa: F811 - the fixture imported above
) -> None:
    port = _free_port()
    site.write_config(_environment(port, STABLE_ENV, THRESHOLD))
    stable = site.release("feat: a live environment judged by its analysis")
    assert site.deploy(stable, "live").code == 0  # nothing to compare with: all at once
    url = site.url("live")
    bad = site.release("feat: a release that fails 10 % of its requests")

    site.write_config(_environment(port, CANARY_ENV, SEQUENTIAL))
    with Load(url, workers=WORKERS, rate=RATE) as sequential_load:
        deployed = site.deploy(bad, "live")
    sequential = _rolled_back(site, bad, stable, deployed)
    assert "likelihood ratio" in deployed.output
    sequential_looks = _looks(site, sequential["id"])

    site.write_config(_environment(port, CANARY_ENV, THRESHOLD))
    with Load(url, workers=WORKERS, rate=RATE) as threshold_load:
        deployed = site.deploy(bad, "live")
    threshold = _rolled_back(site, bad, stable, deployed)
    assert "> max 0.02" in deployed.output
    threshold_looks = _looks(site, threshold["id"])

    assert sequential["id"] != threshold["id"]
    assert [look["verdict"] for look in threshold_looks] == ["fail"] * 3
    # Undecided until the evidence was strong, then one failed look ended it, failure_limit or not.
    *before, failed = sequential_looks
    assert {look["verdict"] for look in before} <= {"undecided", "inconclusive"}, before
    assert failed["verdict"] == "fail" and failed["threshold"].startswith("sequential msprt")
    evidence = failed["evidence"]
    assert evidence["canary_errors"] / evidence["canary_requests"] > 0.08  # the canary's 10 %

    # What users felt: the canary's answers (and its 500s) before each rollback.
    served = {
        name: (load.count(version=bad), load.count(version=bad, status=500))
        for name, load in (("sequential", sequential_load), ("threshold", threshold_load))
    }
    shown = f"canary answers (all, 500s): {served}"
    assert served["sequential"][0] * 2 <= served["threshold"][0], shown
    assert served["sequential"][1] * 2 <= served["threshold"][1], shown
    # The evidence each judge waited for: its looks times its interval.
    sequential_s = len(sequential_looks) * SEQUENTIAL_INTERVAL_S
    threshold_s = len(threshold_looks) * THRESHOLD_INTERVAL_S
    assert sequential_s * 2 <= threshold_s, f"{sequential_s} s against {threshold_s} s; {shown}"
    for load in (sequential_load, threshold_load):
        assert load.count(version=stable, status=200) > 0 and load.errors == []

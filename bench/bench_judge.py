"""Canary judge benchmark: the sequential tests against an Argo-like threshold analysis.

Run with ``python bench/run.py judge``. A simulation with fixed seeds, no processes: 100
requests/s in all, 10 % of them to the canary, the baseline failing 1 % of its requests. Every
simulated canary's traffic is fed to each judge alike:

- the sequential judge looks every 10 s at the cumulative counts: the mSPRT
  (``msprt_rates``, alpha 0.01, tau 0.02) and the exact conditional test
  (``conditional_errors``, alpha 0.01);
- the Argo-like analysis is Shipyard's threshold judge and analysis run: every 60 s the
  canary's error rate over the last 60 s against ``max: 0.02`` (twice the baseline's rate, so
  a 1 % canary crosses it about once in a hundred checks), failing when more than
  ``failure_limit: 2`` checks in a row fail.

Reported: the median time to detect a canary failing 5 % of its requests; false alarms among
1,000 canaries with no difference, each watched for 30 minutes; the median time to a pass
with no difference (``min_effect`` 0.01); how soon each judge detects a canary exactly
``min_effect`` worse (2 %), and how often the sequential judge wrongly passes one. A canary
never decided counts as later than any decided one in a median.

Then a live run: ``examples/webapp`` released twice and deployed through the CLI behind the
real router (as ``bench_cd`` and ``bench_canary`` do), the stable version failing 1 % of its
requests and the canary 5 % (``APP_FAIL_RATE``), at a 10 % canary weight under ~100
requests/s. The same canary is deployed once with the Argo-like analysis above and twice with
``judge: {kind: sequential}`` (looking every 10 s as in the simulation, then every second);
each is rolled back. Reported: each one's time to rollback, by the router's own clock from the
table that gave the canary traffic to the one that took it back, and the ratios.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_canary import Router, RouteWatch
from bench_cd import bench_env, release_example_twice, shipyard

from shipyard.monitor.analysis import AnalysisRun, RunOutcome, Threshold, judge
from shipyard.monitor.providers.interface import Measurement
from shipyard.monitor.statistics import (
    DecisionKind,
    RateEvidence,
    conditional_errors,
    msprt_rates,
)

ALPHA = 0.01
TAU = 0.02
MIN_EFFECT = 0.01
BASE_RATE = 0.01
BAD_RATE = 0.05
WEIGHT = 0.1
REQUESTS_PER_S = 100
LOOK_S = 10
"""The sequential judge's interval."""
CHECK_S = 60
"""The Argo-like analysis's interval and window."""
ARGO_MAX = 0.02
FAILURE_LIMIT = 2
MINUTES = 30
CANARIES = 1_000
AT_MIN_EFFECT = 300
"""Canaries exactly min_effect worse (2 % against 1 %): how often a judge wrongly passes one."""
LOOKS = MINUTES * 60 // LOOK_S
CANARY_PER_LOOK = round(WEIGHT * REQUESTS_PER_S * LOOK_S)
BASE_PER_LOOK = REQUESTS_PER_S * LOOK_S - CANARY_PER_LOOK

Look = tuple[int, int]
"""Errors of the canary and of the baseline in one 10-s interval."""


@dataclass(frozen=True)
class Outcome:
    """When a judge first failed and first passed a canary, in seconds (None: never)."""

    failed_at: float | None
    passed_at: float | None = None


def run(report: object) -> None:
    """The simulation, then the live run through the real router."""
    simulate(report)
    live(report)


def simulate(report: object) -> None:
    """Simulate, judge, and report times to detect, false alarms, times to pass, wrong passes."""
    bad = [_traffic(random.Random(1_000 + i), BAD_RATE) for i in range(CANARIES)]
    same = [_traffic(random.Random(2_000 + i), BASE_RATE) for i in range(CANARIES)]
    judges: dict[str, Callable[[list[Look], bool], Outcome]] = {
        "msprt": _msprt,
        "conditional": _conditional,
        "argo": _argo,
    }
    detect = {name: [j(t, False).failed_at for t in bad] for name, j in judges.items()}
    calm = {name: [j(t, True) for t in same] for name, j in judges.items()}
    argo_label = f"Argo-like: max {ARGO_MAX} over {CHECK_S} s, failure_limit {FAILURE_LIMIT}"
    setting = f"1% vs {BAD_RATE:.0%} errors, weight {WEIGHT:.0%}, {REQUESTS_PER_S} req/s"

    argo_median = _median(detect["argo"])
    for name in ("msprt", "conditional"):
        report.ratio(  # type: ignore[attr-defined]
            f"median time to detect a 5x canary, {name} ({setting})",
            _median(detect[name]),
            argo_median,
            unit="s",
            baseline_name=argo_label,
            max_ratio=1 / 3,
            note=f"{_detected(detect[name])} of {CANARIES} detected within {MINUTES} min; "
            f"Argo-like {_detected(detect['argo'])}",
        )
    for name in ("msprt", "conditional", "argo"):
        alarms = sum(o.failed_at is not None for o in calm[name])
        report.figure(  # type: ignore[attr-defined]
            f"false alarms, {CANARIES:,} canaries with no difference, {MINUTES} min each, "
            f"{name}" + ("" if name == "argo" else f" (alpha {ALPHA})"),
            100 * alarms / CANARIES,
            unit="%",
            max_value=100 * ALPHA,
            note=f"{alarms} of {CANARIES} ever failed",
        )
    for name in ("msprt", "conditional"):
        passed = [o.passed_at for o in calm[name]]
        report.figure(  # type: ignore[attr-defined]
            f"median time to pass with no difference, {name} (min_effect {MIN_EFFECT})",
            _median(passed),
            unit="s",
            note=f"{_detected(passed)} of {CANARIES} passed within {MINUTES} min; "
            f"10th-90th percentile {_deciles(passed)}",
        )
    worse = [
        _traffic(random.Random(3_000 + i), BASE_RATE + MIN_EFFECT) for i in range(AT_MIN_EFFECT)
    ]
    for name in ("msprt", "conditional", "argo"):
        outcomes = [judges[name](t, False) for t in worse]
        failed = [o.failed_at for o in outcomes]
        report.figure(  # type: ignore[attr-defined]
            f"median time to detect a 2x canary (2% vs 1%, min_effect worse), {name}",
            _median(failed),
            unit="s",
            note=f"{_detected(failed)} of {AT_MIN_EFFECT} detected within {MINUTES} min",
        )
        if name == "argo":
            continue
        wrongly = sum(o.passed_at is not None for o in outcomes)
        report.figure(  # type: ignore[attr-defined]
            f"2x canaries (2% vs 1%) passed as if min_effect were ruled out, {name}",
            100 * wrongly / AT_MIN_EFFECT,
            unit="%",
            max_value=100 * ALPHA,
            note=f"{wrongly} of {AT_MIN_EFFECT} passed",
        )


def _traffic(rng: random.Random, canary_rate: float) -> list[Look]:
    """One canary's errors per 10-s interval for 30 minutes (requests split by the weight)."""
    return [
        (_errors(rng, CANARY_PER_LOOK, canary_rate), _errors(rng, BASE_PER_LOOK, BASE_RATE))
        for _ in range(LOOKS)
    ]


def _errors(rng: random.Random, requests: int, rate: float) -> int:
    """A binomial draw by jumping from error to error (geometric gaps): cheap at small rates."""
    log_miss = math.log1p(-rate)
    count, position = 0, 0
    while True:
        position += int(math.log(1.0 - rng.random()) / log_miss) + 1
        if position > requests:
            return count
        count += 1


def _sequential(
    traffic: list[Look], watch: bool, evidence: Callable[[int, int, int, int], RateEvidence]
) -> Outcome:
    """Look every 10 s; stop at a fail, or at a pass unless watching the whole 30 minutes."""
    canary_errors = base_errors = 0
    passed_at: float | None = None
    for look, (canary, base) in enumerate(traffic, start=1):
        canary_errors += canary
        base_errors += base
        counts = (canary_errors, look * CANARY_PER_LOOK, base_errors, look * BASE_PER_LOOK)
        kind = evidence(*counts).decision(MIN_EFFECT).kind
        if kind is DecisionKind.FAILED:
            return Outcome(look * LOOK_S, passed_at)
        if kind is DecisionKind.PASSED and passed_at is None:
            passed_at = look * LOOK_S
            if not watch:
                return Outcome(None, passed_at)
    return Outcome(None, passed_at)


def _msprt(traffic: list[Look], watch: bool) -> Outcome:
    return _sequential(
        traffic,
        watch,
        lambda ce, cr, be, br: msprt_rates(ce, cr, be, br, alpha=ALPHA, tau=TAU),
    )


def _conditional(traffic: list[Look], watch: bool) -> Outcome:
    """The exact test; once it has passed, later looks leave out the request counts.

    Its fail does not depend on them (only its bounds do), and leaving them out spares the
    root-finding of the bounds at every look of the 30-minute watch.
    """
    passed = False

    def evidence(ce: int, cr: int, be: int, br: int) -> RateEvidence:
        nonlocal passed
        if passed:
            return conditional_errors(ce, be, WEIGHT, alpha=ALPHA)
        found = conditional_errors(
            ce, be, WEIGHT, alpha=ALPHA, canary_requests=cr, base_requests=br
        )
        passed = found.decision(MIN_EFFECT).kind is DecisionKind.PASSED
        return found

    return _sequential(traffic, watch, evidence)


def _argo(traffic: list[Look], watch: bool) -> Outcome:
    """Every 60 s, the canary's rate over the last 60 s against max, through AnalysisRun."""
    per_check = CHECK_S // LOOK_S
    threshold = Threshold(max=ARGO_MAX)
    analysis = AnalysisRun(failure_limit=FAILURE_LIMIT, inconclusive_limit=LOOKS)
    for check in range(1, len(traffic) // per_check + 1):
        window = traffic[(check - 1) * per_check : check * per_check]
        errors = sum(canary for canary, _ in window)
        requests = per_check * CANARY_PER_LOOK
        measured = Measurement.of(errors / requests, "simulation", requests=requests)
        analysis = analysis.after({"error_rate": judge("error_rate", threshold, measured)})
        if analysis.outcome is RunOutcome.FAIL:
            return Outcome(check * CHECK_S)
    return Outcome(None)


def _median(times: list[float | None]) -> float:
    """The median, counting a canary never decided as later than any decided one."""
    ordered = sorted(math.inf if t is None else t for t in times)
    return float(statistics.median_low(ordered))


def _detected(times: list[float | None]) -> int:
    return sum(t is not None for t in times)


def _deciles(times: list[float | None]) -> str:
    ordered = sorted(math.inf if t is None else t for t in times)
    tenth, ninetieth = ordered[len(ordered) // 10], ordered[len(ordered) * 9 // 10]
    return f"{tenth:g}-{ninetieth:g} s"


STABLE, CANARY = "0.1.0", "0.2.0"
LIVE_RATE = 100
"""Requests per second the load aims at, as in the simulation (it paces, it does not promise)."""
LIVE_STEP = "5m"
"""The canary step: longer than either judge takes, so that only a judge ends it."""
LIVE_CONFIG = """project: webapp
release:
  version_files: [VERSION]
service:
  command: python3 -m app --port {{port}}
  instances: 2
  health: {{http: /healthz, timeout: 15s, interval: 50ms}}
environments:
  live:
    strategy: {{canary: {{steps: [{{weight: {weight}, pause: {step}}}, {{weight: 100}}]}}}}
    env: {{APP_FAIL_RATE: '{fail_rate}'}}
    analysis:
      interval: {interval}s
      failure_limit: {failure_limit}
      judge: {{kind: {judge}, alpha: {alpha}, min_effect: {min_effect}, tau: {tau}}}
      metrics:
        - {{name: error_rate, provider: builtin, max: {max}}}
"""


@dataclass(frozen=True)
class LiveJudge:
    """One way of judging the live canary: the judge's kind and how often it looks."""

    label: str
    kind: str
    interval_s: int


ARGO_LIKE = LiveJudge(
    f"Argo-like: max {ARGO_MAX} every {CHECK_S} s, failure_limit {FAILURE_LIMIT}",
    "threshold",
    CHECK_S,
)
LIVE_SEQUENTIAL = (
    LiveJudge(f"sequential msprt, a look every {LOOK_S} s (as simulated)", "sequential", LOOK_S),
    LiveJudge("sequential msprt, a look every second", "sequential", 1),
)


@dataclass(frozen=True)
class Rollback:
    """A live canary's rollback: how long the canary had traffic, and what it served."""

    seconds: float
    """From the router's table that gave the canary traffic to the one that took it back."""
    looks: int
    requests: int
    """The canary's answers the load counted (it serves none once rolled back)."""
    errors: int
    """Of them, 500s."""
    connection_errors: int
    """Requests the load sent that got no answer at all (refused, reset...), any version."""
    command_s: float
    """The whole ``shipyard deploy`` process, start-up and verification included."""


def live(report: Any) -> None:
    """Deploy the same 5 % canary with each judge through the real router; report the times."""
    from shipyard.orchestrator.load import Load

    with tempfile.TemporaryDirectory(prefix="shipyard-bench-judge-") as tmp:
        repo = Path(tmp) / "repo"
        env = bench_env(Path(tmp))
        release_example_twice(repo, env, _live_config(ARGO_LIKE, BASE_RATE))
        try:
            shipyard(repo, env, "deploy", STABLE, "--env", "live")  # all at once: the first
            router = Router.of(repo, "webapp-live")
            url = "http://{}:{}/".format(*router.public)
            found: dict[LiveJudge, Rollback] = {}
            for way in (*LIVE_SEQUENTIAL, ARGO_LIKE):
                (repo / "shipyard.yaml").write_text(_live_config(way, BAD_RATE))
                with Load(url, workers=2, rate=LIVE_RATE) as load, RouteWatch(router) as watch:
                    found[way] = _rolled_back(repo, env, watch, load)
                print(f"[bench] live, {way.label}: {found[way]}", file=sys.stderr, flush=True)
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
    argo = found[ARGO_LIKE]
    setting = f"webapp 5% vs 1% errors, weight {WEIGHT:.0%}, ~{LIVE_RATE} req/s"
    for way in LIVE_SEQUENTIAL:
        mine = found[way]
        report.ratio(
            f"live: time to rollback of a 5x canary, {way.label} ({setting})",
            mine.seconds,
            argo.seconds,
            unit="s",
            baseline_name=ARGO_LIKE.label,
            max_ratio=1 / 3,
            note=f"router clock; {mine.looks} looks against {argo.looks}; whole deploy command "
            f"{mine.command_s:.0f} s against {argo.command_s:.0f} s",
        )
        report.ratio(
            f"live: the canary's answers before its rollback, {way.label}",
            mine.requests,
            argo.requests,
            unit="requests",
            baseline_name=ARGO_LIKE.label,
            note=f"500s among them: {mine.errors} against {argo.errors}; unanswered requests "
            f"(any version): {mine.connection_errors} against {argo.connection_errors}",
        )


def _live_config(way: LiveJudge, fail_rate: float) -> str:
    return LIVE_CONFIG.format(
        weight=round(WEIGHT * 100),
        step=LIVE_STEP,
        fail_rate=fail_rate,
        interval=way.interval_s,
        failure_limit=FAILURE_LIMIT,
        judge=way.kind,
        alpha=ALPHA,
        min_effect=MIN_EFFECT,
        tau=TAU,
        max=ARGO_MAX,
    )


def _rolled_back(repo: Path, env: dict[str, str], watch: RouteWatch, load: Any) -> Rollback:
    """Deploy the canary and wait for its rollback; RuntimeError if it ends any other way.

    ``load`` (``shipyard.orchestrator.load.Load``) runs meanwhile: it counts the canary's answers.
    """
    started = time.perf_counter()
    deployed = subprocess.run(
        [sys.executable, "-m", "shipyard", "deploy", CANARY, "--env", "live", "--json"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    command_s = time.perf_counter() - started
    _, listed = shipyard(repo, env, "deployments", "list", "--env", "live", "--json")
    newest = next(d for d in json.loads(listed) if d["version"] == CANARY)
    if deployed.returncode != 1 or newest["status"] != "rolled_back":
        raise RuntimeError(
            f"the canary was not rolled back (exit {deployed.returncode}, "
            f"{newest['status']}): {deployed.stdout}{deployed.stderr}"
        )
    _, shown = shipyard(repo, env, "analysis", "show", str(newest["id"]), "--json")
    looks = sum(len(metric["measurements"]) for metric in json.loads(shown)["metrics"])
    given = next(c for c in watch.changes if c.weights.get(CANARY, 0) > 0)
    taken = next(
        c for c in watch.changes if c.revision > given.revision and c.weights.get(CANARY, 0) == 0
    )
    return Rollback(
        seconds=taken.installed_at - given.installed_at,
        looks=looks,
        requests=load.count(version=CANARY),
        errors=load.count(version=CANARY, status=500),
        connection_errors=len(load.errors),
        command_s=command_s,
    )

"""``shipyard analysis show``: a deployment's measurements by metric, as text and as JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shipyard.cd import deployments
from shipyard.cd.settings import settings_for
from shipyard.core import measurements
from shipyard.core import state as state_dir
from shipyard.core.config import load_config_text
from shipyard.core.config.delivery import Judge
from shipyard.core.store import open_store
from shipyard.monitor.analysis import VerdictKind
from shipyard.monitor.providers import TrafficSnapshot, VersionTraffic
from shipyard.monitor.sequential import SequentialLook, judge_look
from support import run_cli

pytestmark = pytest.mark.backends

START = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)

Row = tuple[str, float | None, float | None, str, str, str, Mapping[str, float] | None]
"""One measurement: metric, value, stable value, threshold, verdict, reason, evidence."""


def _deployment(repo: Path, *, measured: bool) -> int:
    store = open_store(state_dir.locate(repo))
    try:
        created = deployments.create(
            store,
            project="web",
            environment="production",
            version="1.1.0",
            kind="deploy",
            strategy="canary",
            previous_version="1.0.0",
            settings={},
            actor="ada@example.com",
            on_busy="queue",
        )
        if measured:
            rows = [
                ("error_rate", 0.002, 0.001, "max 0.01", "pass", "error_rate 0.002 <= max 0.01"),
                ("latency_p95", None, 0.1, "max_increase 20%", "inconclusive", "no data (x)"),
                ("error_rate", 0.031, 0.001, "max 0.01", "fail", "error_rate 0.031 > max 0.01"),
            ]
            with store.write() as conn:
                for seconds, (metric, value, stable, threshold, verdict, reason) in enumerate(rows):
                    measurements.record(
                        conn,
                        deployment_id=created.id,
                        environment="production",
                        phase="step 1" if seconds < 2 else "step 2",
                        metric=metric,
                        version="1.1.0",
                        baseline_version="1.0.0",
                        value=value,
                        baseline_value=stable,
                        threshold=threshold,
                        verdict=verdict,
                        reason=reason,
                        measured_at=START + timedelta(seconds=10 * seconds),
                    )
        return created.id
    finally:
        store.dispose()


def test_show_lists_each_metrics_series_with_its_verdicts(repo: Path) -> None:
    deployment_id = _deployment(repo, measured=True)
    shown = run_cli("analysis", "show", str(deployment_id), cwd=repo)
    assert shown.code == 0, shown.output
    text = shown.stdout
    assert f"deployment {deployment_id}: web 1.1.0, stable 1.0.0 in production (canary," in text
    assert "error_rate: 1 pass, 1 fail" in text
    assert "latency_p95: 1 inconclusive" in text
    assert "error_rate 0.031 > max 0.01" in text
    assert "2026-12-03 12:00:20 UTC" in text
    assert "no data" in text
    assert text.index("error_rate:") < text.index("latency_p95:")

    as_json = run_cli("analysis", "show", str(deployment_id), "--json", cwd=repo)
    assert as_json.code == 0, as_json.output
    report = json.loads(as_json.stdout)
    assert report["deployment"]["id"] == deployment_id
    assert report["deployment"]["previous_version"] == "1.0.0"
    by_metric = {entry["metric"]: entry["measurements"] for entry in report["metrics"]}
    assert [(m["phase"], m["value"], m["verdict"]) for m in by_metric["error_rate"]] == [
        ("step 1", 0.002, "pass"),
        ("step 2", 0.031, "fail"),
    ]
    [inconclusive] = by_metric["latency_p95"]
    assert inconclusive["value"] is None
    assert inconclusive["baseline_value"] == 0.1
    assert inconclusive["threshold"] == "max_increase 20%"
    assert inconclusive["measured_at"] == "2026-12-03T12:00:10+00:00"


def test_a_deployment_without_measurements_says_so(repo: Path) -> None:
    deployment_id = _deployment(repo, measured=False)
    shown = run_cli("analysis", "show", str(deployment_id), cwd=repo)
    assert shown.code == 0, shown.output
    assert f"deployment {deployment_id} has no measurements" in shown.stdout
    as_json = run_cli("analysis", "show", str(deployment_id), "--json", cwd=repo)
    assert json.loads(as_json.stdout)["metrics"] == []


def test_an_unknown_deployment_is_a_users_mistake(repo: Path) -> None:
    shown = run_cli("analysis", "show", "42", cwd=repo)
    assert shown.code == 2
    assert "there is no deployment 42" in shown.output
    assert "Traceback" not in shown.output


SEQUENTIAL_CONFIG = """\
project: web
service: {command: 'python -m app --port {port}'}
environments:
  production:
    strategy: {canary: {steps: [{weight: 10, pause: 1m}, {weight: 50, pause: 1m}]}}
    analysis:
      judge: {kind: sequential, alpha: 0.02, pass_score: 90, marginal_score: 50}
      metrics:
        - {name: error_rate, provider: builtin, max: 0.01}
        - {name: latency_p95, provider: builtin, max_increase: 20%}
        - {name: request_rate, provider: builtin, min: 1}
    watch: 5m
"""


def _sequential_deployment(repo: Path, analysis_section: dict[str, Any] | None = None) -> int:
    """A canary recorded as the sequential judge records it: real evidence, three phases."""
    settings = settings_for(load_config_text(SEQUENTIAL_CONFIG), "production")
    if analysis_section is not None:
        settings = replace(settings, analysis=analysis_section)
    judge = Judge(kind="sequential", alpha=0.02)
    bad_errors = TrafficSnapshot(
        {
            "1.1.0": VersionTraffic(1000, {"2xx": 949, "5xx": 51}),
            "1.0.0": VersionTraffic(9000, {"2xx": 8910, "5xx": 90}),
        }
    )
    few = TrafficSnapshot(
        {"1.1.0": VersionTraffic(20, {"2xx": 20}), "1.0.0": VersionTraffic(180, {"2xx": 180})}
    )
    slow = TrafficSnapshot(
        {
            "1.1.0": VersionTraffic(80, {"2xx": 80}, tuple(0.2 + i / 1000 for i in range(80))),
            "1.0.0": VersionTraffic(800, {"2xx": 800}, tuple(0.1 + i / 10000 for i in range(800))),
        }
    )
    compared = {"version": "1.1.0", "baseline": "1.0.0"}
    failed = judge_look(judge, "error_rate", bad_errors, earlier=[], last=False, **compared)
    still_looking = judge_look(judge, "error_rate", few, earlier=[], last=False, **compared)
    slower = judge_look(judge, "latency_p95", slow, earlier=[], last=False, **compared)
    no_latency = judge_look(judge, "latency_p95", few, earlier=[], last=False, **compared)
    assert failed.verdict.kind is VerdictKind.FAILED
    assert still_looking.verdict.kind is VerdictKind.UNDECIDED
    assert slower.verdict.kind is VerdictKind.FAILED
    assert no_latency.verdict.kind is VerdictKind.INCONCLUSIVE

    def row(metric: str, judged: SequentialLook | None, verdict: str = "", reason: str = "") -> Row:
        if judged is None:
            return (metric, 2.0, None, "min 1", verdict, reason, None)
        return (
            metric,
            judged.canary_value,
            judged.baseline_value,
            "max 0.01" if metric == "error_rate" else "max_increase 20%",
            judged.verdict.kind.value,
            judged.verdict.reason,
            judged.evidence,
        )

    looks: list[tuple[str, list[Row]]] = [
        # step 1, first look: still undecided; last look: 1 of 2 decided metrics passed
        ("step 1", [row("error_rate", still_looking), row("latency_p95", no_latency)]),
        (
            "step 1",
            [
                row("error_rate", failed),
                row("latency_p95", slower),
                row("request_rate", None, "pass", "request_rate 2 >= min 1"),
            ],
        ),
        # step 2: nothing decided at its only look
        ("step 2", [row("error_rate", still_looking), row("latency_p95", no_latency)]),
        ("watch", [row("request_rate", None, "pass", "request_rate 2 >= min 1")]),
    ]
    store = open_store(state_dir.locate(repo))
    try:
        created = deployments.create(
            store,
            project="web",
            environment="production",
            version="1.1.0",
            kind="deploy",
            strategy="canary",
            previous_version="1.0.0",
            settings={"deploy": settings.as_json()},
            actor="ada@example.com",
            on_busy="queue",
        )
        with store.write() as conn:
            for index, (phase, rows) in enumerate(looks):
                for metric, value, stable, threshold, verdict, reason, evidence in rows:
                    measurements.record(
                        conn,
                        deployment_id=created.id,
                        environment="production",
                        phase=phase,
                        metric=metric,
                        version="1.1.0",
                        baseline_version=None if evidence is None else "1.0.0",
                        value=value,
                        baseline_value=stable,
                        threshold=threshold,
                        verdict=verdict,
                        reason=reason,
                        measured_at=START + timedelta(seconds=10 * index),
                        evidence=evidence,
                    )
        return created.id
    finally:
        store.dispose()


def test_show_scores_each_phases_last_look_with_the_recorded_limits(repo: Path) -> None:
    deployment_id = _sequential_deployment(repo)
    shown = run_cli("analysis", "show", str(deployment_id), cwd=repo)
    assert shown.code == 0, shown.output
    text = shown.stdout
    assert "judge: sequential while canary and stable both serve" in text
    assert "alpha 0.02 for each metric in each step" in text
    assert (
        "step 1 (last look 2026-12-03 12:00:10 UTC): score 33 (fail, below 50): 1 of 3 metrics "
        "passed; failed: error_rate, latency_p95"
    ) in text
    assert (
        "step 2 (last look 2026-12-03 12:00:20 UTC): no data: no metric passed or failed; "
        "inconclusive, not counted: latency_p95; undecided, not counted: error_rate"
    ) in text
    assert "watch (last look 2026-12-03 12:00:30 UTC): score 100 (pass, at least 90)" in text
    assert "error_rate: 1 fail, 2 undecided" in text
    assert "latency_p95: 1 fail, 2 inconclusive" in text
    assert "likelihood ratio" in text  # the verdict's reason says why
    assert "(fails at 50)" not in text  # the evidence column only with --evidence


def test_show_json_has_the_judge_the_scores_and_every_number(repo: Path) -> None:
    deployment_id = _sequential_deployment(repo)
    shown = run_cli("analysis", "show", str(deployment_id), "--json", cwd=repo)
    assert shown.code == 0, shown.output
    report = json.loads(shown.stdout)
    assert report["judge"]["kind"] == "sequential"
    assert (report["judge"]["alpha"], report["judge"]["pass_score"]) == (0.02, 90)
    by_phase = {entry["phase"]: entry for entry in report["scores"]}
    assert list(by_phase) == ["step 1", "step 2", "watch"]
    step_1 = by_phase["step 1"]
    assert step_1["score"] == pytest.approx(100 / 3)
    assert (step_1["label"], step_1["pass_score"], step_1["marginal_score"]) == ("fail", 90, 50)
    assert (step_1["passed"], step_1["failed"]) == (["request_rate"], ["error_rate", "latency_p95"])
    assert step_1["last_look"] == "2026-12-03T12:00:10+00:00"
    step_2 = by_phase["step 2"]
    assert (step_2["score"], step_2["label"]) == (None, "no data")
    assert (step_2["undecided"], step_2["inconclusive"]) == (["error_rate"], ["latency_p95"])
    assert (by_phase["watch"]["score"], by_phase["watch"]["label"]) == (100, "pass")
    by_metric = {entry["metric"]: entry["measurements"] for entry in report["metrics"]}
    decided = by_metric["error_rate"][1]["evidence"]
    assert (decided["canary_errors"], decided["canary_requests"]) == (51, 1000)
    assert (decided["base_errors"], decided["base_requests"]) == (90, 9000)
    assert decided["likelihood_ratio"] >= decided["threshold"] == pytest.approx(50)
    assert {"lower", "upper", "min_effect", "alpha"} <= set(decided)
    assert {"p", "alpha_look", "u", "z", "look"} <= set(by_metric["latency_p95"][1]["evidence"])


def test_evidence_shows_the_numbers_behind_sequential_verdicts(repo: Path) -> None:
    deployment_id = _sequential_deployment(repo)
    shown = run_cli("analysis", "show", str(deployment_id), "--evidence", cwd=repo)
    assert shown.code == 0, shown.output
    text = shown.stdout
    assert "EVIDENCE" in text
    assert "step so far: canary 51/1000 errors, stable 90/9000" in text
    assert "this look: canary 51/1000, stable 90/9000" in text
    assert "(fails at 50)" in text
    assert "canary - stable 0.041, within [" in text
    assert "look 1; p " in text
    assert "samples canary 80, stable 800" in text
    request_rate_rows = [line for line in text.splitlines() if "request_rate 2 >= min 1" in line]
    assert request_rate_rows and request_rate_rows[0].rstrip().endswith(" -")


def test_scores_without_a_readable_recorded_analysis_use_the_default_limits(repo: Path) -> None:
    broken = {"metrics": [{"name": "error_rate", "provider": "builtin", "max": 0.01}]}
    broken["judge"] = {"kind": "bayesian"}
    deployment_id = _sequential_deployment(repo, analysis_section=broken)
    shown = run_cli("analysis", "show", str(deployment_id), cwd=repo)
    assert shown.code == 0, shown.output
    assert "the analysis recorded with the deployment is not valid: judge.kind" in shown.stderr
    assert "default pass and marginal scores" in shown.stderr
    assert "watch (last look 2026-12-03 12:00:30 UTC): score 100 (pass, at least 95)" in (
        shown.stdout
    )
    assert "Traceback" not in shown.output

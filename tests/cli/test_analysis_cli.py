"""``shipyard analysis show``: a deployment's measurements by metric, as text and as JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shipyard.cd import deployments
from shipyard.core import measurements
from shipyard.core import state as state_dir
from shipyard.core.store import open_store
from support import run_cli

pytestmark = pytest.mark.backends

START = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


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

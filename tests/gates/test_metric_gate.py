"""Metric gates for model releases: a number in a release's artifact, its bounds, and no
regression against the release the environment runs.

Artifacts are read through the context's reader, here a table of (version, path) → bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from shipyard.core.config import ConfigInvalid, load_config_text
from shipyard.core.errors import NotFoundError
from shipyard.gates import GateContext, GateError, Status, run_gates
from shipyard.gates.metrics import (
    ABOVE_MAX,
    BELOW_MIN,
    NOT_COMPARED,
    PASSED,
    REGRESSED,
    UNREADABLE,
    MetricsGate,
)

ACCURACY = "[{name: accuracy, file: eval.json, path: accuracy, min: 0.9, no_regression: 0.01}]"


def evaluation(**values: Any) -> bytes:
    return json.dumps(values).encode()


def reader(
    artifacts: dict[tuple[str, str], bytes],
) -> Callable[[str, str], bytes | None]:
    def read(version: str, path: str) -> bytes | None:
        return artifacts.get((version, path))

    return read


def context(
    workspace: Path,
    state_root: Path,
    artifacts: dict[tuple[str, str], bytes],
    *,
    metrics: str = ACCURACY,
    version: str = "2.0.0",
    running: str | None = "1.0.0",
) -> GateContext:
    config = load_config_text(f"project: models\ngates:\n  metrics: {metrics}\n")
    return GateContext(
        workspace=workspace,
        config=config,
        state_root=state_root,
        release=version,
        environment="production",
        release_record={"project": "models", "version": version},
        running={"project": "models", "version": running} if running is not None else None,
        read_artifact=reader(artifacts),
    )


def judge(context: GateContext) -> Any:
    return MetricsGate.for_context(context).judge(context)


def test_a_model_that_regresses_beyond_no_regression_is_refused_and_a_better_one_passes(
    workspace: Path, state_root: Path
) -> None:
    artifacts = {
        ("1.0.0", "eval.json"): evaluation(accuracy=0.95),
        ("2.0.0", "eval.json"): evaluation(accuracy=0.93),
        ("2.1.0", "eval.json"): evaluation(accuracy=0.96),
    }
    worse = judge(context(workspace, state_root, artifacts, version="2.0.0"))
    assert worse.status is Status.FAIL
    [finding] = worse.findings
    assert finding.id == REGRESSED
    assert finding.blocking
    assert finding.message == (
        "accuracy: 0.93 (1.0.0 runs 0.95): regressed by 0.02, more than no_regression 0.01"
    )
    assert finding.details["value"] == 0.93
    assert finding.details["running_value"] == 0.95
    assert finding.details["running_version"] == "1.0.0"
    assert finding.details["verdict"] == "fail"
    assert "accuracy 0.93 (1.0.0 runs 0.95)" in worse.summary
    better = judge(context(workspace, state_root, artifacts, version="2.1.0"))
    assert better.status is Status.PASS
    [finding] = better.findings
    assert (finding.id, finding.blocking) == (PASSED, False)
    assert (finding.details["value"], finding.details["running_value"]) == (0.96, 0.95)
    assert better.summary == "accuracy 0.96 (1.0.0 runs 0.95): ok"


def test_a_regression_of_exactly_no_regression_passes(workspace: Path, state_root: Path) -> None:
    # 0.93 - 0.92 is 0.010000000000000009 in floating point: still exactly the allowance.
    artifacts = {
        ("1.0.0", "eval.json"): evaluation(accuracy=0.93),
        ("2.0.0", "eval.json"): evaluation(accuracy=0.92),
    }
    assert judge(context(workspace, state_root, artifacts)).status is Status.PASS
    artifacts[("2.0.0", "eval.json")] = evaluation(accuracy=0.9199)
    assert judge(context(workspace, state_root, artifacts)).status is Status.FAIL


def test_bounds_fail_on_their_own(workspace: Path, state_root: Path) -> None:
    metrics = (
        "[{name: accuracy, file: eval.json, path: scores.accuracy, min: 0.9},"
        " {name: latency_ms, file: eval.json, path: 'latency[1]', max: 50}]"
    )
    artifacts = {("2.0.0", "eval.json"): evaluation(scores={"accuracy": 0.85}, latency=[10, 70])}
    verdict = judge(context(workspace, state_root, artifacts, metrics=metrics, running=None))
    assert verdict.status is Status.FAIL
    assert [(f.id, f.message) for f in verdict.findings] == [
        (BELOW_MIN, "accuracy: 0.85: below min 0.9"),
        (ABOVE_MAX, "latency_ms: 70: above max 50"),
    ]


def test_lower_is_better_when_only_max_is_set_or_better_says_so(
    workspace: Path, state_root: Path
) -> None:
    artifacts = {
        ("1.0.0", "eval.json"): evaluation(loss=0.20),
        ("2.0.0", "eval.json"): evaluation(loss=0.25),
    }
    by_max = "[{name: loss, file: eval.json, path: loss, max: 1, no_regression: 0.01}]"
    [finding] = judge(context(workspace, state_root, artifacts, metrics=by_max)).findings
    assert finding.id == REGRESSED
    assert finding.details["better"] == "lower"
    said = "[{name: loss, file: eval.json, path: loss, no_regression: 0.01, better: lower}]"
    assert judge(context(workspace, state_root, artifacts, metrics=said)).status is Status.FAIL
    higher = "[{name: loss, file: eval.json, path: loss, no_regression: 0.01}]"
    assert judge(context(workspace, state_root, artifacts, metrics=higher)).status is Status.PASS


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "2.0.0 has no artifact eval.json"),
        (b"{not json", "2.0.0's eval.json is not JSON"),
        (evaluation(acc=0.9), "2.0.0's eval.json has no key 'accuracy' in $"),
        (evaluation(accuracy="0.95"), 'has the string "0.95" at accuracy, not a number'),
        (evaluation(accuracy=True), "has the boolean true at accuracy, not a number"),
        (b'{"accuracy": NaN}', "has nan at accuracy, not a finite number"),
    ],
)
def test_a_metric_the_release_does_not_give_fails_with_the_reason(
    workspace: Path, state_root: Path, content: bytes | None, reason: str
) -> None:
    artifacts = {("1.0.0", "eval.json"): evaluation(accuracy=0.95)}
    if content is not None:
        artifacts[("2.0.0", "eval.json")] = content
    verdict = judge(context(workspace, state_root, artifacts))
    assert verdict.status is Status.FAIL
    [finding] = verdict.findings
    assert finding.id == UNREADABLE
    assert reason in finding.message
    assert finding.details["value"] is None
    assert finding.details["running_value"] == 0.95


def test_a_running_release_without_the_metric_is_not_compared_and_warns(
    workspace: Path, state_root: Path
) -> None:
    artifacts = {("2.0.0", "eval.json"): evaluation(accuracy=0.95)}
    verdict = judge(context(workspace, state_root, artifacts))
    assert verdict.status is Status.WARN
    [finding] = verdict.findings
    assert (finding.id, finding.blocking) == (NOT_COMPARED, False)
    assert "not compared with 1.0.0: 1.0.0 has no artifact eval.json" in finding.message


def test_the_first_deployment_has_nothing_to_compare_with(
    workspace: Path, state_root: Path
) -> None:
    artifacts = {("2.0.0", "eval.json"): evaluation(accuracy=0.95)}
    verdict = judge(context(workspace, state_root, artifacts, running=None))
    assert verdict.status is Status.PASS
    [finding] = verdict.findings
    assert finding.details["running_version"] is None
    assert "no release runs in production yet" in finding.message


def test_an_unreadable_artifact_store_fails_the_metric_closed(
    workspace: Path, state_root: Path
) -> None:
    def broken(version: str, path: str) -> bytes | None:
        raise NotFoundError(f"the blob of {path} is missing")

    ctx = replace(context(workspace, state_root, {}), read_artifact=broken)
    [finding] = judge(ctx).findings
    assert finding.id == UNREADABLE
    assert "cannot be read: the blob of eval.json is missing" in finding.message


def test_the_check_needs_a_deployment_and_fails_closed_through_the_runner(
    workspace: Path, state_root: Path
) -> None:
    config = load_config_text(f"project: models\ngates:\n  metrics: {ACCURACY}\n")
    scan = GateContext(workspace=workspace, config=config, state_root=state_root)
    with pytest.raises(GateError, match="judges a deployment"):
        judge(scan)
    [result] = run_gates(scan, ["metrics"])
    assert result.status is Status.FAIL


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[{name: Accuracy, file: e.json, path: a}]", "is not a metric name"),
        ("[{name: a, file: /e.json, path: a}]", "must be a path inside the project's folder"),
        ("[{name: a, file: e.json, path: 'a..b'}]", "is not a value path"),
        ("[{name: a, file: e.json, path: 'a[x]'}]", "expected an index like [0]"),
        ("[{name: a, file: e.json, path: a, min: high}]", "expected a number"),
        ("[{name: a, file: e.json, path: a, min: true}]", "expected a number"),
        ("[{name: a, file: e.json, path: a, min: 2, max: 1}]", "min 2 is above max 1"),
        ("[{name: a, file: e.json, path: a, no_regression: -0.1}]", "greater than or equal to 0"),
        ("[{name: a, file: e.json, path: a, better: more}]", "better"),
        ("[{name: a, file: e.json, path: a}, {name: a, file: f.json, path: b}]", "named twice"),
        ("[{name: a, file: e.json, path: a, treshold: 1}]", "unknown key 'treshold'"),
    ],
)
def test_metric_settings_mistakes_are_named_at_their_line(text: str, problem: str) -> None:
    with pytest.raises(ConfigInvalid) as raised:
        load_config_text(f"project: models\ngates:\n  metrics: {text}\n")
    assert "shipyard.yaml:3" in str(raised.value)
    assert problem in str(raised.value)


def test_the_design_example_reads_as_written() -> None:
    config = load_config_text(f"project: models\ngates:\n  metrics: {ACCURACY}\n")
    assert config.gates is not None and config.gates.metrics is not None
    [metric] = config.gates.metrics
    assert (metric.name, metric.file, metric.path, metric.min, metric.max) == (
        "accuracy",
        "eval.json",
        "accuracy",
        0.9,
        None,
    )
    assert metric.no_regression == 0.01
    assert metric.higher_is_better

"""The Kayenta-like score: passed metrics out of decided ones, inconclusive ones listed apart."""

from __future__ import annotations

import pytest

from shipyard.monitor.statistics import (
    BadStatisticInput,
    Decision,
    DecisionKind,
    ScoreLabel,
    score,
)

PASSED = Decision(DecisionKind.PASSED, "fine")
FAILED = Decision(DecisionKind.FAILED, "worse")
UNKNOWN = Decision(DecisionKind.INCONCLUSIVE, "no data")


def test_all_passed_is_a_score_of_100() -> None:
    result = score({"error_rate": PASSED, "latency": PASSED})
    assert result.value == 100
    assert result.label is ScoreLabel.PASSED
    assert result.describe() == "score 100 (pass, at least 95): 2 of 2 metrics passed"


def test_a_failed_metric_weighs_fully_and_inconclusive_ones_are_listed_not_counted() -> None:
    decisions = {
        "error_rate": PASSED,
        "latency": FAILED,
        "cpu": UNKNOWN,
        "memory": PASSED,
        "disk": PASSED,
    }
    result = score(decisions)
    assert result.value == 75
    assert result.label is ScoreLabel.MARGINAL
    assert result.failed == ("latency",)
    assert result.inconclusive == ("cpu",)
    assert result.describe() == (
        "score 75 (marginal, at least 75 but below 95): 3 of 4 metrics passed; "
        "failed: latency; inconclusive, not counted: cpu"
    )


def test_a_score_below_marginal_fails() -> None:
    result = score({"error_rate": PASSED, "latency": FAILED})
    assert result.value == 50
    assert result.label is ScoreLabel.FAILED
    assert result.describe().startswith("score 50 (fail, below 75): 1 of 2 metrics passed")


def test_only_inconclusive_metrics_is_no_data_never_a_pass() -> None:
    result = score({"error_rate": UNKNOWN})
    assert result.value is None
    assert result.label is ScoreLabel.NO_DATA
    assert result.describe() == (
        "no score: no metric passed or failed; inconclusive, not counted: error_rate"
    )
    assert score({}).label is ScoreLabel.NO_DATA


def test_the_limits_can_be_set() -> None:
    result = score({"a": PASSED, "b": PASSED, "c": PASSED, "d": FAILED}, pass_at=70, marginal_at=50)
    assert result.label is ScoreLabel.PASSED


def test_limits_out_of_order_are_a_clear_error() -> None:
    with pytest.raises(BadStatisticInput, match="marginal_at 96 and pass_at 95") as raised:
        score({"a": PASSED}, pass_at=95, marginal_at=96)
    assert raised.value.hint


def test_a_decision_keeps_its_evidence_read_only() -> None:
    decision = Decision(DecisionKind.FAILED, "worse", {"p": 0.001})
    with pytest.raises(TypeError):
        decision.evidence["p"] = 1.0  # type: ignore[index]
    assert Decision("fail", "from a stored value").kind is DecisionKind.FAILED  # type: ignore[arg-type]

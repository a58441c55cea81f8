"""The threshold judge explains each verdict in numbers; the run fails, pauses or goes on."""

from __future__ import annotations

import pytest

from shipyard.core.config.delivery import Analysis, AnalysisMetric
from shipyard.monitor.analysis import (
    AnalysisRun,
    RunOutcome,
    Threshold,
    Verdict,
    VerdictKind,
    judge,
)
from shipyard.monitor.providers.interface import Measurement

PASS, FAIL, INCONCLUSIVE = VerdictKind.PASSED, VerdictKind.FAILED, VerdictKind.INCONCLUSIVE


def seen(value: float, requests: int | None = None) -> Measurement:
    return Measurement.of(value, "router", requests=requests)


def test_a_value_above_max_fails_with_the_numbers() -> None:
    verdict = judge("error_rate", Threshold(max=0.01), seen(0.031))
    assert verdict == Verdict(FAIL, "error_rate 0.031 > max 0.01")


def test_a_value_within_max_and_min_passes_and_says_so() -> None:
    verdict = judge("score", Threshold(max=1.0, min=0.9), seen(0.95))
    assert verdict == Verdict(PASS, "score 0.95 <= max 1; score 0.95 >= min 0.9")


def test_a_value_below_min_fails() -> None:
    assert judge("score", Threshold(min=0.9), seen(0.5)).reason == "score 0.5 < min 0.9"


def test_no_data_is_inconclusive_never_a_pass() -> None:
    verdict = judge("error_rate", Threshold(max=0.01), Measurement.no_data("no requests", "router"))
    assert verdict == Verdict(INCONCLUSIVE, "error_rate: no data (no requests) from router")


def test_too_few_requests_is_inconclusive() -> None:
    verdict = judge("error_rate", Threshold(max=0.01, min_requests=50), seen(0.0, requests=12))
    assert verdict == Verdict(INCONCLUSIVE, "error_rate: 12 requests < min_requests 50")
    enough = judge("error_rate", Threshold(max=0.01, min_requests=50), seen(0.0, requests=50))
    assert enough.kind is PASS


def test_max_increase_compares_with_the_stable_version() -> None:
    rule = Threshold(max_increase=0.2)
    worse = judge("latency_p95", rule, seen(0.15), seen(0.1))
    assert worse == Verdict(FAIL, "latency_p95 0.15 > limit 0.12 (stable 0.1 + 20%)")
    within = judge("latency_p95", rule, seen(0.12), seen(0.1))
    assert within == Verdict(PASS, "latency_p95 0.12 <= limit 0.12 (stable 0.1 + 20%)")


def test_max_increase_without_a_stable_value_is_inconclusive() -> None:
    rule = Threshold(max_increase=0.2)
    alone = judge("latency_p95", rule, seen(0.1))
    assert alone.kind is INCONCLUSIVE
    assert alone.reason == "latency_p95: the stable version's value is unknown: no baseline"
    empty = judge("latency_p95", rule, seen(0.1), Measurement.no_data("no series", "prometheus"))
    assert empty.kind is INCONCLUSIVE
    assert "no data (no series)" in empty.reason


def test_a_failed_limit_outweighs_an_unknown_baseline() -> None:
    verdict = judge("latency_p95", Threshold(max=0.5, max_increase=0.2), seen(0.9))
    assert verdict == Verdict(FAIL, "latency_p95 0.9 > max 0.5")


def test_a_zero_baseline_allows_no_increase() -> None:
    verdict = judge("error_rate", Threshold(max_increase=0.5), seen(0.01), seen(0.0))
    assert verdict.kind is FAIL


def test_a_threshold_from_the_config_describes_itself() -> None:
    metric = AnalysisMetric.model_validate(
        {"name": "latency_p95", "provider": "builtin", "max": 0.3, "max_increase": "20%"}
    )
    threshold = Threshold.of(metric)
    assert threshold.describe() == "max 0.3, max_increase 20%"
    with pytest.raises(ValueError, match="needs max, min or max_increase"):
        Threshold()


def run(failure_limit: int = 2, inconclusive_limit: int = 3) -> AnalysisRun:
    return AnalysisRun.start(
        Analysis.model_validate(
            {
                "failure_limit": failure_limit,
                "inconclusive_limit": inconclusive_limit,
                "metrics": [{"name": "error_rate", "provider": "builtin", "max": 1}],
            }
        )
    )


def interval(**kinds: VerdictKind) -> dict[str, Verdict]:
    return {metric: Verdict(kind, f"{metric} was {kind}") for metric, kind in kinds.items()}


def test_failures_beyond_the_limit_in_a_row_fail_the_run() -> None:
    state = run(failure_limit=2).replay([interval(e=FAIL), interval(e=FAIL)])
    assert state.outcome is RunOutcome.CONTINUE
    state = state.after(interval(e=FAIL))
    assert state.outcome is RunOutcome.FAIL
    assert state.reason == "e failed 3 times in a row (failure_limit 2): e was fail"


def test_a_pass_ends_a_row_of_failures() -> None:
    state = run(failure_limit=1).replay(
        [interval(e=FAIL), interval(e=PASS), interval(e=FAIL), interval(e=PASS)]
    )
    assert state.outcome is RunOutcome.CONTINUE


def test_no_data_between_failures_does_not_excuse_them() -> None:
    state = run(failure_limit=1).replay(
        [interval(e=FAIL), interval(e=INCONCLUSIVE), interval(e=FAIL)]
    )
    assert state.outcome is RunOutcome.FAIL


def test_failure_limit_zero_fails_at_the_first_failure() -> None:
    state = run(failure_limit=0).after(interval(e=PASS, p=FAIL))
    assert state.outcome is RunOutcome.FAIL
    assert state.reason.startswith("p failed once in a row (failure_limit 0)")


def test_each_metric_has_its_own_row() -> None:
    state = run(failure_limit=1).replay(
        [interval(a=FAIL, b=PASS), interval(a=PASS, b=FAIL), interval(a=FAIL, b=PASS)]
    )
    assert state.outcome is RunOutcome.CONTINUE


def test_inconclusive_beyond_the_limit_pauses_for_a_person_and_resume_starts_again() -> None:
    state = run(inconclusive_limit=2).replay([interval(e=INCONCLUSIVE)] * 2)
    assert state.outcome is RunOutcome.CONTINUE
    state = state.after(interval(e=INCONCLUSIVE))
    assert state.outcome is RunOutcome.PAUSE
    assert state.reason.startswith("e was inconclusive 3 times in a row (inconclusive_limit 2)")
    assert state.after(interval(e=PASS)) is state  # a decided run stays decided
    resumed = state.resumed()
    assert resumed.outcome is RunOutcome.CONTINUE
    assert resumed.after(interval(e=INCONCLUSIVE)).outcome is RunOutcome.CONTINUE


def test_a_failure_ends_a_row_of_inconclusive_verdicts() -> None:
    state = run(failure_limit=5, inconclusive_limit=1).replay(
        [interval(e=INCONCLUSIVE), interval(e=FAIL), interval(e=INCONCLUSIVE)]
    )
    assert state.outcome is RunOutcome.CONTINUE


def test_a_failure_outweighs_a_pause_in_the_same_interval() -> None:
    state = run(failure_limit=0, inconclusive_limit=0).after(interval(a=INCONCLUSIVE, b=FAIL))
    assert state.outcome is RunOutcome.FAIL


def test_verdicts_are_the_ones_the_store_accepts() -> None:
    from shipyard.core.measurements import VERDICT_NAMES

    assert sorted(kind.value for kind in VerdictKind) == sorted(VERDICT_NAMES)

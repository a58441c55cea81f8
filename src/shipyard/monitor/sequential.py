"""The sequential judge: canary against stable, statistically, look after look.

Where the canary and the stable version serve at the same time (a canary step), the builtin
``error_rate`` is judged by an always-valid sequential test on the counts since the step began
(``statistics.rates``), and the latency metrics by a one-sided Mann-Whitney test of each look's
latency samples with an alpha budget across looks (``statistics.ranks``). A look fails on strong
evidence, passes once the effect configured is ruled out, and is otherwise ``undecided``: the
analysis keeps looking, and only the step's last look turns an undecided test into an
inconclusive verdict. Each verdict keeps its numbers (``evidence``) so that a driver taking
over sums the counts of the looks before it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shipyard.core.config.delivery import SEQUENTIAL_METRICS, Judge
from shipyard.monitor.analysis import Verdict, VerdictKind
from shipyard.monitor.providers.builtin import LATENCY_QUANTILES, quantile
from shipyard.monitor.providers.traffic import TrafficSnapshot
from shipyard.monitor.statistics import (
    Decision,
    DecisionKind,
    conditional_errors,
    latency_decision,
    msprt_rates,
)

_WINDOW_KEYS = (
    "window_canary_errors",
    "window_canary_requests",
    "window_base_errors",
    "window_base_requests",
)


@dataclass(frozen=True)
class SequentialLook:
    """A sequential verdict with the values shown beside it and the numbers behind it."""

    verdict: Verdict
    canary_value: float | None
    baseline_value: float | None
    evidence: Mapping[str, float]


def applies(judge: Judge, provider: str, metric: str) -> bool:
    """Whether the sequential judge (rather than the thresholds) judges this metric."""
    return judge.kind == "sequential" and provider == "builtin" and metric in SEQUENTIAL_METRICS


def judge_look(
    judge: Judge,
    metric: str,
    window: TrafficSnapshot,
    *,
    version: str,
    baseline: str,
    earlier: Sequence[Mapping[str, float]],
    last: bool,
) -> SequentialLook:
    """Judge ``metric`` of ``version`` against ``baseline`` at this look of a step.

    ``earlier`` holds the evidence of the step's looks before this one (oldest first);
    ``last`` says this is the step's last look, where undecided becomes inconclusive.
    """
    if metric == "error_rate":
        found = _error_rate(judge, window, version, baseline, earlier)
    else:
        found = _latency(judge, metric, window, version, baseline, look=len(earlier) + 1)
    if found.verdict.kind is VerdictKind.UNDECIDED and last:
        why = f"{found.verdict.reason}; the step ended before the evidence decided"
        return SequentialLook(
            Verdict(VerdictKind.INCONCLUSIVE, why),
            found.canary_value,
            found.baseline_value,
            found.evidence,
        )
    return found


def _error_rate(
    judge: Judge,
    window: TrafficSnapshot,
    version: str,
    baseline: str,
    earlier: Sequence[Mapping[str, float]],
) -> SequentialLook:
    canary, base = window.versions.get(version), window.versions.get(baseline)
    now = {
        "window_canary_errors": canary.count("5xx") if canary else 0,
        "window_canary_requests": canary.requests if canary else 0,
        "window_base_errors": base.count("5xx") if base else 0,
        "window_base_requests": base.requests if base else 0,
    }
    total = {key: int(now[key] + sum(e.get(key, 0) for e in earlier)) for key in _WINDOW_KEYS}
    c_errors, c_requests = total["window_canary_errors"], total["window_canary_requests"]
    b_errors, b_requests = total["window_base_errors"], total["window_base_requests"]
    canary_rate = c_errors / c_requests if c_requests else None
    base_rate = b_errors / b_requests if b_requests else None
    if not c_requests or not b_requests:
        missing = version if not c_requests else baseline
        return SequentialLook(
            Verdict(
                VerdictKind.INCONCLUSIVE,
                f"error_rate: no data (no requests to version {missing} in this step yet)",
            ),
            canary_rate,
            base_rate,
            dict(now),
        )
    if judge.test == "conditional":
        share = c_requests / (c_requests + b_requests)
        evidence = conditional_errors(
            c_errors,
            b_errors,
            share,
            alpha=judge.alpha,
            canary_requests=c_requests,
            base_requests=b_requests,
        )
    else:
        evidence = msprt_rates(
            c_errors, c_requests, b_errors, b_requests, alpha=judge.alpha, tau=judge.tau
        )
    decision = evidence.decision(judge.min_effect)
    return SequentialLook(
        _verdict("error_rate", decision, f"{evidence.test} test"),
        canary_rate,
        base_rate,
        {**now, **decision.evidence},
    )


def _latency(
    judge: Judge, metric: str, window: TrafficSnapshot, version: str, baseline: str, *, look: int
) -> SequentialLook:
    canary, base = window.versions.get(version), window.versions.get(baseline)
    canary_sample = canary.latencies if canary else ()
    base_sample = base.latencies if base else ()
    q = LATENCY_QUANTILES[metric]
    canary_value = quantile(canary_sample, q) if canary_sample else None
    base_value = quantile(base_sample, q) if base_sample else None
    decision = latency_decision(
        canary_sample, base_sample, look=look, alpha=judge.alpha, min_samples=judge.min_samples
    )
    if decision.kind is DecisionKind.INCONCLUSIVE and (not canary_sample or not base_sample):
        return SequentialLook(
            Verdict(VerdictKind.INCONCLUSIVE, f"{metric}: no data ({decision.reason})"),
            canary_value,
            base_value,
            {"look": float(look), **decision.evidence},
        )
    return SequentialLook(
        _verdict(metric, decision, f"Mann-Whitney at look {look}"),
        canary_value,
        base_value,
        {"look": float(look), **decision.evidence},
    )


def _verdict(metric: str, decision: Decision, how: str) -> Verdict:
    reason = f"{metric} ({how}): {decision.reason}"
    if decision.kind is DecisionKind.FAILED:
        return Verdict(VerdictKind.FAILED, reason)
    if decision.kind is DecisionKind.PASSED:
        return Verdict(VerdictKind.PASSED, reason)
    return Verdict(VerdictKind.UNDECIDED, reason)

"""The threshold judge and the state of an analysis over repeated intervals.

Pure: it measures nothing, stores nothing and sleeps nowhere. ``judge`` turns a metric's rule and
the canary's (and baseline's) measurement into a ``Verdict`` that explains itself in numbers;
``AnalysisRun`` counts verdicts in a row and says when to go on, fail, or wait for a person.
No data is never a pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType

from shipyard.core.config.delivery import Analysis, AnalysisMetric
from shipyard.monitor.providers.interface import Measurement


class VerdictKind(StrEnum):
    """What a measurement says about the new version."""

    PASSED = "pass"
    FAILED = "fail"
    INCONCLUSIVE = "inconclusive"
    UNDECIDED = "undecided"
    """A sequential test has data but not enough evidence either way yet: it keeps looking."""


@dataclass(frozen=True)
class Verdict:
    """A measurement's verdict and why, in numbers (``error_rate 0.031 > max 0.01``)."""

    kind: VerdictKind
    reason: str
    final: bool = False
    """A failure that ends the analysis at once, whatever ``failure_limit`` says: a sequential
    test's, whose evidence already bounds its false alarms."""


@dataclass(frozen=True)
class Threshold:
    """The limits one metric must keep: absolute ``max``/``min``, ``max_increase`` on stable."""

    max: float | None = None
    min: float | None = None
    max_increase: float | None = None
    min_requests: int | None = None

    def __post_init__(self) -> None:
        if self.max is None and self.min is None and self.max_increase is None:
            raise ValueError("a threshold needs max, min or max_increase")

    @classmethod
    def of(cls, metric: AnalysisMetric) -> Threshold:
        """The threshold a metric of ``shipyard.yaml`` sets."""
        return cls(
            max=metric.max,
            min=metric.min,
            max_increase=metric.max_increase,
            min_requests=metric.min_requests,
        )

    def describe(self) -> str:
        """The limits as a person reads them: ``max 0.01, max_increase 20%``."""
        parts = []
        if self.max is not None:
            parts.append(f"max {_number(self.max)}")
        if self.min is not None:
            parts.append(f"min {_number(self.min)}")
        if self.max_increase is not None:
            parts.append(f"max_increase {_number(self.max_increase * 100)}%")
        return ", ".join(parts)


def judge(
    metric: str, threshold: Threshold, canary: Measurement, baseline: Measurement | None = None
) -> Verdict:
    """Judge the canary's measurement (and the baseline's, for ``max_increase``) by the rule.

    A failed limit is a fail; otherwise a missing value (canary, or baseline where one is
    needed) or too few requests is inconclusive; only every limit kept is a pass.
    """
    if canary.value is None:
        return Verdict(
            VerdictKind.INCONCLUSIVE, f"{metric}: no data ({canary.reason}) from {canary.source}"
        )
    if (
        threshold.min_requests is not None
        and canary.requests is not None
        and canary.requests < threshold.min_requests
    ):
        return Verdict(
            VerdictKind.INCONCLUSIVE,
            f"{metric}: {canary.requests} requests < min_requests {threshold.min_requests}",
        )
    value = canary.value
    failed: list[str] = []
    kept: list[str] = []
    unknown: list[str] = []
    shown = f"{metric} {_number(value)}"
    if threshold.max is not None:
        if value > threshold.max:
            failed.append(f"{shown} > max {_number(threshold.max)}")
        else:
            kept.append(f"{shown} <= max {_number(threshold.max)}")
    if threshold.min is not None:
        if value < threshold.min:
            failed.append(f"{shown} < min {_number(threshold.min)}")
        else:
            kept.append(f"{shown} >= min {_number(threshold.min)}")
    if threshold.max_increase is not None:
        allowed = f"{_number(threshold.max_increase * 100)}%"
        if baseline is None or baseline.value is None:
            why = "no baseline" if baseline is None else f"no data ({baseline.reason})"
            unknown.append(f"{metric}: the stable version's value is unknown: {why}")
        else:
            limit = baseline.value + abs(baseline.value) * threshold.max_increase
            compared = f"limit {_number(limit)} (stable {_number(baseline.value)} + {allowed})"
            if value > limit and not math.isclose(value, limit):
                failed.append(f"{shown} > {compared}")
            else:
                kept.append(f"{shown} <= {compared}")
    if failed:
        return Verdict(VerdictKind.FAILED, "; ".join(failed))
    if unknown:
        return Verdict(VerdictKind.INCONCLUSIVE, "; ".join(unknown))
    return Verdict(VerdictKind.PASSED, "; ".join(kept))


class RunOutcome(StrEnum):
    """Where an analysis stands after its latest interval."""

    CONTINUE = "continue"
    FAIL = "fail"
    PAUSE = "pause"


@dataclass(frozen=True)
class Streak:
    """One metric's verdicts in a row: failures, and inconclusive ones."""

    failures: int = 0
    inconclusive: int = 0

    def after(self, verdict: VerdictKind) -> Streak:
        """The streak after one more verdict.

        A pass ends both rows; a fail ends the inconclusive row; an inconclusive verdict does
        not end a row of failures (no data between two failures does not excuse them).
        """
        if verdict is VerdictKind.UNDECIDED:
            return self
        if verdict is VerdictKind.PASSED:
            return Streak()
        if verdict is VerdictKind.FAILED:
            return Streak(failures=self.failures + 1)
        return replace(self, inconclusive=self.inconclusive + 1)


@dataclass(frozen=True)
class AnalysisRun:
    """An analysis over repeated intervals: each metric's streak, and the outcome so far.

    More than ``failure_limit`` failures of one metric in a row fail the run; more than
    ``inconclusive_limit`` inconclusive verdicts of one metric in a row pause it for a person.
    """

    failure_limit: int
    inconclusive_limit: int
    streaks: Mapping[str, Streak] = field(default_factory=dict)
    outcome: RunOutcome = RunOutcome.CONTINUE
    reason: str = ""

    def __post_init__(self) -> None:
        if self.failure_limit < 0 or self.inconclusive_limit < 0:
            raise ValueError("the failure and inconclusive limits are 0 or more")
        object.__setattr__(self, "streaks", MappingProxyType(dict(self.streaks)))

    @classmethod
    def start(cls, analysis: Analysis) -> AnalysisRun:
        """A fresh run with the limits of an ``analysis`` section."""
        return cls(
            failure_limit=analysis.failure_limit, inconclusive_limit=analysis.inconclusive_limit
        )

    def after(self, verdicts: Mapping[str, Verdict]) -> AnalysisRun:
        """The run after one interval's verdicts, by metric; a decided run stays decided."""
        if self.outcome is not RunOutcome.CONTINUE:
            return self
        streaks = dict(self.streaks)
        for metric, verdict in verdicts.items():
            streaks[metric] = streaks.get(metric, Streak()).after(verdict.kind)
        for metric, verdict in verdicts.items():
            streak = streaks[metric]
            if verdict.final and verdict.kind is VerdictKind.FAILED:
                return replace(
                    self,
                    streaks=streaks,
                    outcome=RunOutcome.FAIL,
                    reason=f"{metric} failed on the evidence: {verdict.reason}",
                )
            if streak.failures > self.failure_limit:
                return replace(
                    self,
                    streaks=streaks,
                    outcome=RunOutcome.FAIL,
                    reason=f"{metric} failed {_times(streak.failures)} in a row "
                    f"(failure_limit {self.failure_limit}): {verdict.reason}",
                )
        for metric, verdict in verdicts.items():
            streak = streaks[metric]
            if streak.inconclusive > self.inconclusive_limit:
                return replace(
                    self,
                    streaks=streaks,
                    outcome=RunOutcome.PAUSE,
                    reason=f"{metric} was inconclusive {_times(streak.inconclusive)} in a row "
                    f"(inconclusive_limit {self.inconclusive_limit}): {verdict.reason}",
                )
        return replace(self, streaks=streaks)

    def replay(self, intervals: Iterable[Mapping[str, Verdict]]) -> AnalysisRun:
        """The run after these intervals in order (a driver that took over rebuilds its state)."""
        run = self
        for verdicts in intervals:
            run = run.after(verdicts)
        return run

    def resumed(self) -> AnalysisRun:
        """The run after a person resumed a paused one: inconclusive rows start again."""
        if self.outcome is not RunOutcome.PAUSE:
            return self
        streaks = {name: replace(s, inconclusive=0) for name, s in self.streaks.items()}
        return replace(self, streaks=streaks, outcome=RunOutcome.CONTINUE, reason="")


def _number(value: float) -> str:
    return f"{value:.6g}"


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"

"""A Kayenta-like summary of a canary's metrics: a score from 0 to 100 and a label.

For people used to canary scores; the decisions behind it stay the judge's word. Inconclusive
metrics are left out of the score and listed, so a score never rests on metrics without data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from shipyard.monitor.statistics.decision import BadStatisticInput, Decision, DecisionKind

PASS_AT = 95.0
MARGINAL_AT = 75.0


class ScoreLabel(StrEnum):
    """How a score reads: pass, marginal, fail, or no data when no metric was decided."""

    PASSED = "pass"
    MARGINAL = "marginal"
    FAILED = "fail"
    NO_DATA = "no data"


@dataclass(frozen=True)
class Score:
    """The share of decided metrics that passed, as 0-100, its label, and the metrics by kind."""

    value: float | None
    label: ScoreLabel
    passed: tuple[str, ...]
    failed: tuple[str, ...]
    inconclusive: tuple[str, ...]
    pass_at: float = PASS_AT
    marginal_at: float = MARGINAL_AT

    def describe(self) -> str:
        """The score as a sentence: ``score 50 (fail, below 75): 1 of 2 metrics passed; …``."""
        decided = len(self.passed) + len(self.failed)
        if self.value is None:
            head = "no score: no metric passed or failed"
        else:
            head = f"score {self.value:.0f} ({self._standing()}): {len(self.passed)} of {decided} "
            head += "metric passed" if decided == 1 else "metrics passed"
        parts = [head]
        if self.failed:
            parts.append(f"failed: {', '.join(self.failed)}")
        if self.inconclusive:
            parts.append(f"inconclusive, not counted: {', '.join(self.inconclusive)}")
        return "; ".join(parts)

    def _standing(self) -> str:
        if self.label is ScoreLabel.PASSED:
            return f"pass, at least {self.pass_at:g}"
        if self.label is ScoreLabel.MARGINAL:
            return f"marginal, at least {self.marginal_at:g} but below {self.pass_at:g}"
        return f"fail, below {self.marginal_at:g}"


def score(
    decisions: Mapping[str, Decision],
    *,
    pass_at: float = PASS_AT,
    marginal_at: float = MARGINAL_AT,
) -> Score:
    """Score the metrics' decisions: 100 x passed / (passed + failed).

    Every failed metric weighs as much as a passed one; inconclusive ones are not counted but
    listed. The label is pass from ``pass_at``, marginal from ``marginal_at``, fail below,
    and no data when no metric was decided.
    """
    if not 0 <= marginal_at <= pass_at <= 100:
        raise BadStatisticInput(
            f"score limits marginal_at {marginal_at!r} and pass_at {pass_at!r} are not in order",
            hint="use 0 <= marginal_at <= pass_at <= 100, e.g. marginal_at 75 and pass_at 95",
        )
    by_kind: dict[DecisionKind, list[str]] = {kind: [] for kind in DecisionKind}
    for metric, decision in decisions.items():
        by_kind[decision.kind].append(metric)
    passed = tuple(by_kind[DecisionKind.PASSED])
    failed = tuple(by_kind[DecisionKind.FAILED])
    inconclusive = tuple(by_kind[DecisionKind.INCONCLUSIVE])
    decided = len(passed) + len(failed)
    value = 100 * len(passed) / decided if decided else None
    if value is None:
        label = ScoreLabel.NO_DATA
    elif value >= pass_at:
        label = ScoreLabel.PASSED
    elif value >= marginal_at:
        label = ScoreLabel.MARGINAL
    else:
        label = ScoreLabel.FAILED
    return Score(value, label, passed, failed, inconclusive, float(pass_at), float(marginal_at))

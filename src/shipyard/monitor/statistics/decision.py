"""What a statistical test says about one metric of a canary: pass, fail or inconclusive, and why.

A ``Decision`` carries a sentence in numbers for a person and the numbers themselves for the
record. This module also holds the error raised for input no statistic can use.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from shipyard.core.errors import ShipyardError, UserError


class StatisticsError(ShipyardError):
    """Base of the errors of the canary statistics."""


class BadStatisticInput(StatisticsError, UserError):
    """Counts, samples or settings a statistic cannot use: more errors than requests, alpha 2."""


class DecisionKind(StrEnum):
    """What the evidence says about the canary (the values of the threshold judge's verdicts)."""

    PASSED = "pass"
    FAILED = "fail"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Decision:
    """One metric's decision, the sentence that explains it, and the numbers behind it."""

    kind: DecisionKind
    reason: str
    evidence: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", DecisionKind(self.kind))
        object.__setattr__(self, "evidence", MappingProxyType(dict(self.evidence)))


def check_alpha(alpha: float) -> float:
    """``alpha`` if it is a probability strictly between 0 and 1, else a clear error."""
    if not isinstance(alpha, int | float) or not 0 < alpha < 1:
        raise BadStatisticInput(
            f"alpha {alpha!r} is not a probability between 0 and 1",
            hint="use a small false-alarm rate such as alpha: 0.01",
        )
    return float(alpha)


def check_count(name: str, value: int) -> int:
    """``value`` if it is a whole number of 0 or more, else a clear error."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadStatisticInput(
            f"{name} {value!r} is not a count (a whole number, 0 or more)",
            hint="pass the cumulative counts the provider measured since the canary got traffic",
        )
    return value


def check_errors(name: str, errors: int, requests: int) -> None:
    """A clear error when an arm counts more errors than requests."""
    if errors > requests:
        raise BadStatisticInput(
            f"the {name} has {errors} errors in {requests} requests",
            hint="errors are counted among the requests: check which counter the provider reads",
        )


def percent(rate: float) -> str:
    """A rate as a person reads it: ``5.1%``, ``0.05%``."""
    value = 100 * rate
    return f"{value:.1f}%" if value >= 1 else f"{value:.2g}%"


def number(value: float) -> str:
    """A number in at most three significant digits: ``312``, ``1.2e+04``, ``0.0042``."""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.3g}"

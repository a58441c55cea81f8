"""Always-valid tests of a canary's error rate against the baseline's, for a look at any time.

Each test takes the cumulative counts of one look and may be repeated after every interval for
as long as the canary runs: the chance that any look fails a canary no worse than its baseline
stays below alpha. Pure: no I/O and no state between looks (the caller keeps the counts).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from shipyard.monitor.statistics.decision import (
    BadStatisticInput,
    Decision,
    DecisionKind,
    check_alpha,
    check_count,
    check_errors,
    number,
    percent,
)

LIKELIHOOD_RATIO_CAP = 1e300
"""Likelihood ratios are capped here so that they stay finite numbers in records."""
_LOG_CAP = math.log(LIKELIHOOD_RATIO_CAP)

_FIXED_POINT_STEPS = 60
"""Steps towards a bound of the normal mixture; a few suffice, the rest is a safety margin."""

_BISECTIONS = 48
"""Halvings of an interval when a confidence bound is searched: 2**-48 of a rate is plenty."""


@dataclass(frozen=True)
class RateEvidence:
    """What one look at the error counts shows: each arm's counts, the statistic and the bounds.

    ``likelihood_ratio`` is the test's statistic (the mixture likelihood ratio, a test
    martingale); the canary fails when it reaches ``threshold`` (1/alpha) and the canary is the
    worse one. ``lower`` and ``upper`` bound the canary's error rate minus the baseline's, valid
    at every look at once with probability 1 - alpha (for the msprt, as far as its normal
    approximation holds); without request counts they are -1 and 1.
    """

    test: Literal["msprt", "conditional"]
    canary_errors: int
    canary_requests: int | None
    base_errors: int
    base_requests: int | None
    alpha: float
    likelihood_ratio: float
    lower: float
    upper: float
    canary_share: float | None = None

    @property
    def threshold(self) -> float:
        """The likelihood ratio at which the canary fails: 1/alpha (Ville's inequality)."""
        return 1 / self.alpha

    @property
    def p_value(self) -> float:
        """This look's always-valid p-value, 1/likelihood ratio; the smallest so far counts."""
        return min(1.0, 1 / self.likelihood_ratio)

    @property
    def canary_rate(self) -> float | None:
        """The canary's share of failed requests, when its requests are known and some."""
        return _rate(self.canary_errors, self.canary_requests)

    @property
    def base_rate(self) -> float | None:
        """The baseline's share of failed requests, when its requests are known and some."""
        return _rate(self.base_errors, self.base_requests)

    @property
    def difference(self) -> float | None:
        """The canary's error rate minus the baseline's, when both are known."""
        if self.canary_rate is None or self.base_rate is None:
            return None
        return self.canary_rate - self.base_rate

    @property
    def canary_worse(self) -> bool:
        """Whether the counts point to the canary failing more often than the baseline."""
        if self.test == "conditional":
            share = self.canary_share if self.canary_share is not None else 0.0
            return self.canary_errors > share * (self.canary_errors + self.base_errors)
        return (self.difference or 0.0) > 0

    def decision(self, min_effect: float) -> Decision:
        """Fail on enough evidence that the canary is worse; pass once ``min_effect`` is ruled out.

        ``min_effect`` is an absolute difference of error rates (0.01: one point of percent).
        The canary passes when the upper bound of canary - baseline is below it, is
        inconclusive otherwise, and never fails when it does better than the baseline.
        """
        if not isinstance(min_effect, int | float) or not 0 < min_effect < 1:
            raise BadStatisticInput(
                f"min_effect {min_effect!r} is not a difference of error rates between 0 and 1",
                hint="give the smallest harmful increase, e.g. min_effect: 0.01 for one point",
            )
        summary = self.summary()
        ratio = f"likelihood ratio {number(self.likelihood_ratio)}"
        bar = f"1/alpha = {number(self.threshold)}"
        evidence = {**self.numbers(), "min_effect": float(min_effect)}
        if self.canary_worse and self.likelihood_ratio >= self.threshold:
            return Decision(DecisionKind.FAILED, f"{summary}: {ratio} >= {bar}", evidence)
        if self.upper < min_effect:
            confidence = f"{_confidence(self.alpha)} confidence bound"
            return Decision(
                DecisionKind.PASSED,
                f"{summary}: canary - baseline <= {number(self.upper)} "
                f"< min_effect {number(min_effect)} ({confidence})",
                evidence,
            )
        if self.canary_requests is None or self.base_requests is None:
            unknown = "without request counts no difference of rates can be ruled out"
            return Decision(DecisionKind.INCONCLUSIVE, f"{summary}: {ratio}; {unknown}", evidence)
        if not self.canary_requests or not self.base_requests:
            return Decision(DecisionKind.INCONCLUSIVE, f"{summary}: no requests yet", evidence)
        evidence_so_far = f"{ratio} < {bar}" if self.canary_worse else "the canary is not worse"
        return Decision(
            DecisionKind.INCONCLUSIVE,
            f"{summary}: {evidence_so_far}, and canary - baseline may be up to "
            f"{number(self.upper)}, not below min_effect {number(min_effect)}",
            evidence,
        )

    def summary(self) -> str:
        """The counts in words: ``canary 5.1% errors (51/1000) vs baseline 1.0% (90/9000)``."""
        canary = _arm(self.canary_errors, self.canary_requests, "errors ")
        rates = f"canary {canary} vs baseline {_arm(self.base_errors, self.base_requests, '')}"
        if self.test == "msprt" or self.canary_share is None:
            return rates
        total = self.canary_errors + self.base_errors
        landed = f" ({percent(self.canary_errors / total)})" if total else ""
        shares = (
            f"canary {self.canary_errors} of {total} errors{landed} "
            f"at a {percent(self.canary_share)} traffic share"
        )
        if self.canary_requests is None:
            return shares
        return f"{shares}; {rates}"

    def numbers(self) -> dict[str, float]:
        """The evidence as named numbers, for the record (unknown ones left out)."""
        known: dict[str, float | int | None] = {
            "canary_errors": self.canary_errors,
            "canary_requests": self.canary_requests,
            "base_errors": self.base_errors,
            "base_requests": self.base_requests,
            "canary_rate": self.canary_rate,
            "base_rate": self.base_rate,
            "difference": self.difference,
            "canary_share": self.canary_share,
            "likelihood_ratio": self.likelihood_ratio,
            "threshold": self.threshold,
            "alpha": self.alpha,
            "lower": self.lower,
            "upper": self.upper,
        }
        return {name: float(value) for name, value in known.items() if value is not None}


def msprt_rates(
    canary_errors: int,
    canary_requests: int,
    base_errors: int,
    base_requests: int,
    *,
    alpha: float,
    tau: float,
) -> RateEvidence:
    """A mixture sequential probability ratio test on canary rate - baseline rate.

    The observed difference ``d`` is compared with a hypothesised one under a normal mixture
    of alternatives (standard deviation ``tau``): the likelihood ratio is
    ``sqrt(V/(V+tau²)) * exp(tau² d² / (2V(V+tau²)))`` against no difference, with ``V`` the
    variance of ``d``. ``V`` adds each arm's own variance ``p(1-p)/n``, each ``p`` estimated
    separately and nudged to ``(errors+1/2)/(requests+1)`` so that an arm without errors is not
    certain. A pooled variance would understate a small canary's spread: its false alarms
    exceed alpha at canary weights of a few percent (``tests/monitor/test_statistics_rates.py``
    shows it).

    The bounds are the confidence sequence of the same mixture: the differences it does not
    reject, so the canary fails exactly when the lower bound is above 0. For the upper bound
    (the pass side) the canary's variance at a hypothesised difference is the larger of the
    estimated one and the one at the rate the hypothesis implies (baseline rate + difference),
    so that a canary that happens to have no errors yet cannot rule out a harmful difference
    too soon.

    ``tau`` is the size of difference the test is quickest to find; 0.02 suits error rates of
    a few percent. The guarantee rests on the normal approximation of each arm's rate; the
    tests and ``bench/bench_judge.py`` check it by simulation.
    """
    alpha = check_alpha(alpha)
    if not isinstance(tau, int | float) or not 0 < tau < math.inf:
        raise BadStatisticInput(
            f"tau {tau!r} is not a positive number",
            hint="tau is the difference of error rates to detect soonest, e.g. tau: 0.02",
        )
    _check_arm("canary", canary_errors, canary_requests)
    _check_arm("baseline", base_errors, base_requests)
    if not canary_requests or not base_requests:
        return RateEvidence(
            "msprt", canary_errors, canary_requests, base_errors, base_requests, alpha, 1.0, -1, 1
        )
    mixture = _NormalMixture(
        canary_errors, canary_requests, base_errors, base_requests, tau * tau, alpha
    )
    return RateEvidence(
        "msprt",
        canary_errors,
        canary_requests,
        base_errors,
        base_requests,
        alpha,
        _capped_exp(mixture.log_ratio()),
        max(-1.0, mixture.lower()),
        min(1.0, mixture.upper()),
    )


class _NormalMixture:
    """The normal-mixture likelihood ratio of one look, and the bounds of its confidence sequence.

    The likelihood ratio against no difference and the lower bound (the fail side) use each
    arm's estimated variance. The upper bound (the pass side) uses, for each hypothesised
    difference, the larger of the canary's estimated variance and the one at the rate that
    difference implies, as a score interval does.
    """

    def __init__(
        self,
        canary_errors: int,
        canary_requests: int,
        base_errors: int,
        base_requests: int,
        spread: float,
        alpha: float,
    ) -> None:
        self.difference = canary_errors / canary_requests - base_errors / base_requests
        self.base_rate = base_errors / base_requests
        self.canary_requests = canary_requests
        self.canary_spread = _bernoulli_spread(canary_errors, canary_requests)
        self.base_variance = _bernoulli_spread(base_errors, base_requests) / base_requests
        self.estimated = self.canary_spread / canary_requests + self.base_variance
        self.spread = spread
        self.limit = 2 * math.log(1 / alpha)

    def log_ratio(self) -> float:
        """The log of the mixture likelihood ratio against no difference."""
        variance, spread = self.estimated, self.spread
        return 0.5 * math.log(variance / (variance + spread)) + spread * self.difference**2 / (
            2 * variance * (variance + spread)
        )

    def lower(self) -> float:
        """The smallest difference the mixture does not reject (estimated variances)."""
        return self.difference - self._half_width(self.estimated)

    def upper(self) -> float:
        """The largest difference not rejected, each judged with its own implied variance.

        The distance at which a hypothesis is rejected grows with the variance at that
        hypothesis, so the bound is the fixed point of ``d + half_width(variance(bound))``,
        reached from below in a few steps.
        """
        bound = self.difference
        for _ in range(_FIXED_POINT_STEPS):
            implied = min(1.0, max(0.0, self.base_rate + bound))
            canary = max(self.canary_spread, implied * (1 - implied))
            moved = self.difference + self._half_width(
                canary / self.canary_requests + self.base_variance
            )
            if abs(moved - bound) < 1e-10:
                return moved
            bound = moved
        return bound

    def _half_width(self, variance: float) -> float:
        spread = self.spread
        return math.sqrt(
            variance
            * (variance + spread)
            / spread
            * (self.limit + math.log((variance + spread) / variance))
        )


def conditional_errors(
    canary_errors: int,
    base_errors: int,
    canary_share: float,
    *,
    alpha: float,
    canary_requests: int | None = None,
    base_requests: int | None = None,
) -> RateEvidence:
    """The exact test that conditions on the errors: does the canary get more than its share?

    With no difference, each error lands in the canary with probability equal to its traffic
    share ``s``, whatever the error rate. The statistic is the likelihood ratio of the canary's
    errors under a uniform mixture of shares against ``s``: ``1 / ((N+1) * P(X; N, s))`` for
    ``X`` of ``N`` errors, ``P`` the binomial probability. It is a test martingale, so by
    Ville's inequality it reaches 1/alpha with probability at most alpha over all looks.

    Assumes requests are assigned to the versions at random, each with probability ``s``, and
    that ``s`` held while all of these errors happened. Sticky sessions or pinned traffic
    break the assumption (a client's errors then travel together), so a caller must not use
    this test when either is on; after a change of weight, pass the counts since the change.

    With ``canary_requests`` and ``base_requests`` the evidence also bounds canary rate -
    baseline rate (so that a pass is possible): from exact confidence sequences of the ratio
    of the rates (alpha/2) and of each arm's rate (alpha/4 each).
    """
    alpha = check_alpha(alpha)
    check_count("canary errors", canary_errors)
    check_count("baseline errors", base_errors)
    if not isinstance(canary_share, int | float) or not 0 < canary_share < 1:
        raise BadStatisticInput(
            f"canary share {canary_share!r} is not a traffic share between 0 and 1",
            hint="pass the canary's weight as a fraction, e.g. 0.1 for 10 %",
        )
    if (canary_requests is None) != (base_requests is None):
        raise BadStatisticInput(
            "only one version's request count was given",
            hint="pass both canary_requests and base_requests, or neither",
        )
    lower, upper = -1.0, 1.0
    if canary_requests is not None and base_requests is not None:
        _check_arm("canary", canary_errors, canary_requests)
        _check_arm("baseline", base_errors, base_requests)
        if canary_requests and base_requests:
            lower, upper = _difference_bounds(
                canary_errors, canary_requests, base_errors, base_requests, canary_share, alpha
            )
    log_ratio = (
        _log_beta(1 + canary_errors, 1 + base_errors)
        - canary_errors * math.log(canary_share)
        - base_errors * math.log1p(-canary_share)
    )
    return RateEvidence(
        "conditional",
        canary_errors,
        canary_requests,
        base_errors,
        base_requests,
        alpha,
        _capped_exp(log_ratio),
        lower,
        upper,
        float(canary_share),
    )


def _difference_bounds(
    canary_errors: int,
    canary_requests: int,
    base_errors: int,
    base_requests: int,
    share: float,
    alpha: float,
) -> tuple[float, float]:
    """Bounds of canary rate - baseline rate that hold at every look with probability 1 - alpha.

    The ratio of the rates follows from the share of errors in the canary; the difference is
    the baseline's rate times (ratio - 1), or the canary's rate less the baseline's, whichever
    bound is tighter.
    """
    low_share, high_share = _mixture_interval(canary_errors, canary_errors + base_errors, alpha / 2)
    low_ratio, high_ratio = _rate_ratio(low_share, share), _rate_ratio(high_share, share)
    low_base, high_base = _mixture_interval(base_errors, base_requests, alpha / 4)
    low_canary, high_canary = _mixture_interval(canary_errors, canary_requests, alpha / 4)
    upper = high_canary - low_base
    if math.isfinite(high_ratio):
        upper = min(upper, (high_base if high_ratio >= 1 else low_base) * (high_ratio - 1))
    lower = max(
        low_canary - high_base, (low_base if low_ratio >= 1 else high_base) * (low_ratio - 1)
    )
    return max(-1.0, lower), min(1.0, upper)


def _rate_ratio(errors_share: float, traffic_share: float) -> float:
    """Canary rate / baseline rate when the canary gets ``errors_share`` of the errors."""
    if errors_share >= 1:
        return math.inf
    return errors_share * (1 - traffic_share) / (traffic_share * (1 - errors_share))


def _mixture_interval(successes: int, trials: int, alpha: float) -> tuple[float, float]:
    """The probabilities ``p`` that a uniform-mixture test martingale has not rejected.

    ``B(1+k, 1+n-k) / (p^k (1-p)^(n-k)) < 1/alpha`` for ``k`` successes in ``n`` trials: an
    exact confidence sequence for a probability (Ville's inequality for each ``p``).
    """
    if trials == 0:
        return 0.0, 1.0
    failures = trials - successes
    limit = math.log(1 / alpha)
    mixture = _log_beta(1 + successes, 1 + failures)

    def rejected(p: float) -> bool:
        likelihood = 0.0
        if successes:
            likelihood += successes * math.log(p)
        if failures:
            likelihood += failures * math.log1p(-p)
        return mixture - likelihood >= limit

    estimate = successes / trials
    low = 0.0 if successes == 0 else _boundary(rejected, 0.0, estimate)
    high = 1.0 if failures == 0 else _boundary(rejected, 1.0, estimate)
    return low, high


def _boundary(rejected: Callable[[float], bool], outside: float, inside: float) -> float:
    """The point between ``outside`` (rejected) and ``inside`` (kept) where rejection starts."""
    for _ in range(_BISECTIONS):
        middle = (outside + inside) / 2
        if rejected(middle):
            outside = middle
        else:
            inside = middle
    return inside


def _check_arm(name: str, errors: int, requests: int) -> None:
    check_count(f"{name} errors", errors)
    check_count(f"{name} requests", requests)
    check_errors(name, errors, requests)


def _bernoulli_spread(errors: int, requests: int) -> float:
    """p(1-p) of an arm's rate, nudged to (errors+1/2)/(requests+1) away from 0 and 1."""
    rate = (errors + 0.5) / (requests + 1)
    return rate * (1 - rate)


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _capped_exp(log_value: float) -> float:
    if log_value >= _LOG_CAP:
        return LIKELIHOOD_RATIO_CAP
    return math.exp(log_value)


def _rate(errors: int, requests: int | None) -> float | None:
    return errors / requests if requests else None


def _arm(errors: int, requests: int | None, noun: str) -> str:
    if requests is None:
        return f"{errors} errors"
    if requests == 0:
        return "no requests"
    return f"{percent(errors / requests)} {noun}({errors}/{requests})"


def _confidence(alpha: float) -> str:
    return f"{100 * (1 - alpha):.4g}%"

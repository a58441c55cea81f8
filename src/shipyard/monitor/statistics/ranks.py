"""Is the canary slower? A one-sided Mann-Whitney U test on latency samples, look by look.

The test compares the router's per-version latency samples by rank, so it needs no model of
their distribution; coarse timing gives many equal values, and the variance is corrected for
them. Repeated looks share alpha through ``alpha_for_look``. Pure: no I/O, no scipy.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import NamedTuple

from shipyard.monitor.statistics.decision import (
    BadStatisticInput,
    Decision,
    DecisionKind,
    check_alpha,
    number,
)

DEFAULT_MIN_SAMPLES = 50
"""Latency samples a canary needs before the absence of a difference counts as a pass."""


class MannWhitney(NamedTuple):
    """The canary's U statistic, its standard score and the one-sided p-value (canary slower)."""

    u: float
    z: float
    p: float


def mann_whitney(canary_sample: Sequence[float], base_sample: Sequence[float]) -> MannWhitney:
    """Mann-Whitney U of the canary against the baseline, one-sided: "the canary is slower".

    ``u`` counts the pairs (canary, baseline) where the canary's value is larger, a tie as a
    half. ``z`` and ``p`` come from the normal approximation with the variance corrected for
    ties and a continuity correction of 1/2, as ``scipy.stats.mannwhitneyu(canary, baseline,
    alternative="greater", method="asymptotic")`` computes them. When every value is equal
    nothing tells the versions apart: ``z`` is minus infinity and ``p`` is 1.
    """
    canary = _sample("canary", canary_sample)
    base = _sample("baseline", base_sample)
    n_canary, n_base = len(canary), len(base)
    total = n_canary + n_base
    rank_sum, tie_term = _canary_rank_sum(canary, base)
    u = rank_sum - n_canary * (n_canary + 1) / 2
    variance = n_canary * n_base / 12 * ((total + 1) - tie_term / (total * (total - 1)))
    excess = u - n_canary * n_base / 2 - 0.5
    if variance <= 0:
        return MannWhitney(u, -math.inf if excess < 0 else math.inf, 1.0 if excess < 0 else 0.0)
    z = excess / math.sqrt(variance)
    return MannWhitney(u, z, 0.5 * math.erfc(z / math.sqrt(2)))


def alpha_for_look(look: int, alpha: float) -> float:
    """The share of ``alpha`` that look ``look`` (1, 2, …) may spend: ``alpha * 6/(pi² look²)``.

    The shares add up to ``alpha`` over any number of looks, so the chance that some look
    rejects a canary that is not slower stays below ``alpha`` (a union bound). Chosen over a
    Lan-DeMets spending function because that one needs the number of looks or the final
    sample size in advance, and nested cumulative samples; a canary's looks are open-ended,
    and the router's latency sample is bounded, so looks may not nest. The price is that late
    looks get little: look 10 spends 0.6 % of alpha.
    """
    alpha = check_alpha(alpha)
    if isinstance(look, bool) or not isinstance(look, int) or look < 1:
        raise BadStatisticInput(
            f"look {look!r} is not a look number (1 for the first look, 2 for the next…)",
            hint="count the analysis intervals of this canary from 1",
        )
    return alpha * 6 / (math.pi**2 * look**2)


def latency_decision(
    canary_sample: Sequence[float],
    base_sample: Sequence[float],
    *,
    look: int,
    alpha: float,
    min_samples: int = DEFAULT_MIN_SAMPLES,
) -> Decision:
    """Fail when the canary is slower at this look's share of alpha; pass with enough samples.

    The canary fails when the one-sided Mann-Whitney p-value is at most ``alpha_for_look``;
    it passes when the test does not reject and the canary has at least ``min_samples``
    values; it is inconclusive otherwise (and when either sample is empty).
    """
    budget = alpha_for_look(look, alpha)
    if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 1:
        raise BadStatisticInput(
            f"min_samples {min_samples!r} is not a positive whole number",
            hint="ask for enough canary latencies to trust a pass, e.g. min_samples: 50",
        )
    if not canary_sample or not base_sample:
        missing = " and ".join(
            name for name, s in (("canary", canary_sample), ("baseline", base_sample)) if not s
        )
        return Decision(
            DecisionKind.INCONCLUSIVE,
            f"no latency samples of the {missing} yet",
            {"canary_samples": len(canary_sample), "base_samples": len(base_sample)},
        )
    result = mann_whitney(canary_sample, base_sample)
    canary_median = statistics.median(canary_sample)
    base_median = statistics.median(base_sample)
    compared = (
        f"canary median {number(canary_median)} (n={len(canary_sample)}) vs baseline median "
        f"{number(base_median)} (n={len(base_sample)}): one-sided Mann-Whitney p = "
        f"{number(result.p)}"
    )
    spent = f"alpha {number(budget)} for look {look} (of alpha {number(alpha)} in all)"
    evidence = {
        "u": result.u,
        "z": result.z,
        "p": result.p,
        "alpha_look": budget,
        "alpha": alpha,
        "look": look,
        "canary_samples": len(canary_sample),
        "base_samples": len(base_sample),
        "canary_median": canary_median,
        "base_median": base_median,
    }
    if result.p <= budget:
        return Decision(DecisionKind.FAILED, f"{compared} <= {spent}: slower", evidence)
    if len(canary_sample) < min_samples:
        return Decision(
            DecisionKind.INCONCLUSIVE,
            f"{compared} > {spent}, but the canary has {len(canary_sample)} samples "
            f"< min_samples {min_samples}",
            evidence,
        )
    return Decision(DecisionKind.PASSED, f"{compared} > {spent}: not slower", evidence)


def _sample(name: str, values: Sequence[float]) -> list[float]:
    sample = [float(v) for v in values]
    if not sample:
        raise BadStatisticInput(
            f"the {name}'s latency sample is empty",
            hint="wait for the version to serve requests before comparing latencies",
        )
    if not all(math.isfinite(v) for v in sample):
        raise BadStatisticInput(
            f"the {name}'s latency sample holds a value that is not a finite number",
            hint="drop missing or infinite latencies before the comparison",
        )
    return sample


def _canary_rank_sum(canary: list[float], base: list[float]) -> tuple[float, float]:
    """The canary's sum of ranks (ties get their average rank) and the sum of t³ - t over ties."""
    pooled = sorted([(v, True) for v in canary] + [(v, False) for v in base])
    rank_sum = 0.0
    tie_term = 0.0
    start = 0
    while start < len(pooled):
        end = start
        canaries = 0
        while end < len(pooled) and pooled[end][0] == pooled[start][0]:
            canaries += pooled[end][1]
            end += 1
        tied = end - start
        rank_sum += canaries * (start + 1 + end) / 2
        tie_term += tied**3 - tied
        start = end
    return rank_sum, tie_term

"""Mann-Whitney U agrees with scipy, ties included; repeated looks at latency stay within alpha."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipyard.monitor.statistics import (
    BadStatisticInput,
    DecisionKind,
    alpha_for_look,
    latency_decision,
    mann_whitney,
)

PASS, FAIL, INCONCLUSIVE = DecisionKind.PASSED, DecisionKind.FAILED, DecisionKind.INCONCLUSIVE

coarse = st.lists(st.integers(0, 6).map(lambda ms: ms / 1000), min_size=1, max_size=60)
"""Latencies timed to the millisecond: few distinct values, so many ties."""
fine = st.lists(st.floats(0.0001, 5.0, allow_nan=False), min_size=1, max_size=60)


@given(canary=st.one_of(coarse, fine), base=st.one_of(coarse, fine))
@settings(max_examples=400, deadline=None)
def test_mann_whitney_matches_scipy_with_ties_and_unequal_sizes(
    canary: list[float], base: list[float]
) -> None:
    stats = pytest.importorskip("scipy.stats")
    expected = stats.mannwhitneyu(canary, base, alternative="greater", method="asymptotic")
    result = mann_whitney(canary, base)
    assert result.u == pytest.approx(float(expected.statistic), rel=1e-12, abs=1e-9)
    assert result.p == pytest.approx(float(expected.pvalue), rel=1e-9, abs=1e-15)


def test_mann_whitney_counts_pairs_where_the_canary_is_slower_and_ties_as_halves() -> None:
    result = mann_whitney([0.002, 0.003, 0.003], [0.001, 0.003])
    # pairs: 0.002 beats 0.001 (1); each 0.003 beats 0.001 (2) and ties 0.003 (2 x 1/2)
    assert result.u == 4.0
    assert result.z > 0
    assert 0 < result.p < 0.5


def test_identical_samples_tell_nothing_apart() -> None:
    result = mann_whitney([0.004] * 20, [0.004] * 30)
    assert result.p == 1.0
    assert result.z == -math.inf


def test_alpha_for_look_spends_the_whole_budget_and_no_more() -> None:
    alpha = 0.01
    shares = [alpha_for_look(k, alpha) for k in range(1, 100_001)]
    assert all(later < earlier for earlier, later in itertools.pairwise(shares))
    assert sum(shares) <= alpha
    assert sum(shares) == pytest.approx(alpha, rel=1e-4)
    assert alpha_for_look(1, alpha) == pytest.approx(alpha * 6 / math.pi**2)


def test_a_slower_canary_fails_and_says_what_was_compared() -> None:
    rng = random.Random(1)
    base = [round(rng.gauss(0.100, 0.010), 3) for _ in range(400)]
    canary = [round(rng.gauss(0.120, 0.010), 3) for _ in range(100)]
    decision = latency_decision(canary, base, look=3, alpha=0.01)
    assert decision.kind is FAIL
    assert decision.reason.startswith(
        "canary median 0.121 (n=100) vs baseline median 0.101 (n=400)"
    )
    assert "one-sided Mann-Whitney p = " in decision.reason
    assert "alpha 0.000675 for look 3 (of alpha 0.01 in all)" in decision.reason
    assert decision.evidence["p"] <= decision.evidence["alpha_look"]


def test_a_canary_as_fast_as_the_baseline_passes_with_enough_samples() -> None:
    rng = random.Random(2)
    base = [round(rng.gauss(0.100, 0.010), 3) for _ in range(400)]
    canary = [round(rng.gauss(0.100, 0.010), 3) for _ in range(100)]
    decision = latency_decision(canary, base, look=1, alpha=0.01, min_samples=50)
    assert decision.kind is PASS
    assert decision.reason.endswith(": not slower")


def test_a_faster_canary_passes() -> None:
    decision = latency_decision([0.05] * 60, [0.1] * 200, look=1, alpha=0.01)
    assert decision.kind is PASS


def test_too_few_canary_samples_is_inconclusive_unless_the_canary_is_clearly_slower() -> None:
    few = latency_decision([0.1, 0.101, 0.099], [0.1, 0.102, 0.098] * 30, look=1, alpha=0.01)
    assert few.kind is INCONCLUSIVE
    assert few.reason.endswith("but the canary has 3 samples < min_samples 50")
    slow = latency_decision([0.5] * 20, [0.1, 0.102, 0.098] * 30, look=1, alpha=0.01)
    assert slow.kind is FAIL


def test_no_samples_is_inconclusive() -> None:
    decision = latency_decision([], [0.1, 0.2], look=1, alpha=0.01)
    assert decision.kind is INCONCLUSIVE
    assert decision.reason == "no latency samples of the canary yet"


def test_repeated_looks_at_a_canary_that_is_not_slower_fail_at_most_alpha_of_the_time() -> None:
    """300 canaries, 12 looks each, coarse timing: the budget holds where a fixed alpha fails."""
    rng = random.Random(7)
    alpha, canaries = 0.05, 300
    spent = naive = 0
    for _ in range(canaries):
        canary: list[float] = []
        base: list[float] = []
        failed_spent = failed_naive = False
        for look in range(1, 13):
            canary += [round(rng.expovariate(1 / 0.004), 3) for _ in range(8)]
            base += [round(rng.expovariate(1 / 0.004), 3) for _ in range(24)]
            result = mann_whitney(canary, base)
            failed_spent |= result.p <= alpha_for_look(look, alpha)
            failed_naive |= result.p <= alpha
        spent += failed_spent
        naive += failed_naive
    ceiling = alpha + 3 * math.sqrt(alpha * (1 - alpha) / canaries)
    assert spent / canaries <= ceiling
    assert naive / canaries > ceiling  # the simulation is sharp enough to see the mistake


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: mann_whitney([], [1.0]), "the canary's latency sample is empty"),
        (lambda: mann_whitney([1.0], [math.nan]), "the baseline's latency sample holds"),
        (lambda: alpha_for_look(0, 0.01), "look 0 is not a look number"),
        (lambda: alpha_for_look(1, 0), "alpha 0 is not a probability"),
        (
            lambda: latency_decision([1.0], [1.0], look=1, alpha=0.01, min_samples=0),
            "min_samples 0 is not a positive whole number",
        ),
    ],
)
def test_bad_input_is_a_clear_error_with_a_hint(call: object, message: str) -> None:
    assert callable(call)
    with pytest.raises(BadStatisticInput) as raised:
        call()
    assert str(raised.value).startswith(message)
    assert raised.value.hint

"""The error-rate tests fail bad canaries early, hold alpha over many looks, and explain why."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipyard.core.errors import UserError
from shipyard.monitor.statistics import (
    BadStatisticInput,
    DecisionKind,
    RateEvidence,
    conditional_errors,
    msprt_rates,
)

PASS, FAIL, INCONCLUSIVE = DecisionKind.PASSED, DecisionKind.FAILED, DecisionKind.INCONCLUSIVE
ALPHA = 0.05
"""Simulations use a larger alpha than production so that an excess shows in 2,000 canaries."""
TAU = 0.02
PER_LOOK = 1_000
"""Requests per look: 100 requests/s in all, one look every 10 s."""

Look = tuple[int, int, int, int]
"""Cumulative canary errors, canary requests, baseline errors, baseline requests."""


def errors_in(rng: random.Random, requests: int, rate: float) -> int:
    """A binomial draw by jumping from error to error (geometric gaps): cheap at small rates."""
    if rate <= 0:
        return 0
    log_miss = math.log1p(-rate)
    count, position = 0, 0
    while True:
        position += int(math.log(1.0 - rng.random()) / log_miss) + 1
        if position > requests:
            return count
        count += 1


def canary_run(
    rng: random.Random, looks: int, share: float, canary_rate: float, base_rate: float
) -> Iterator[Look]:
    """The cumulative counts of one canary at each look; requests split by the share."""
    canary_step = round(share * PER_LOOK)
    base_step = PER_LOOK - canary_step
    canary_errors = base_errors = 0
    for look in range(1, looks + 1):
        canary_errors += errors_in(rng, canary_step, canary_rate)
        base_errors += errors_in(rng, base_step, base_rate)
        yield canary_errors, look * canary_step, base_errors, look * base_step


def msprt_look(look: Look, share: float, alpha: float = ALPHA) -> RateEvidence:
    return msprt_rates(*look, alpha=alpha, tau=TAU)


def conditional_look(look: Look, share: float, alpha: float = ALPHA) -> RateEvidence:
    return conditional_errors(look[0], look[2], share, alpha=alpha)


TESTS = {"msprt": msprt_look, "conditional": conditional_look}


def share_ever_failed(
    test: Callable[[Look, float], RateEvidence],
    *,
    seed: int,
    canaries: int,
    looks: int,
    share: float,
    canary_rate: float,
    base_rate: float,
    stop_above: float | None = None,
) -> float:
    """The share of simulated canaries that fail at some look; with ``stop_above``, the share
    failed so far once it exceeds that (the rest could only add to it)."""
    rng = random.Random(seed)
    failed = 0
    for _ in range(canaries):
        for look in canary_run(rng, looks, share, canary_rate, base_rate):
            if test(look, share).decision(0.01).kind is FAIL:
                failed += 1
                break
        if stop_above is not None and failed / canaries > stop_above:
            break
    return failed / canaries


def binomial_ceiling(rate: float, trials: int) -> float:
    """``rate`` plus three standard errors of a share measured in ``trials``."""
    return rate + 3 * math.sqrt(rate * (1 - rate) / trials)


def test_a_fail_explains_itself_in_numbers() -> None:
    decision = msprt_rates(51, 1000, 90, 9000, alpha=0.01, tau=TAU).decision(0.01)
    assert decision.kind is FAIL
    assert decision.reason.startswith(
        "canary 5.1% errors (51/1000) vs baseline 1.0% (90/9000): likelihood ratio "
    )
    assert decision.reason.endswith(" >= 1/alpha = 100")
    assert decision.evidence["canary_rate"] == pytest.approx(0.051)
    assert decision.evidence["base_rate"] == pytest.approx(0.01)
    assert decision.evidence["likelihood_ratio"] >= 100
    assert decision.evidence["lower"] > 0


def test_the_conditional_test_says_where_the_errors_landed() -> None:
    decision = conditional_errors(51, 90, 0.1, alpha=0.01).decision(0.01)
    assert decision.kind is FAIL
    assert decision.reason.startswith("canary 51 of 141 errors (36.2%) at a 10.0% traffic share: ")
    assert decision.reason.endswith(" >= 1/alpha = 100")


@pytest.mark.parametrize("name", sorted(TESTS))
@pytest.mark.parametrize("share", [0.1, 0.5])
def test_canaries_no_worse_than_the_baseline_fail_at_most_alpha_of_the_time(
    name: str, share: float
) -> None:
    canaries = 2_000
    failed = share_ever_failed(
        TESTS[name],
        seed=17,
        canaries=canaries,
        looks=20,
        share=share,
        canary_rate=0.01,
        base_rate=0.01,
    )
    assert failed <= binomial_ceiling(ALPHA, canaries)


def test_the_simulation_would_catch_a_test_that_ignores_repeated_looks() -> None:
    """A fixed-sample z-test at every look, the mistake the sequential tests avoid, fails it."""
    canaries = 2_000
    one_sided = 1.6449  # the 95th percentile of the standard normal

    def fixed_sample(look: Look, share: float) -> RateEvidence:
        canary_errors, canary_requests, base_errors, base_requests = look
        pooled = (canary_errors + base_errors) / (canary_requests + base_requests)
        spread = math.sqrt(pooled * (1 - pooled) * (1 / canary_requests + 1 / base_requests))
        difference = canary_errors / canary_requests - base_errors / base_requests
        worse = spread > 0 and difference / spread > one_sided
        return RateEvidence("msprt", *look, ALPHA, 1e9 if worse else 1.0, -1.0, 1.0)

    ceiling = binomial_ceiling(ALPHA, canaries)
    failed = share_ever_failed(
        fixed_sample,
        seed=17,
        canaries=canaries,
        looks=20,
        share=0.5,
        canary_rate=0.01,
        base_rate=0.01,
        stop_above=ceiling,
    )
    assert failed > ceiling


def test_a_pooled_variance_would_exceed_alpha_at_a_small_canary_weight() -> None:
    """At a 1 % weight the canary's spread dominates; pooling understates it, ours does not."""
    canaries, share, rate, alpha = 500, 0.01, 0.002, 0.01
    looks = 30

    def pooled(look: Look, share: float) -> RateEvidence:
        canary_errors, canary_requests, base_errors, base_requests = look
        rate = (canary_errors + base_errors + 0.5) / (canary_requests + base_requests + 1)
        variance = rate * (1 - rate) * (1 / canary_requests + 1 / base_requests)
        difference = canary_errors / canary_requests - base_errors / base_requests
        spread = TAU**2
        log_ratio = 0.5 * math.log(variance / (variance + spread)) + spread * difference**2 / (
            2 * variance * (variance + spread)
        )
        return RateEvidence("msprt", *look, alpha, math.exp(log_ratio), -1.0, 1.0)

    def separate(look: Look, share: float) -> RateEvidence:
        return msprt_look(look, share, alpha)

    common = {"seed": 5, "canaries": canaries, "looks": looks, "share": share}
    ceiling = binomial_ceiling(alpha, canaries)
    with_pooled = share_ever_failed(
        pooled,
        canary_rate=rate,
        base_rate=rate,
        stop_above=ceiling,
        **common,  # type: ignore[arg-type]
    )
    ours = share_ever_failed(separate, canary_rate=rate, base_rate=rate, **common)  # type: ignore[arg-type]
    assert with_pooled > ceiling
    assert ours <= alpha


@pytest.mark.parametrize("name", sorted(TESTS))
def test_a_canary_five_times_worse_is_caught_within_a_few_looks(name: str) -> None:
    failed = share_ever_failed(
        TESTS[name], seed=3, canaries=200, looks=12, share=0.1, canary_rate=0.05, base_rate=0.01
    )
    assert failed == 1.0


@pytest.mark.parametrize("name", sorted(TESTS))
def test_a_better_canary_never_fails(name: str) -> None:
    failed = share_ever_failed(
        TESTS[name], seed=4, canaries=300, looks=20, share=0.5, canary_rate=0.002, base_rate=0.01
    )
    assert failed == 0


@given(
    canary_errors=st.integers(0, 500),
    canary_extra=st.integers(1, 5_000),
    base_errors=st.integers(0, 500),
    base_extra=st.integers(1, 5_000),
)
@settings(max_examples=300, deadline=None)
def test_the_msprt_fails_exactly_when_its_bounds_exclude_no_difference_and_never_a_better_canary(
    canary_errors: int, canary_extra: int, base_errors: int, base_extra: int
) -> None:
    evidence = msprt_rates(
        canary_errors,
        canary_errors + canary_extra,
        base_errors,
        base_errors + base_extra,
        alpha=0.01,
        tau=TAU,
    )
    assert evidence.difference is not None
    assert evidence.lower <= evidence.difference <= evidence.upper
    failed = evidence.decision(0.01).kind is FAIL
    if evidence.difference <= 0:
        assert not failed
    elif not math.isclose(evidence.lower, 0, abs_tol=1e-12):
        assert failed == (evidence.lower > 0)


@given(
    canary_errors=st.integers(0, 300),
    base_errors=st.integers(0, 300),
    share=st.floats(0.01, 0.99),
)
@settings(max_examples=150, deadline=None)
def test_the_conditional_statistic_is_the_uniform_mixture_over_the_binomial_probability(
    canary_errors: int, base_errors: int, share: float
) -> None:
    binom = pytest.importorskip("scipy.stats").binom
    total = canary_errors + base_errors
    evidence = conditional_errors(canary_errors, base_errors, share, alpha=0.01)
    probability = float(binom.pmf(canary_errors, total, share))
    if probability > 1e-250:
        assert evidence.likelihood_ratio == pytest.approx(1 / ((total + 1) * probability), rel=1e-7)
    if canary_errors <= share * total:
        assert evidence.decision(0.01).kind is not FAIL


def test_a_pass_comes_once_min_effect_is_ruled_out_with_enough_traffic() -> None:
    early = msprt_rates(10, 1_000, 90, 9_000, alpha=0.01, tau=TAU).decision(0.01)
    assert early.kind is INCONCLUSIVE
    assert "may be up to" in early.reason
    later = msprt_rates(200, 20_000, 1_800, 180_000, alpha=0.01, tau=TAU).decision(0.01)
    assert later.kind is PASS
    assert later.reason.startswith("canary 1.0% errors (200/20000) vs baseline 1.0% (1800/180000)")
    assert "< min_effect 0.01 (99% confidence bound)" in later.reason
    assert later.evidence["upper"] < 0.01


def test_the_conditional_test_passes_too_when_it_knows_the_requests() -> None:
    without = conditional_errors(200, 1_800, 0.1, alpha=0.01).decision(0.01)
    assert without.kind is INCONCLUSIVE
    assert "without request counts" in without.reason
    known = conditional_errors(
        200, 1_800, 0.1, alpha=0.01, canary_requests=20_000, base_requests=180_000
    ).decision(0.01)
    assert known.kind is PASS
    assert known.evidence["upper"] < 0.01


def test_a_canary_without_errors_passes_the_conditional_test_with_enough_requests() -> None:
    decision = conditional_errors(
        0, 0, 0.1, alpha=0.01, canary_requests=10_000, base_requests=90_000
    ).decision(0.01)
    assert decision.kind is PASS


def evidence_of(name: str, look: Look, share: float, alpha: float) -> RateEvidence:
    """The evidence of one look by the named test, with the request counts."""
    if name == "msprt":
        return msprt_rates(*look, alpha=alpha, tau=TAU)
    canary_errors, canary_requests, base_errors, base_requests = look
    return conditional_errors(
        canary_errors,
        base_errors,
        share,
        alpha=alpha,
        canary_requests=canary_requests,
        base_requests=base_requests,
    )


@pytest.mark.parametrize(("name", "median_looks"), [("msprt", 36), ("conditional", 66)])
def test_simulated_canaries_with_no_difference_pass_within_minutes(
    name: str, median_looks: int
) -> None:
    """At a 10 % weight of 100 requests/s: the msprt within 6 minutes, the exact test 11."""
    rng = random.Random(11)
    passed_at = []
    for _ in range(60):
        for index, look in enumerate(canary_run(rng, 90, 0.1, 0.01, 0.01), start=1):
            if evidence_of(name, look, 0.1, 0.01).decision(0.01).kind is PASS:
                passed_at.append(index)
                break
    assert len(passed_at) >= 57
    assert sorted(passed_at)[30] <= median_looks


@pytest.mark.parametrize(("name", "canaries"), [("msprt", 500), ("conditional", 200)])
def test_a_canary_exactly_min_effect_worse_rarely_passes(name: str, canaries: int) -> None:
    """A canary without errors yet must not rule out an effect it has too few requests for.

    With the estimated variance alone in its upper bound, the msprt passed 3-5 % of these.
    """
    rng = random.Random(29)
    alpha = 0.01
    passed = 0
    for _ in range(canaries):
        for look in canary_run(rng, 30, 0.1, 0.02, 0.01):
            if evidence_of(name, look, 0.1, alpha).decision(0.01).kind is PASS:
                passed += 1
                break
    assert passed / canaries <= binomial_ceiling(alpha, canaries)


def test_the_bounds_cover_the_true_difference_at_every_look() -> None:
    rng = random.Random(23)
    canaries, alpha, truth = 300, 0.05, 0.03 - 0.01
    missed = dict.fromkeys(TESTS, 0)
    for _ in range(canaries):
        looks = list(canary_run(rng, 15, 0.1, 0.03, 0.01))
        for name in missed:
            for look in looks:
                evidence = evidence_of(name, look, 0.1, alpha)
                if not evidence.lower <= truth <= evidence.upper:
                    missed[name] += 1
                    break
    for name, count in missed.items():
        assert count / canaries <= binomial_ceiling(alpha, canaries), name


def test_no_requests_yet_is_inconclusive() -> None:
    decision = msprt_rates(0, 0, 3, 900, alpha=0.01, tau=TAU).decision(0.01)
    assert decision.kind is INCONCLUSIVE
    assert decision.reason == "canary no requests vs baseline 0.33% (3/900): no requests yet"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: msprt_rates(5, 4, 0, 10, alpha=0.01, tau=TAU), "the canary has 5 errors in 4"),
        (lambda: msprt_rates(-1, 4, 0, 10, alpha=0.01, tau=TAU), "canary errors -1 is not a count"),
        (lambda: msprt_rates(0, 4, 0, 10, alpha=1.5, tau=TAU), "alpha 1.5 is not a probability"),
        (lambda: msprt_rates(0, 4, 0, 10, alpha=0.01, tau=0), "tau 0 is not a positive number"),
        (lambda: conditional_errors(1, 2, 1.0, alpha=0.01), "canary share 1.0 is not a traffic"),
        (
            lambda: conditional_errors(1, 2, 0.1, alpha=0.01, canary_requests=10),
            "only one version's request count",
        ),
        (
            lambda: msprt_rates(0, 4, 0, 10, alpha=0.01, tau=TAU).decision(0),
            "min_effect 0 is not a difference",
        ),
    ],
)
def test_bad_input_is_a_clear_error_with_a_hint(call: Callable[[], object], message: str) -> None:
    with pytest.raises(BadStatisticInput) as raised:
        call()
    assert str(raised.value).startswith(message)
    assert raised.value.hint
    assert isinstance(raised.value, UserError)

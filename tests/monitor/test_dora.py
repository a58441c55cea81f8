"""DORA metrics: a scripted month in a real store and a real git repository, every figure worked
out by hand below from the timeline in dorasupport.py; and the report's bands at their edges."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.dorasupport import D, H, M, Script, script_month
from shipyard.core.errors import ArgumentError
from shipyard.core.git import Git
from shipyard.core.store import Store
from shipyard.monitor import dora
from shipyard.monitor.dora import Band, History, Period

START = datetime(2025, 5, 31, tzinfo=UTC)
PERIOD = Period(START, START + 30 * D)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = Store(database_url)
    store.ensure_schema()
    yield store
    store.dispose()


@pytest.fixture
def month(store: Store, repo: Path) -> tuple[Script, History]:
    script = script_month(store, repo, START)
    return script, dora.load_history(store, "shop", Git(repo))


def seconds(value: timedelta) -> float:
    return value.total_seconds()


def test_production_figures_match_the_hand_computed_ones(
    month: tuple[Script, History],
) -> None:
    _, history = month
    card = dora.compute(history, "production", PERIOD)

    # Successful deployments of a change in the period: P2, P4, P5, P8 (P6 is a rollback,
    # P1 came before the period, P9 has not finished).
    assert card.deployment_frequency.value == 4 / 30
    assert card.deployment_frequency.counts == {"deployments": 4}
    assert card.deployment_frequency.band is Band.MEDIUM  # weekly > 4/30 per day >= monthly

    # Each commit, from its commit to the end of the first successful deployment with it:
    # P2 brings b1 and b2 (a1 came with P1); P3 was rolled back, so P4 brings c1 and d1; P5
    # brings e1 and e2; P6 and P8 bring nothing new.
    lead = sorted(
        [
            seconds((2 * D + 9 * H) - (D + 8 * H)),  # b1: 25 h
            seconds((2 * D + 9 * H) - (D + 20 * H)),  # b2: 13 h
            seconds((6 * D + 16 * H + 20 * M) - (5 * D + 10 * H)),  # c1: 30 h 20 m
            seconds((6 * D + 16 * H + 20 * M) - (6 * D + 15 * H)),  # d1: 1 h 20 m
            seconds((21 * D + 12 * H + 30 * M) - 20 * D),  # e1: 36 h 30 m
            seconds((21 * D + 12 * H + 30 * M) - 21 * D),  # e2: 12 h 30 m
        ]
    )
    assert lead == [4800, 45000, 46800, 90000, 109200, 131400]
    assert card.lead_time.value == (46800 + 90000) / 2  # 19 h
    assert card.lead_time.counts == {"changes": 6}
    assert card.lead_time.band is Band.ELITE

    # Deployments of a change finished in the period: P2, P3, P4, P5, P7, P8. Needed
    # remediation: P3 (rolled back), P5 (incident I2 names 1.3.0, and P5 was the latest
    # deployment of it), P7 (failed), P8 (incident I3, opened after P8 and before P9).
    assert card.change_failure_rate.value == 4 / 6
    assert card.change_failure_rate.counts == {"failed": 4, "deployments": 6}
    assert card.change_failure_rate.band is Band.LOW

    # I1 10 m, I2 2 h, P7 (failed, no incident) 45 m; I3 is not restored; I4 names no cause.
    assert card.recovery_time.value == seconds(45 * M)
    assert card.recovery_time.counts == {"recoveries": 3, "not_restored": 1}
    assert card.recovery_time.band is Band.ELITE

    # Finished in the period: P2..P8, seven. Unplanned: P4 (six hours after P3 was rolled
    # back), P6 (a rollback), P8 (a quarter of an hour after P7 failed).
    assert card.rework_rate.value == 3 / 7
    assert card.rework_rate.counts == {"rework": 3, "deployments": 7}
    assert card.rework_rate.band is None


def test_staging_is_measured_apart_from_production(month: tuple[Script, History]) -> None:
    _, history = month
    card = dora.compute(history, "staging", PERIOD)

    assert card.deployment_frequency.value == 2 / 30
    assert card.deployment_frequency.band is Band.MEDIUM
    # Staging's first deployment (S1, 1.1.0) brings what 1.1.0 adds to 1.0.0: b1 and b2
    # (14 h 10 m and 2 h 10 m); S2 brings c1 (2 h 05 m).
    assert card.lead_time.value == seconds(2 * H + 10 * M)
    assert card.lead_time.counts == {"changes": 3}
    assert card.change_failure_rate.value == 0
    assert card.change_failure_rate.band is Band.ELITE
    assert card.recovery_time.value is None
    assert card.recovery_time.band is None
    assert card.recovery_time.counts == {"recoveries": 0, "not_restored": 0}
    assert card.rework_rate.value == 0


def test_the_trend_puts_each_deployment_in_its_week(month: tuple[Script, History]) -> None:
    _, history = month
    weeks = dora.trend(history, "production", PERIOD, 7 * D)

    assert [w.period.start for w in weeks] == [START + i * 7 * D for i in range(5)]
    assert weeks[-1].period.end == PERIOD.end  # the last slice is two days long
    assert [w.deployment_frequency.counts["deployments"] for w in weeks] == [2, 0, 0, 2, 0]
    assert [w.change_failure_rate.counts["failed"] for w in weeks] == [1, 0, 0, 3, 0]
    assert [w.lead_time.counts["changes"] for w in weeks] == [4, 0, 0, 2, 0]


def test_a_period_that_ends_before_the_month_sees_none_of_it(
    month: tuple[Script, History],
) -> None:
    _, history = month
    card = dora.compute(history, "production", Period(START - 5 * D, START))

    assert card.deployment_frequency.value == 0
    assert card.deployment_frequency.band is Band.LOW
    assert card.lead_time.value is None
    assert card.change_failure_rate.value is None
    assert card.rework_rate.value is None


def test_lead_time_needs_git_and_the_rest_does_not(store: Store, repo: Path) -> None:
    script_month(store, repo, START)
    card = dora.compute(dora.load_history(store, "shop", None), "production", PERIOD)

    assert card.lead_time.value is None
    assert card.change_failure_rate.value == 4 / 6


def test_a_release_whose_commit_git_does_not_know_delivers_nothing(
    store: Store, repo: Path, tmp_path: Path
) -> None:
    script_month(store, repo, START)
    other = tmp_path / "other"
    other.mkdir()
    Git(other).run("init", "-q", "-b", "main")
    card = dora.compute(dora.load_history(store, "shop", Git(other)), "production", PERIOD)

    assert card.lead_time.value is None
    assert card.lead_time.counts == {"changes": 0}


def test_an_empty_period_is_refused() -> None:
    with pytest.raises(ArgumentError, match="is empty"):
        Period(START, START)


@pytest.mark.parametrize(
    ("per_day", "band"),
    [
        (2.0, Band.ELITE),
        (1.01, Band.ELITE),
        (1.0, Band.HIGH),  # once a day is the high cluster's upper end
        (1 / 7, Band.HIGH),
        (1 / 7 - 0.001, Band.MEDIUM),
        (1 / 30, Band.MEDIUM),
        (1 / 30 - 0.001, Band.LOW),
        (0.0, Band.LOW),
    ],
)
def test_deployment_frequency_bands(per_day: float, band: Band) -> None:
    assert dora.frequency_band(per_day) is band


@pytest.mark.parametrize(
    ("lead_time", "band"),
    [
        (D - timedelta(seconds=1), Band.ELITE),
        (D, Band.HIGH),
        (7 * D, Band.HIGH),
        (7 * D + timedelta(seconds=1), Band.MEDIUM),
        (30 * D, Band.MEDIUM),
        (30 * D + timedelta(seconds=1), Band.LOW),
    ],
)
def test_lead_time_bands(lead_time: timedelta, band: Band) -> None:
    assert dora.lead_time_band(lead_time) is band


@pytest.mark.parametrize(
    ("rate", "band"),
    [(0.0, Band.ELITE), (0.05, Band.ELITE), (0.06, Band.HIGH), (0.2, Band.HIGH), (0.21, Band.LOW)],
)
def test_change_failure_rate_bands(rate: float, band: Band) -> None:
    assert dora.change_failure_band(rate) is band


@pytest.mark.parametrize(
    ("recovery", "band"),
    [
        (59 * M, Band.ELITE),
        (H, Band.HIGH),
        (D - timedelta(seconds=1), Band.HIGH),
        (D, Band.LOW),
        (20 * D, Band.LOW),
    ],
)
def test_recovery_time_bands(recovery: timedelta, band: Band) -> None:
    assert dora.recovery_band(recovery) is band

"""Measurements: stored with their verdicts, read back per deployment in order, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from shipyard.core import measurements
from shipyard.core.store import Store

START = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = Store(database_url)
    store.ensure_schema()
    yield store
    store.dispose()


def _record(store: Store, deployment_id: int, seconds: int, **changes: object) -> None:
    values: dict[str, object] = {
        "deployment_id": deployment_id,
        "environment": "production",
        "phase": "step 1",
        "metric": "error_rate",
        "version": "1.1.0",
        "baseline_version": "1.0.0",
        "value": 0.031,
        "baseline_value": 0.002,
        "threshold": "max 0.01",
        "verdict": "fail",
        "reason": "error_rate 0.031 > max 0.01",
        "measured_at": START + timedelta(seconds=seconds),
    }
    values.update(changes)
    with store.write() as conn:
        measurements.record(conn, **values)  # type: ignore[arg-type]


def test_a_deployments_measurements_come_back_as_recorded_oldest_first(store: Store) -> None:
    _record(store, 7, 20, phase="watch", verdict="pass", value=0.001, reason="ok")
    _record(store, 7, 10)
    _record(store, 8, 5, metric="latency_p95")
    _record(store, 7, 30, value=None, baseline_value=None, verdict="inconclusive", reason="no data")
    with store.read() as conn:
        found = measurements.for_deployment(conn, 7)
        other = measurements.for_deployment(conn, 8)
        none = measurements.for_deployment(conn, 9)
    assert [(m.measured_at, m.phase, m.verdict, m.value) for m in found] == [
        (START + timedelta(seconds=10), "step 1", "fail", 0.031),
        (START + timedelta(seconds=20), "watch", "pass", 0.001),
        (START + timedelta(seconds=30), "step 1", "inconclusive", None),
    ]
    first = found[0]
    assert (first.metric, first.version, first.baseline_version, first.baseline_value) == (
        "error_rate",
        "1.1.0",
        "1.0.0",
        0.002,
    )
    assert (first.threshold, first.reason, first.environment) == (
        "max 0.01",
        "error_rate 0.031 > max 0.01",
        "production",
    )
    assert found[2].baseline_value is None
    assert [m.metric for m in other] == ["latency_p95"]
    assert none == []
    assert first.as_json()["measured_at"] == "2026-12-03T12:00:10+00:00"


def test_a_measurement_without_a_baseline_version(store: Store) -> None:
    _record(store, 1, 0, baseline_version=None, baseline_value=None, verdict="pass", reason="ok")
    with store.read() as conn:
        [found] = measurements.for_deployment(conn, 1)
    assert found.baseline_version is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"verdict": "maybe"}, "verdict 'maybe' is not one of pass, fail, inconclusive"),
        ({"value": float("nan")}, "value nan is not a finite number"),
        ({"baseline_value": float("inf")}, "baseline_value inf is not a finite number"),
        ({"reason": ""}, "a measurement needs the reason for its verdict"),
    ],
)
def test_a_malformed_measurement_is_refused_and_nothing_is_stored(
    store: Store, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _record(store, 3, 0, **changes)
    with store.read() as conn:
        assert measurements.for_deployment(conn, 3) == []

"""The builtin provider: error rate, request rate, latency quantiles and the users' feedback
(complaint rate, mean score) from the router's traffic.

It reads a ``TrafficSnapshot`` through a callable (``cd`` adapts its router's statistics), so it
never talks to the router itself. Latencies are in seconds and keep sub-millisecond values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from shipyard.core.config.delivery import BUILTIN_METRICS
from shipyard.core.errors import ShipyardError
from shipyard.monitor.providers.interface import (
    Measurement,
    MetricProvider,
    MetricQuery,
    MetricQueryError,
)
from shipyard.monitor.providers.traffic import TrafficSnapshot, VersionTraffic

LATENCY_QUANTILES = {
    "latency_p50": 0.50,
    "latency_p90": 0.90,
    "latency_p95": 0.95,
    "latency_p99": 0.99,
}
"""Latency metrics (seconds) and the quantile each one is."""

assert set(BUILTIN_METRICS) == {
    "error_rate",
    "request_rate",
    "complaint_rate",
    "feedback_score",
    *LATENCY_QUANTILES,
}


def quantile(sample: Sequence[float], q: float) -> float:
    """The ``q`` quantile of a non-empty sample, interpolating linearly between closest ranks.

    This is the definition of ``statistics.quantiles(..., method="inclusive")``: rank
    ``(n - 1) * q`` in the sorted sample, so p0 is the minimum and p100 the maximum.
    """
    if not sample:
        raise ValueError("the quantile of an empty sample is undefined")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"a quantile is between 0 and 1, not {q}")
    ordered = sorted(sample)
    rank = (len(ordered) - 1) * q
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (rank - low) * (ordered[high] - ordered[low])


class BuiltinProvider(MetricProvider):
    """Measures a version's metrics from the router's per-version traffic."""

    name = "builtin"

    def __init__(self, read: Callable[[], TrafficSnapshot]) -> None:
        self._read = read

    def measure(self, query: MetricQuery) -> Measurement:
        """The metric for the query's version in the current traffic window, or none and why."""
        if query.metric not in BUILTIN_METRICS:
            raise MetricQueryError(
                f"the builtin provider has no metric {query.metric!r}",
                hint=f"builtin metrics are: {', '.join(BUILTIN_METRICS)}",
            )
        source = f"builtin {query.metric} of {query.version} in {query.environment}"
        try:
            snapshot = self._read()
        except ShipyardError as error:
            return Measurement.no_data(f"the router's statistics cannot be read: {error}", source)
        traffic = snapshot.versions.get(query.version)
        if query.metric == "feedback_score":
            return _feedback_score(traffic, query.version, source)
        if traffic is None or traffic.requests == 0:
            return Measurement.no_data(
                f"no requests to version {query.version}", source, requests=0
            )
        if query.metric == "request_rate":
            return _request_rate(traffic, source)
        if traffic.requests < query.min_requests:
            return Measurement.no_data(
                f"too few requests: {traffic.requests} of {query.min_requests}",
                source,
                requests=traffic.requests,
            )
        if query.metric == "error_rate":
            return Measurement.of(
                traffic.count("5xx") / traffic.requests, source, requests=traffic.requests
            )
        if query.metric == "complaint_rate":
            return Measurement.of(
                traffic.complaints / traffic.requests, source, requests=traffic.requests
            )
        if not traffic.latencies:
            return Measurement.no_data("no latency sample", source, requests=traffic.requests)
        value = quantile(traffic.latencies, LATENCY_QUANTILES[query.metric])
        return Measurement.of(value, source, requests=traffic.requests)


def _feedback_score(traffic: VersionTraffic | None, version: str, source: str) -> Measurement:
    """The mean of the users' scores (1 to 5) in the window; no data without a score."""
    requests = 0 if traffic is None else traffic.requests
    if traffic is None or traffic.scores == 0:
        return Measurement.no_data(f"no scores for version {version}", source, requests=requests)
    return Measurement.of(traffic.score_sum / traffic.scores, source, requests=requests)


def _request_rate(traffic: VersionTraffic, source: str) -> Measurement:
    if traffic.window_seconds <= 0:
        return Measurement.no_data(
            "the traffic window has no length", source, requests=traffic.requests
        )
    return Measurement.of(
        traffic.requests / traffic.window_seconds, source, requests=traffic.requests
    )

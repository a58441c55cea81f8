"""A metric provider for tests: it answers scripted measurements, one per call, per metric.

It implements the real interface, so the analysis is tested without a router or Prometheus.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from shipyard.monitor.providers.interface import Measurement, MetricProvider, MetricQuery


class FakeProvider(MetricProvider):
    """Answers each metric's scripted values in order, then repeats the last one."""

    name = "fake"

    def __init__(self, script: Mapping[str, Sequence[Measurement | float | None]]) -> None:
        self._script = {metric: list(values) for metric, values in script.items()}
        self._calls: dict[str, int] = {}
        self.queries: list[MetricQuery] = []
        """Every query measured, in order, for tests to check what was asked."""

    def measure(self, query: MetricQuery) -> Measurement:
        """The next scripted value of the query's metric (``None`` is "no data")."""
        self.queries.append(query)
        values = self._script.get(query.metric)
        source = f"fake {query.metric} of {query.version}"
        if not values:
            return Measurement.no_data(f"no scripted values for {query.metric!r}", source)
        index = self._calls.get(query.metric, 0)
        self._calls[query.metric] = index + 1
        value = values[min(index, len(values) - 1)]
        if isinstance(value, Measurement):
            return value
        if value is None:
            return Measurement.no_data("scripted: no data", source)
        return Measurement.of(value, source)

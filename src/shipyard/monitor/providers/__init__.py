"""Metric providers, by the name an analysis metric's ``provider:`` uses in ``shipyard.yaml``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shipyard.core.errors import ConfigError
from shipyard.monitor.providers.fake import FakeProvider
from shipyard.monitor.providers.interface import (
    BadMetricValue,
    Measurement,
    MetricProvider,
    MetricQuery,
    MetricQueryError,
    MetricsError,
    ProviderUnavailable,
)
from shipyard.monitor.providers.traffic import TrafficSnapshot, VersionTraffic


@dataclass(frozen=True)
class ProviderSources:
    """What providers may read in this process: the router's traffic, when there is a router."""

    traffic: Callable[[], TrafficSnapshot] | None = None


PROVIDERS: dict[str, Callable[[ProviderSources], MetricProvider]] = {}
"""Provider factories by the name ``provider:`` uses; each builds from the available sources."""


def provider_for(
    name: str, sources: ProviderSources, *, where: str = "analysis.metrics"
) -> MetricProvider:
    """The provider named ``name`` (``where`` in shipyard.yaml), built from ``sources``."""
    try:
        factory = PROVIDERS[name]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ConfigError(
            f"{where} names an unknown metric provider {name!r}",
            hint=f"provider is one of: {known}",
        ) from None
    return factory(sources)


__all__ = [
    "PROVIDERS",
    "BadMetricValue",
    "FakeProvider",
    "Measurement",
    "MetricProvider",
    "MetricQuery",
    "MetricQueryError",
    "MetricsError",
    "ProviderSources",
    "ProviderUnavailable",
    "TrafficSnapshot",
    "VersionTraffic",
    "provider_for",
]

"""Metric providers, by the name an analysis metric's ``provider:`` uses in ``shipyard.yaml``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shipyard.core.config.delivery import BUILTIN_METRICS
from shipyard.core.errors import ConfigError
from shipyard.monitor.providers.builtin import BuiltinProvider
from shipyard.monitor.providers.command import CommandProvider
from shipyard.monitor.providers.fake import FakeProvider
from shipyard.monitor.providers.http import HttpProvider
from shipyard.monitor.providers.interface import (
    BadMetricValue,
    Measurement,
    MetricProvider,
    MetricQuery,
    MetricQueryError,
    MetricsError,
    ProviderUnavailable,
)
from shipyard.monitor.providers.prometheus import prometheus_provider
from shipyard.monitor.providers.traffic import TrafficSnapshot, VersionTraffic


@dataclass(frozen=True)
class ProviderSources:
    """What providers may read in this process: the router's traffic, when there is a router."""

    traffic: Callable[[], TrafficSnapshot] | None = None


def _builtin(sources: ProviderSources) -> MetricProvider:
    if sources.traffic is None:
        raise ProviderUnavailable(
            "the builtin metric provider reads the router's statistics; there is no router here",
            hint="use the builtin provider in an environment whose target runs Shipyard's router",
        )
    return BuiltinProvider(sources.traffic)


PROVIDERS: dict[str, Callable[[ProviderSources], MetricProvider]] = {
    "builtin": _builtin,
    "http": lambda _sources: HttpProvider(),
    "command": lambda _sources: CommandProvider(),
}
"""Provider factories by the name ``provider:`` uses; each builds from the available sources."""
PROVIDERS["prometheus"] = prometheus_provider


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
    "BUILTIN_METRICS",
    "PROVIDERS",
    "BadMetricValue",
    "BuiltinProvider",
    "CommandProvider",
    "FakeProvider",
    "HttpProvider",
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

"""The metric provider interface: a query for one metric of one version, and its measurement.

A provider answers ``measure(query)``. A failure on the provider's side (unreachable, no data,
a value that is not a number) is a ``Measurement`` without a value and with a reason, never an
exception: the analysis turns it into an inconclusive verdict. Providers record nothing.

::

    MetricsError                      base of every metric provider error
    ├── ProviderUnavailable           a provider cannot be built here (its source is missing)
    ├── BadMetricValue                a value is not a finite number (raised building a Measurement)
    └── MetricQueryError              the query is wrong: unknown metric, missing field (exit 2)
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from shipyard.core.errors import ShipyardError, UserError

DEFAULT_MIN_REQUESTS = 20
"""Fewer requests than this in the window and a request-based metric has no value."""

DEFAULT_TIMEOUT_SECONDS = 10.0
"""How long a provider waits for its source (an HTTP answer, a command) by default."""


class MetricsError(ShipyardError):
    """Base of the errors of metric providers."""


class ProviderUnavailable(MetricsError):
    """A provider cannot be built here: the source it reads is missing."""


class BadMetricValue(MetricsError):
    """A measured value is not a finite number."""


class MetricQueryError(MetricsError, UserError):
    """A metric query is wrong: an unknown metric, a missing or malformed field."""


@dataclass(frozen=True)
class MetricQuery:
    """One metric of one version in one environment, as the analysis asks a provider for it."""

    metric: str
    environment: str
    version: str
    baseline: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict, hash=False)
    min_requests: int = DEFAULT_MIN_REQUESTS
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))
        if self.min_requests < 0:
            raise MetricQueryError(
                f"metric {self.metric!r}: min_requests is {self.min_requests}",
                hint="min_requests is a whole number of requests, 0 or more",
            )
        if not self.timeout_seconds > 0:
            raise MetricQueryError(
                f"metric {self.metric!r}: timeout is {self.timeout_seconds} s",
                hint="a timeout is a positive number of seconds",
            )

    def field_value(self, name: str, provider: str) -> str:
        """The provider-specific field ``name``; a clear error when the metric does not set it."""
        value = self.fields.get(name)
        if value is None or not value.strip():
            raise MetricQueryError(
                f"metric {self.metric!r} (provider {provider}) has no {name!r}",
                hint=f"set '{name}:' on the metric in the analysis of {self.environment!r}",
            )
        return value


@dataclass(frozen=True)
class Measurement:
    """What a provider measured: a value, or none and why ("no data" is not zero)."""

    value: float | None
    source: str
    reason: str | None = None
    requests: int | None = None

    def __post_init__(self) -> None:
        if self.value is None:
            if not self.reason:
                raise BadMetricValue(f"{self.source}: a measurement without a value needs a reason")
            return
        if isinstance(self.value, bool) or not math.isfinite(self.value):
            raise BadMetricValue(f"{self.source}: {self.value!r} is not a finite number")

    @classmethod
    def of(cls, value: float, source: str, *, requests: int | None = None) -> Measurement:
        """A measured value."""
        return cls(value=float(value), source=source, requests=requests)

    @classmethod
    def no_data(cls, reason: str, source: str, *, requests: int | None = None) -> Measurement:
        """No value, and why: the analysis calls it inconclusive."""
        return cls(value=None, source=source, reason=reason, requests=requests)


class MetricProvider(ABC):
    """Measures metrics of a version from one source (the router, Prometheus, a URL, a command)."""

    name: str
    """The name ``provider:`` uses in ``shipyard.yaml``."""

    @abstractmethod
    def measure(self, query: MetricQuery) -> Measurement:
        """The metric's current value for the query's version, or none and why."""


_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def substitute(
    template: str, query: MetricQuery, *, quote: Callable[[str], str] | None = None
) -> str:
    """``template`` with ``{{version}}`` and ``{{env}}`` filled in, each through ``quote``."""
    values = {"version": query.version, "env": query.environment}

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise MetricQueryError(
                f"metric {query.metric!r} uses an unknown placeholder {{{{{name}}}}}",
                hint="the placeholders are {{version}} and {{env}}",
            )
        return quote(values[name]) if quote else values[name]

    return _PLACEHOLDER.sub(fill, template)

"""What the builtin provider reads: each version's requests, statuses, latencies and users'
feedback in a window.

Monitor defines these values so that it never imports ``cd``; ``cd`` adapts its router's
statistics to them. They hold numbers only, no behaviour beyond simple sums.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
"""The status classes a ``VersionTraffic`` counts requests by."""


@dataclass(frozen=True)
class VersionTraffic:
    """One version's traffic in a window: requests, counts by status class, latencies (seconds),
    and the users' feedback about it (complaints; scores from 1 to 5, their count and sum)."""

    requests: int
    statuses: Mapping[str, int] = field(default_factory=dict, hash=False)
    latencies: tuple[float, ...] = ()
    window_seconds: float = 0.0
    complaints: int = 0
    scores: int = 0
    score_sum: float = 0.0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.statuses) - set(STATUS_CLASSES))
        if unknown:
            raise ValueError(f"unknown status classes {unknown}; they are {STATUS_CLASSES}")
        object.__setattr__(self, "statuses", MappingProxyType(dict(self.statuses)))

    def count(self, status_class: str) -> int:
        """Requests answered with a status of ``status_class`` (``"5xx"``…)."""
        return self.statuses.get(status_class, 0)


@dataclass(frozen=True)
class TrafficSnapshot:
    """The router's per-version traffic at one moment."""

    versions: Mapping[str, VersionTraffic] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "versions", MappingProxyType(dict(self.versions)))

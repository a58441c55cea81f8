"""Traffic routers: the seam between strategies and whatever steers requests between versions."""

from __future__ import annotations

from shipyard.cd.traffic.interface import (
    Backend,
    InvalidWeights,
    TrafficError,
    TrafficRouter,
    Weights,
)

__all__ = ["Backend", "InvalidWeights", "TrafficError", "TrafficRouter", "Weights"]

"""Deployment targets, by the name ``environments.<name>.target`` uses."""

from __future__ import annotations

from shipyard.cd.targets.interface import (
    InstanceRef,
    InstanceUnhealthy,
    Release,
    Target,
    TargetError,
)

__all__ = ["InstanceRef", "InstanceUnhealthy", "Release", "Target", "TargetError"]

"""Deployment targets, by the name ``environments.<name>.target`` uses."""

from __future__ import annotations

from collections.abc import Callable

from shipyard.cd.instances import InstanceRef
from shipyard.cd.settings import DeploySettings
from shipyard.cd.targets.fake import FakeTarget
from shipyard.cd.targets.interface import InstanceUnhealthy, Release, Target, TargetError
from shipyard.cd.targets.local import LocalTarget
from shipyard.core.errors import ConfigError
from shipyard.core.state import StateDir

TARGETS: dict[str, Callable[[StateDir], Target]] = {"local": LocalTarget, "fake": FakeTarget}
"""Targets by the name ``environments.<name>.target`` uses; each is built from a state directory."""


def target_for(state: StateDir, settings: DeploySettings) -> Target:
    """The target an environment's settings name, working in ``state``."""
    try:
        kind = TARGETS[settings.target]
    except KeyError:
        known = ", ".join(sorted(TARGETS))
        raise ConfigError(
            f"environment {settings.environment!r} names an unknown target {settings.target!r}",
            hint=f"environments.{settings.environment}.target is one of: {known}",
        ) from None
    return kind(state)


__all__ = [
    "TARGETS",
    "FakeTarget",
    "InstanceRef",
    "InstanceUnhealthy",
    "LocalTarget",
    "Release",
    "Target",
    "TargetError",
    "target_for",
]

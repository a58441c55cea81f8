"""The target interface: where a release runs and how its traffic is steered.

A strategy talks only to this interface and to the target's ``TrafficRouter``; the local
target (processes on this host behind Shipyard's router) and a fake for tests are the adapters.
Targets record nothing in the store.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from shipyard.cd.instances import InstanceRef
from shipyard.cd.settings import DeploySettings
from shipyard.cd.traffic.interface import TrafficRouter
from shipyard.core.errors import CheckFailed, HostError
from shipyard.core.secrets import Masker


class TargetError(HostError):
    """A target could not do what was asked (start a process, reach the router)."""


class InstanceUnhealthy(CheckFailed):
    """New instances did not become healthy in time (or exited): the deployment fails."""


@dataclass(frozen=True)
class Release:
    """The release a target runs: its version and the verified bundle to unpack."""

    project: str
    version: str
    bundle: str


class Target(ABC):
    """Runs instances of a release and routes traffic between versions."""

    @abstractmethod
    def prepare(self, release: Release, settings: DeploySettings) -> Path:
        """Unpack the release and run its setup once; returns where the service runs from."""

    @abstractmethod
    def start(
        self,
        release: Release,
        settings: DeploySettings,
        root: Path,
        tag: str,
        *,
        count: int | None = None,
        first: int = 0,
    ) -> list[InstanceRef]:
        """Start ``count`` instances (``settings.instances`` if None), numbered from ``first``.

        ``tag`` and the number keep their names unique; starting a name again replaces it.
        """

    @abstractmethod
    def wait_healthy(self, instances: Sequence[InstanceRef], settings: DeploySettings) -> None:
        """Return when every instance answers its health check; raise InstanceUnhealthy."""

    @abstractmethod
    def alive(self, instances: Sequence[InstanceRef], settings: DeploySettings) -> bool:
        """Whether every instance runs and answers its health check now (one quick look)."""

    @abstractmethod
    def stop(self, instances: Sequence[InstanceRef]) -> None:
        """Stop instances with the service's stop signal and grace period."""

    @abstractmethod
    def router(self, settings: DeploySettings) -> TrafficRouter:
        """The traffic router of the environment (started first where the target runs one)."""

    def log_files(self, instance: InstanceRef) -> dict[str, Path]:
        """Where an instance's output is kept, by stream (stdout, stderr); none by default."""
        return {}

    def masker(self, names: Sequence[str]) -> Masker:
        """What hides the secrets it hands to instances (``names``) in their output; none here."""
        return Masker(())

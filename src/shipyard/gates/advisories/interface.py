"""The advisory source interface: given package versions, the OSV records that may affect them.

A source returns candidates and ``matching`` decides, so every source is judged by the same
rules. A source whose data is missing or unreachable raises ``AdvisorySourceError`` naming
itself; it never answers "nothing" instead.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from shipyard.core.config.gates import VulnerabilityGateSettings
from shipyard.gates.advisories.model import Advisory
from shipyard.gates.advisories.versions import normalize_name


@dataclass(frozen=True)
class PackageVersion:
    """One package at one version in one ecosystem, as asked of a source."""

    ecosystem: str
    name: str
    version: str

    @property
    def key(self) -> tuple[str, str]:
        """The ecosystem and the normalized name."""
        return self.ecosystem, normalize_name(self.ecosystem, self.name)


@dataclass(frozen=True)
class Freshness:
    """How current a source's data is: its newest record and when it was fetched."""

    newest_modified: datetime | None
    fetched_at: datetime
    records: int

    def age(self, now: datetime) -> float:
        """Seconds between the newest record's modification and ``now`` (0 if in the future).

        A modification time after the fetch is not believed (a record dated years ahead must
        not keep the data fresh forever): the data is then as old as the fetch."""
        reference = self.fetched_at
        if self.newest_modified is not None and self.newest_modified < self.fetched_at:
            reference = self.newest_modified
        return max(0.0, (now - reference).total_seconds())


class AdvisorySource(ABC):
    """Somewhere OSV advisories come from: a local index, an API."""

    name: ClassVar[str]
    description: ClassVar[str]

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: VulnerabilityGateSettings, state_root: Path) -> AdvisorySource:
        """The source as the gate's settings and the state directory set it up."""

    @abstractmethod
    def advisories(
        self, packages: Sequence[PackageVersion]
    ) -> Mapping[PackageVersion, Sequence[Advisory]]:
        """Records that may affect each package version (a superset is fine)."""

    def freshness(self) -> Freshness | None:
        """How old the data is, for sources that can go stale; None for live sources."""
        return None

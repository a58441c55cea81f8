"""Instances: one running copy of a version, as targets start them and deployments record them.

A plain value shared by targets, traffic routers and the records of deployments; it does not
know how the instance was started or how to reach its process.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class InstanceRef:
    """One running instance of a version: its process name and where it listens."""

    name: str
    version: str
    host: str
    port: int

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form (kept in the deployment's progress and the environment's state)."""
        return {"name": self.name, "version": self.version, "host": self.host, "port": self.port}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InstanceRef:
        """Read an instance written by ``as_json``."""
        return cls(str(data["name"]), str(data["version"]), str(data["host"]), int(data["port"]))
